"""`bac compare`: operators and methods compared from recorded episodes (bags + index only): a Markdown
table and a figure."""
from __future__ import annotations

from pathlib import Path

from ..runs import provenance, write_json
from .common import add_output_options, comma_list, output_dir


def add_parser(sub) -> None:
    c = sub.add_parser("compare", help="compare operators / methods from recorded episodes (table + figure)")
    c.add_argument("episodes", nargs="+", help="folder(s) with recorded bags and their index.jsonl")
    c.add_argument("--labels", type=comma_list(str), default=None, help="only these labels (comma list)")
    c.add_argument("--all-seeds", action="store_true",
                   help="keep every episode (default: only the seeds every label ran, for a paired comparison)")
    add_output_options(c, "table (compare.md), rows (compare.json) and figure (compare.png)")
    c.set_defaults(func=run)


def write(folders: list, out: Path, labels: list[str] | None = None, all_seeds: bool = False) -> str:
    """Compare the recordings in `folders`, print the table, write compare.md / .json / .png into `out`."""
    from ..compare import compare_recordings
    from ..report import COMPARE_COLUMNS, markdown, plot_comparison

    summary, paths, seeds = compare_recordings(folders, labels, all_seeds)
    table = markdown(summary, COMPARE_COLUMNS)
    scope = f"seeds {sorted(seeds)}" if seeds is not None else "all episodes"
    n = sum(r["episodes"] for r in summary)
    print(f"{n} recorded episodes ({scope}):\n{table}")
    (out / "compare.md").write_text(f"{n} recorded episodes ({scope})\n\n{table}\n")
    write_json(out / "compare.json", [{**s, **provenance(), "recordings": [str(f) for f in folders]} for s in summary])
    print(f"wrote {out / 'compare.md'}, {out / 'compare.json'}, {plot_comparison(summary, paths, out / 'compare.png')}")
    return table


def run(args) -> int:
    out = output_dir(args, "compare", "_".join(args.labels) if args.labels else "recordings")
    write(args.episodes, out, args.labels, args.all_seeds)
    return 0
