"""`bac preflight`: before the first motion, what libfranka, franky and this package need, checked in under a
minute (`graph.preflight`): the parameter file, the kernel and its real-time limits, the robot and its gripper,
optionally the 1 kHz link (`--link-test`: it opens the brakes and holds the arm where it is, as libfranka's
communication test), the camera, the clock. A table, and `--json FILE`. Exit 1 on a FAIL."""
from __future__ import annotations

import dataclasses
import json
import os
import resource
import time
from pathlib import Path

from ..graph.preflight import (FAIL, Check, camera_check, clock_check, envelope_check, policy_check, realtime_checks,
                               realtime_kernel, robot_checks)


def add_parser(sub) -> None:
    p = sub.add_parser("preflight", help="check the robot, the machine, the camera and the parameter file before the "
                                         "first motion (PASS / WARN / FAIL, exit 1 on a FAIL)")
    p.add_argument("--robot-ip", help="the FR3's address (default: controller_node's robot_ip in --params)")
    p.add_argument("--params", help="the lab's parameter file (default: the package's config/grasp.yaml)")
    p.add_argument("--sim", action="store_true", help="against franky-sim: real-time checks warn instead of failing "
                                                      "and the camera is the simulator's (not checked)")
    p.add_argument("--link-test", type=float, default=0.0, metavar="S",
                   help="hold the arm where it is for S seconds on the 1 kHz link and read libfranka's command "
                        "success rate (opens the brakes; 0: not run)")
    p.add_argument("--camera-seconds", type=float, default=1.0, help="how long to stream the camera (s)")
    p.add_argument("--json", metavar="FILE", help="also write the checks as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..core.settings import node_parameters

    params_path = Path(args.params) if args.params else None
    params = {n: node_parameters(n, params_path) for n in ("controller_node", "policy_node", "camera_node")}
    robot_ip = args.robot_ip or params["controller_node"].get("robot_ip", "172.16.0.2")
    enforce = params["controller_node"].get("realtime_mode", "enforce") == "enforce" and not args.sim
    t0 = time.monotonic()
    checks = [envelope_check(params["controller_node"]), policy_check(params["policy_node"], args.sim),
              *realtime_checks(enforce, realtime_kernel(), os.geteuid() == 0, resource.getrlimit(resource.RLIMIT_RTPRIO)[0],
                               resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]),
              *robot_checks(robot_ip, enforce, args.link_test),
              camera_check(params["camera_node"], args.sim, args.camera_seconds), clock_check()]
    print(table(checks))
    failed = [c.name for c in checks if c.status == FAIL]
    print(f"\n{len(checks)} checks in {time.monotonic() - t0:.1f} s: " +
          (f"FAIL ({', '.join(failed)})" if failed else "no FAIL"))
    if args.json:
        Path(args.json).write_text(json.dumps({"robot_ip": robot_ip, "params": str(params_path or "config/grasp.yaml"),
                                               "sim": args.sim, "checks": [dataclasses.asdict(c) for c in checks],
                                               "failed": failed}, indent=1) + "\n")
    return 1 if failed else 0


def table(checks: list[Check]) -> str:
    rows = [("check", "status", "detail", "fix")] + [(c.name, c.status, c.detail, c.fix) for c in checks]
    return "\n".join("| " + " | ".join(str(v).replace("|", "/") for v in row) + " |" for row in
                     [rows[0], ("---",) * 4, *rows[1:]])
