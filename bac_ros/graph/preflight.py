"""The checks `bac preflight` runs before the first motion on a lab's FR3: the parameter file (envelope, policy,
schedule), the kernel and its real-time limits, the robot reachable with a libfranka that speaks its version,
its gripper, the 1 kHz link, the camera camera_node opens, the clock. Each returns `Check`s: PASS, WARN or FAIL
with the reason and the fix."""
from __future__ import annotations

import dataclasses
import os
import resource
import socket
import subprocess
import time
from pathlib import Path

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
FRANKA_PORT = 1337  # libfranka's command connection (TCP); the 1 kHz exchange runs on UDP beside it
RTPRIO_MIN = 99  # libfranka (RealtimeConfig.Enforce) puts its control thread at the highest SCHED_FIFO priority
MEMLOCK_MIN = 100 * 2 ** 20  # bytes; the franka docs' limits.conf sets memlock 102400 (KiB)
LINK_PASS, LINK_WARN = 0.95, 0.90  # control_command_success_rate over the link test


@dataclasses.dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


# ---- the parameter file -------------------------------------------------------------------------------
def envelope_check(controller: dict) -> Check:
    """The envelope a lab set: valid, and home inside its workspace box (else every streamed target is refused)."""
    from ..core.settings import from_mapping
    from ..robot.kinematics import Kinematics
    from ..robot.limits import ArmLimits, box_excess
    from ..robot.model import Q_HOME

    try:
        lim = from_mapping(ArmLimits, controller)
    except (ValueError, TypeError) as e:
        return Check("envelope", FAIL, str(e), "fix controller_node's parameters (docs/reference.md)")
    detail = (f"speed {lim.max_velocity_factor:g}, acceleration {lim.max_acceleration_factor:g} x the FR3 limits; "
              f"box {list(lim.workspace_min)}..{list(lim.workspace_max)} m")
    if lim.workspace is not None and box_excess(Kinematics.fr3().fk(Q_HOME)[0], lim.workspace) > 0:
        return Check("envelope", FAIL, detail + ": home's TCP is outside the box",
                     "widen workspace_min / workspace_max to contain home (the TCP at 0.55, 0, 0.52 m)")
    if not lim.velocity_stop_enabled or not lim.acceleration_limit_enabled:
        return Check("envelope", WARN, detail + "; a safety band is off", "velocity_stop_enabled and "
                     "acceleration_limit_enabled true, unless you know why not")
    if lim.max_velocity_factor > 0.5 or lim.max_acceleration_factor > 0.5:
        return Check("envelope", WARN, detail + "; above 0.5 for a first run", "start at 0.1 (README, a slow first run)")
    return Check("envelope", PASS, detail)


def policy_check(policy: dict, sim: bool) -> Check:
    """policy_node's config, checkpoint and schedule load and belong together (what the node would refuse at start)."""
    from ..policy.config import PolicyConfig
    from ..policy.diffusion import DiffusionPolicy, resolve_checkpoint
    from ..policy.schedule import find_schedule

    name, checkpoint, schedule = (policy.get("config", "cpu"), policy.get("checkpoint", "auto"),
                                  policy.get("schedule", ""))
    try:
        cfg = PolicyConfig.load(name)
        sched = find_schedule(schedule, cfg) if schedule else None
        DiffusionPolicy.build(cfg, resolve_checkpoint(cfg, checkpoint))
    except Exception as e:  # noqa: BLE001 - whatever the node would stop on, said in one line
        return Check("policy", FAIL, f"{type(e).__name__}: {e}", "policy_node's config / checkpoint / schedule: "
                     "docs/reference.md")
    detail = f"config {name}, checkpoint {checkpoint}, schedule {schedule or '(none)'}" + \
        (f" ({sched.label})" if sched is not None else "")
    if not schedule:
        return Check("policy", FAIL, detail, "set policy_node's schedule (bac_s7, full, or your own file)")
    if checkpoint in ("", "auto", "shipped") and not sim:
        return Check("policy", FAIL if checkpoint != "shipped" else WARN,
                     detail + ": the shipped policy, trained on our simulated cube",
                     "train your own (README, the lab loop) and set checkpoint and schedule")
    return Check("policy", PASS, detail)


# ---- the machine --------------------------------------------------------------------------------------
def realtime_kernel() -> bool:
    """As libfranka decides it (/sys/kernel/realtime exists), or the kernel says PREEMPT_RT."""
    return Path("/sys/kernel/realtime").exists() or "PREEMPT_RT" in os.uname().version


def realtime_checks(enforce: bool, rt_kernel: bool, root: bool, rtprio: int, memlock: int) -> list[Check]:
    """libfranka's RealtimeConfig.Enforce needs a PREEMPT_RT kernel and the right to the highest SCHED_FIFO priority
    and to lock memory; `enforce` False (simulation, realtime_mode ignore): what is missing is a warning."""
    bad = FAIL if enforce else WARN
    why = "" if enforce else " (realtime_mode ignore: simulation only)"
    unlimited = resource.RLIM_INFINITY
    kernel = Check("realtime kernel", PASS, os.uname().release) if rt_kernel else \
        Check("realtime kernel", bad, f"{os.uname().release} is not PREEMPT_RT{why}",
              "boot a PREEMPT_RT kernel (Ubuntu 24.04: `pro enable realtime-kernel`; franka docs, 'real-time kernel')")
    ok_prio = root or rtprio == unlimited or rtprio >= RTPRIO_MIN
    prio = Check("rtprio", PASS, f"limit {rtprio if rtprio != unlimited else 'unlimited'}" + (" (root)" if root else ""))\
        if ok_prio else Check("rtprio", bad, f"limit {rtprio}, libfranka needs {RTPRIO_MIN}{why}",
                              "a realtime group with `@realtime - rtprio 99` in /etc/security/limits.conf, you in it")
    ok_mem = root or memlock == unlimited or memlock >= MEMLOCK_MIN
    mem = Check("memlock", PASS, ("unlimited" if memlock == unlimited else f"{memlock / 2 ** 20:.0f} MiB") +
                (" (root)" if root else "")) if ok_mem \
        else Check("memlock", bad, f"{memlock / 2 ** 20:.1f} MiB{why}",
                   "`@realtime - memlock 102400` in /etc/security/limits.conf, then log in again")
    return [kernel, prio, mem]


