"""One module per `bac` command, each with `add_parser(subparsers)` and `run(args) -> exit code`."""
