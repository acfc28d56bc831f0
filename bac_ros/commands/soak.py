"""`bac soak`: the recording graph on the franky-sim world for a given time, teleop and policy episodes
alternating, every node started once; per 10 minutes each process's memory and CPU, inference and control
rates, chunks refused, episodes and disk; then the verdicts against issue 38's bounds (memory growth,
rate drift, every requested episode indexed and readable)."""
from __future__ import annotations

from ..analysis.runs import provenance, write_json
from .common import add_output_options, output_dir


def add_parser(sub) -> None:
    d = sub.add_parser("soak", help="hours of operation: the recording graph, teleop and policy episodes alternating")
    d.add_argument("--minutes", type=float, default=60.0, help="how long to run (wall minutes)")
    d.add_argument("--schedule", default=None, help="policy_node's schedule (default: config/grasp.yaml's)")
    d.add_argument("--window", type=float, default=10.0, help="report window (minutes)")
    d.add_argument("--hostname", default="127.0.0.1", help="loopback address of the simulated FR3")
    add_output_options(d, "node logs, metrics CSVs, recorded episodes and the report (soak.json, soak.md)")
    d.set_defaults(func=run)


def format_report(report: dict, verdicts: list[tuple[str, bool]]) -> str:
    """Memory and CPU per process (a row each, a column per window), the rates per window, the verdicts."""
    from ..analysis.render import markdown

    windows = report["windows"]
    names = sorted({k for w in windows for k in w["rss_mb"]})
    per_window = [(f"{w['minute']:g} min", lambda r, i=i: r[i], ".0f") for i, w in enumerate(windows)]
    lines = []
    for title, key in (("resident memory (MB) at the start of each window", "rss_mb"),
                       ("CPU % of one core over each window", "cpu_percent")):
        rows = [{"process": n, **{i: w[key].get(n) for i, w in enumerate(windows)}} for n in names]
        lines += [f"{title}:", markdown(rows, [("process", lambda r: r["process"], "")] + per_window), ""]
    lines += ["per window:", markdown(windows, [
        ("from minute", lambda w: w["minute"], "g"), ("inference Hz", lambda w: w["inference_hz"], ".1f"),
        ("inference Hz (CPU clock)", lambda w: w.get("inference_hz_cpu", float("nan")), ".1f"),
        ("machine busy %", lambda w: w.get("busy_percent", float("nan")), ".0f"),
        ("steal %", lambda w: w.get("steal_percent", float("nan")), ".1f"),
        ("commands / wall s", lambda w: w["commands_per_s"], ".1f"), ("world speed", lambda w: w["world_speed"], ".3f"),
        ("control Hz (graph clock)", lambda w: w["control_hz"], ".1f"), ("chunks refused", lambda w: w["chunks_refused"], "d"),
        ("holds", lambda w: w["holds"], "d"), ("episodes", lambda w: w["episodes"], "d"),
        ("disk MB", lambda w: w["disk_mb"], ".0f")]), ""]
    lines += [f"{report['minutes']} min; episodes requested {report['episodes_requested']}, indexed "
              f"{report['episodes_indexed']} ({report['episodes_incomplete']} incomplete); success {report['success']}; "
              f"disk {report['disk_mb_per_hour']} MB/h; episodes that could not be run: {len(report['errors'])}", ""]
    lines += [f"{'held' if ok else 'NOT held'}: {what}" for what, ok in verdicts]
    return "\n".join(lines)


def run(args) -> int:
    from ..graph.soak import Soak, verdicts

    out = output_dir(args, "soak", f"{args.minutes:g}min")
    print(f"soak: {args.minutes:g} min of the recording graph on the franky-sim world; logs in {out}", flush=True)
    soak = Soak(out, args.minutes, args.schedule, args.hostname, window_min=args.window)
    soak.run()
    report = {**soak.report(), **provenance()}
    checks = verdicts(report)
    report["verdicts"] = [{"what": w, "held": ok} for w, ok in checks]
    text = format_report(report, checks)
    (out / "soak.md").write_text(text + "\n")
    print(text)
    print(f"wrote {write_json(out / 'soak.json', report)}")
    return 0 if all(ok for _, ok in checks) else 1
