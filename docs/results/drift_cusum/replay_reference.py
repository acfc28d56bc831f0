"""Replay `bac eval --drift watch` runs (their episodes.jsonl, or the *_checks.json kept here) against a schedule's reference: each check's
shadow deviation turned into z by that reference, the CUSUM restarted each episode, h at the default
settings for a check at every sync inference (the spacing bac eval and policy_node share). Watch mode never
changes the schedule, so this is what the run would have shown with that reference.
Usage: python replay_reference.py [--rate R] SCHEDULE.json RUN_DIR... (R: drift_false_alarm_rate)"""
import json
import sys

from bac_ros.core.config import PolicyConfig
from bac_ros.core.drift import DriftGuard, DriftSettings, shadow_reference
from bac_ros.core.schedule import Schedule

args = sys.argv[1:]
rate = float(args.pop(args.index("--rate") + 1)) if "--rate" in args else None
args = [a for a in args if a != "--rate"]
sched = Schedule.load(args[0], PolicyConfig.load("cpu"))
ref = shadow_reference(sched)
s = DriftSettings() if rate is None else DriftSettings(drift_false_alarm_rate=rate)
h = ref.threshold(s.drift_cusum_k, 1, s.drift_false_alarm_rate)
loop = sched.calibration["shadow_closed_loop"]
print(f"{args[0]} (rate {s.drift_false_alarm_rate}): {loop['episodes_run']} reference episodes ({len(ref.episodes)} solved), h {h:.2f}")
for run in args[1:]:
    if run.endswith(".json"):
        eps = [{**e, "drift": [{"deviation": d} for d in e["deviation"]]} for e in json.load(open(run))]
    else:
        eps = [json.loads(line) for line in open(f"{run}/episodes.jsonl").read().splitlines()[1:]]
    alarms = {True: [], False: []}
    for e in eps:
        g = DriftGuard(s)
        first = next((i + 1 for i, c in enumerate(e["drift"]) if g.observe(ref.z(c["deviation"]), h) == "dense"), None)
        if first:
            alarms[bool(e["success"])].append(first)
    solved = sum(bool(e["success"]) for e in eps)
    print(f"  {run.rstrip('/').split('/')[-1].removesuffix('_checks.json')}: {len(eps)} episodes ({solved} solved); alarmed in "
          f"{len(alarms[True]) + len(alarms[False])} ({len(alarms[True])} solved), at checks "
          f"{sorted(alarms[True] + alarms[False])}")