# ---- the robot ----------------------------------------------------------------------------------------
def robot_checks(ip: str, enforce: bool, link_seconds: float) -> list[Check]:
    """The FR3 reachable and speaking this libfranka; its gripper; optionally the 1 kHz link under a hold."""
    import importlib.metadata as md

    try:
        franky_version = md.version("franky-control")
    except md.PackageNotFoundError:
        return [Check("robot", FAIL, "franky-control is not installed", "pip install franky-control")]
    try:
        with socket.create_connection((ip, FRANKA_PORT), timeout=2.0):
            pass
    except OSError as e:
        return [Check("robot", FAIL, f"the FR3 at {ip}:{FRANKA_PORT} is not reachable ({e})",
                      "robot on, FCI activated in Desk, this machine on its network, robot_ip right (ping it)")]
    import franky

    mode = franky.RealtimeConfig.Enforce if enforce else franky.RealtimeConfig.Ignore
    try:
        robot = franky.Robot(ip, realtime_config=mode)
    except Exception as e:  # noqa: BLE001 - franky raises several types; each message says what
        fix = "franky-control's libfranka and the robot's system version must match (franky docs)" \
            if "version" in str(e).lower() else "FCI activated in Desk, no other client connected, real-time rights"
        return [Check("robot", FAIL, f"{ip}: {type(e).__name__}: {e} (franky-control {franky_version})", fix)]
    try:
        # libfranka refuses a robot whose version it does not speak (IncompatibleVersionException): connected is
        # the version check
        out = [Check("robot", PASS, f"{ip}: connected, versions compatible (franky-control {franky_version})")]
        try:
            gripper = franky.Gripper(ip)
            out.append(Check("gripper", PASS, f"connected (server version {gripper.server_version}), "
                                              f"{gripper.width * 1000:.0f} mm open"))
        except Exception as e:  # noqa: BLE001
            out.append(Check("gripper", FAIL, f"{type(e).__name__}: {e}", "the Franka Hand connected and "
                             "initialised in Desk"))
        out.append(link_check(robot, link_seconds))
        return out
    finally:
        del robot


def link_check(robot, seconds: float) -> Check:
    """Hold the measured pose on franky's torque loop for `seconds` (robot time) and read libfranka's
    control_command_success_rate, the share of 1 kHz commands that reached the robot in time."""
    if seconds <= 0:
        return Check("link", WARN, "not run", "--link-test 10 (the arm is held where it is; it opens the brakes)")
    import franky
    import numpy as np

    robot.recover_from_errors()
    tracker = franky.JointImpedanceTracker(robot)
    rates = []
    try:
        t0, wall = robot.state.time.to_sec(), time.monotonic()
        while robot.state.time.to_sec() - t0 < seconds and time.monotonic() - wall < 10 * seconds + 5:
            rates.append(float(robot.state.control_command_success_rate))
            time.sleep(0.01)
    finally:
        tracker.stop()
    worst = float(np.min(rates)) if rates else 0.0
    detail = f"command success rate min {worst:.3f}, mean {np.mean(rates) if rates else 0:.3f} over {seconds:g} s"
    if worst >= LINK_PASS:
        return Check("link", PASS, detail)
    return Check("link", WARN if worst >= LINK_WARN else FAIL, detail,
                 "a direct cable to the robot, no other load on this machine, a real-time kernel")


# ---- the camera and the clock -------------------------------------------------------------------------
def camera_check(camera: dict, sim: bool, seconds: float) -> Check:
    """The camera camera_node will open (its serial, mode, exposure and white balance: `robot.camera.open_camera`)
    streaming at its rate."""
    if sim:
        return Check("camera", WARN, "not checked: the simulator renders the camera (--sim)")
    from ..robot.camera import CameraError, describe, open_camera

    fps = camera.get("fps", 30)
    try:
        pipe, profile = open_camera(camera.get("width", 640), camera.get("height", 480), fps, camera.get("serial", ""),
                                    camera.get("exposure", 0.0), camera.get("white_balance", 0.0), warn=lambda _: None)
    except CameraError as e:
        return Check("camera", FAIL, str(e), "camera_node would stop with the same reason: what it says to check")
    try:
        frames, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < seconds:
            if pipe.poll_for_frames():
                frames += 1
            time.sleep(0.002)
        rate = frames / seconds
    finally:
        pipe.stop()
    detail = f"{describe(profile)}: {rate:.1f} frames/s"
    if rate >= 0.8 * fps:
        return Check("camera", PASS, detail)
    return Check("camera", FAIL, detail, "a USB 3 port and cable; no other stream on the same bus")


def clock_check() -> Check:
    """The system clock synchronised (stamps compared across machines: camera, policy, robot PC)."""
    try:
        out = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    if out == "yes":
        return Check("clock", PASS, "NTP-synchronised")
    return Check("clock", WARN, f"not known to be synchronised ({out or 'timedatectl unavailable'})",
                 "an NTP or PTP service (chrony) on every machine of the graph")
