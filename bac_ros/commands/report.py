"""`bac report`: metrics_node's logs (control.csv, latency.csv) as a PNG."""
from __future__ import annotations

import csv
from pathlib import Path


def add_parser(sub) -> None:
    rp = sub.add_parser("report", help="plot a metrics log directory (control Hz, latency histograms) as PNG")
    rp.add_argument("log_dir")
    rp.add_argument("--out-dir", help="where report.png goes (default: the log directory itself)")
    rp.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from ..analysis.render import plot_metrics

    d = Path(args.log_dir)
    if not (d / "control.csv").is_file() or not (d / "latency.csv").is_file():
        raise SystemExit(f"{d}: no control.csv / latency.csv (run the metrics node or `bac demo` first)")
    with (d / "control.csv").open() as f:
        control = np.array([(float(r["time"]), float(r["control_hz"])) for r in csv.DictReader(f)]).reshape(-1, 2)
    with (d / "latency.csv").open() as f:
        latency = np.array([(float(r["obs_to_chunk_ms"]), float(r["obs_to_command_ms"]))
                            for r in csv.DictReader(f)]).reshape(-1, 2)
    out = Path(args.out_dir or d)
    out.mkdir(parents=True, exist_ok=True)
    print(f"wrote {plot_metrics(control, latency, out / 'report.png')}")
    return 0
