"""Replay the drift guard on the shadow checks `bac eval --drift watch` recorded (its episodes.jsonl): restarted
each episode (as bac eval counts alarms) and run on through all episodes in seed order (as policy_node, which
never restarts it). Usage: python replay.py H RUN_DIR..."""
import json, sys
from bac_ros.drift.guard import DriftGuard, DriftSettings
h = float(sys.argv[1])
for name in sys.argv[2:]:
    eps = [json.loads(line) for line in open(f"{name}/episodes.jsonl").read().splitlines()[1:]]
    eps.sort(key=lambda e: e["seed"])
    zs = [[c["z"] for c in e["drift"]] for e in eps]
    g = DriftGuard(DriftSettings())
    first, alarms, n = None, 0, 0
    for ep in zs:
        for z in ep:
            n += 1
            before = g.state
            if g.observe(z, h) == "dense" and before != "dense":
                alarms += 1
                first = first or n
    per = []
    for ep in zs:
        g = DriftGuard(DriftSettings())
        per.append(next((i + 1 for i, z in enumerate(ep) if g.observe(z, h) == "dense"), None))
    print(f"{name.rstrip('/').split('/')[-1]}: {len(eps)} episodes, {n} checks, success {sum(e['success'] for e in eps)}; per episode: alarm in "
          f"{sum(p is not None for p in per)} (checks {sorted(p for p in per if p)}); continuous: first alarm at check "
          f"{first}, {alarms} alarms")
