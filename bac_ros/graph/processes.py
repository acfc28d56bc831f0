"""The graph's processes, started from this one and stopped by it (by PID): the same executables and
parameter file as `ros2 launch bac_ros grasp.launch.py`."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable


def executable(name: str) -> str:
    """The node's console script: beside this Python (venv, colcon lib/bac_ros) or on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"executable '{name}' not found: install the package (make setup / colcon build)")
    return found


class Processes:
    """Children started here, stopped here: SIGINT, then SIGKILL after a grace period."""

    def __init__(self, log_dir: Path, env: dict):
        self.log_dir, self.env = log_dir, env
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, params_file: Path, overrides: dict | None = None,
              preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen:
        """Start node `name` with the parameter file and `overrides`; `preexec_fn` runs in the child before it
        starts (e.g. a resource limit, for a fault case)."""
        cmd = [executable(name), "--ros-args", "--params-file", str(params_file)]
        for k, v in (overrides or {}).items():
            cmd += ["-p", f"{k}:={str(v).lower() if isinstance(v, bool) else v}"]
        log = (self.log_dir / f"{name}.log").open("a")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
                             preexec_fn=preexec_fn)
        self.procs[name] = p
        return p

    def stop(self, name: str, grace: float = 8.0) -> None:
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        os.killpg(p.pid, signal.SIGINT)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU seconds of each running child (all its threads), and of this process."""
        tick = os.sysconf("SC_CLK_TCK")
        out = {"demo (this process)": sum(os.times()[:2])}
        for name, p in self.procs.items():
            try:
                fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            except (OSError, IndexError, ValueError):
                pass
        return out

    def check(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text()[-1500:]
                raise RuntimeError(f"{name} exited with code {p.returncode}:\n{tail}")

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)
