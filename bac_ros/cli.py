"""`bac` command line: a thin parser over one module per command (bac_ros/commands/)."""
from __future__ import annotations

import argparse
import sys

from .commands import (bench, compare, dataset, demo, eval as eval_, preflight, record, reference, report, schedule,
                       session, soak, train)
from .policy.config import ConfigError
from .policy.schedule import ScheduleError

COMMANDS = (preflight, schedule, bench, record, session, dataset, train, eval_, demo, soak, compare, report,
            reference)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bac", description="Block-wise Adaptive Caching for a DP-T grasp policy on a "
                                "Franka FR3. Output goes to runs/<command>/<date>_<name>/ unless --out-dir says.")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ScheduleError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"bac {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
