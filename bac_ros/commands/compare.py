"""`bac compare`: operators and methods compared from recorded episodes (bags + index only): a Markdown table,
each label against a reference with an exact test and a non-inferiority verdict, and a figure."""
from __future__ import annotations

from pathlib import Path

from ..analysis.render import pairs_text
from ..analysis.runs import provenance, write_json
from .common import add_output_options, comma_list, output_dir


def add_parser(sub) -> None:
    c = sub.add_parser("compare", help="compare operators / methods from recorded episodes (table + figure)")
    c.add_argument("episodes", nargs="+", help="folder(s) with recorded bags and their index.jsonl")
    c.add_argument("--labels", type=comma_list(str), default=None, help="only these labels (comma list), in this order")
    c.add_argument("--all-seeds", action="store_true",
                   help="keep every episode (default: only the seeds every label ran, for a paired comparison)")
    c.add_argument("--reference", default=None, help="the label the others are compared with (default: the first)")
    c.add_argument("--margin", type=float, default=0.05,
                   help="non-inferiority margin: how much lower a success rate may be and still count as as good "
                        "(default 0.05: 5 points)")
    c.add_argument("--within", type=float, default=8.0,
                   help="T (s) for the share of episodes that succeeded within T (default 8)")
    add_output_options(c, "table (compare.md), rows (compare.json) and figure (compare.png)")
    c.set_defaults(func=run)


def write(folders: list, out: Path, labels: list[str] | None = None, all_seeds: bool = False,
          reference: str | None = None, margin: float = 0.05, within: float = 8.0) -> str:
    """Compare the recordings in `folders`, print the tables, write compare.md / .json / .png into `out`."""
    from ..analysis.recordings import compare_recordings, pairwise, summarise
    from ..analysis.render import COMPARE_COLUMNS, markdown, plot_comparison, slow_clock_note

    metrics, paths, seeds = compare_recordings(folders, labels, all_seeds)
    summary = summarise(metrics, within)
    pairs = pairwise(metrics, reference, margin)
    scope = f"seeds {sorted(seeds)}" if seeds is not None else "all episodes"
    n = sum(r["episodes"] for r in summary)
    text = f"{n} recorded episodes ({scope}):\n{markdown(summary, COMPARE_COLUMNS)}" + pairs_text(pairs)
    note = slow_clock_note(summary, "label", "clock_rate")
    if note:
        text += f"\n\n{note}"
    print(text)
    (out / "compare.md").write_text(text + "\n")
    write_json(out / "compare.json", {"labels": summary, "pairs": pairs, **provenance(),
                                      "recordings": [str(f) for f in folders]})
    print(f"wrote {out / 'compare.md'}, {out / 'compare.json'}, {plot_comparison(summary, paths, out / 'compare.png')}")
    return text


def run(args) -> int:
    out = output_dir(args, "compare", "_".join(args.labels) if args.labels else "recordings")
    write(args.episodes, out, args.labels, args.all_seeds, args.reference, args.margin, args.within)
    return 0
