"""Replay `bac eval --drift watch` runs (their episodes.jsonl, or the *_checks.json kept here) against a schedule's reference: each check's
shadow deviation (and observation distance, where both the run and the schedule have it) turned into z by that
reference, the CUSUMs restarted each episode, h at the default settings for a check at every sync inference (the
spacing bac eval and policy_node share). Watch mode never changes the schedule, so this is what the run would have
shown with that reference. A schedule with an observation reference puts each h at half the rate, as the guard does.
Usage: python replay_reference.py [--rate R] [--shadow-only] SCHEDULE.json RUN_DIR... (R: drift_false_alarm_rate)"""
import json
import math
import sys

from bac_ros.policy.config import PolicyConfig
from bac_ros.drift.guard import DriftGuard, DriftSettings, guard_thresholds
from bac_ros.drift.reference import observation_reference, shadow_reference
from bac_ros.policy.schedule import Schedule

args = sys.argv[1:]
rate = float(args.pop(args.index("--rate") + 1)) if "--rate" in args else None
shadow_only = "--shadow-only" in args
args = [a for a in args if a not in ("--rate", "--shadow-only")]
sched = Schedule.load(args[0], PolicyConfig.load("cpu"))
ref, obs = shadow_reference(sched), None if shadow_only else observation_reference(sched)
s = DriftSettings() if rate is None else DriftSettings(drift_false_alarm_rate=rate)
loop = sched.calibration["shadow_closed_loop"]
period = loop["inference_period_s"]  # a check at every reference inference, as in the runs replayed
h, h_obs, _ = guard_thresholds(s, ref, obs.signal if obs is not None else None, 1, period, period)
print(f"{args[0]} (rate {s.drift_false_alarm_rate}): {loop['episodes_run']} reference episodes ({len(ref.episodes)} solved), "
      f"h {h:.2f}" + (f", observation h {h_obs:.2f}" if obs is not None else ""))
for run in args[1:]:
    if run.endswith(".json"):
        eps = [{**e, "drift": [{"deviation": d, "distance": o} for d, o in
                               zip(e["deviation"], e.get("distance") or [math.nan] * len(e["deviation"]))]}
               for e in json.load(open(run))]
    else:
        eps = [json.loads(line) for line in open(f"{run}/episodes.jsonl").read().splitlines()[1:]]
    alarms = {True: [], False: []}
    for e in eps:
        g = DriftGuard(s)
        for i, c in enumerate(e["drift"]):
            d = c.get("distance", math.nan)
            oz = obs.signal.z(d) if obs is not None and d is not None and math.isfinite(d) else math.nan
            if g.observe(ref.z(c["deviation"]), h, oz, h_obs) == "dense":
                alarms[bool(e["success"])].append((i + 1, g.alarm_signal))
                break
    solved = sum(bool(e["success"]) for e in eps)
    both = sorted(alarms[True] + alarms[False])
    print(f"  {run.rstrip('/').split('/')[-1].removesuffix('_checks.json')}: {len(eps)} episodes ({solved} solved); alarmed in "
          f"{len(both)} ({len(alarms[True])} solved), at checks {[c for c, _ in both]}; by the observation distance: "
          f"{sum(k == 'observation' for _, k in both)}")
