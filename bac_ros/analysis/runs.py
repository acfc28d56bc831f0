"""Where commands write, and what every row of results carries to be traced back.

Every `bac` command that produces output writes under `runs/<command>/<YYYY-mm-dd_HHMMSS>_<name>/` unless
told otherwise (`runs/` is not tracked); its rows carry `provenance()`: the git commit of the code, the
command line, and when. Results worth keeping are curated by hand into docs/results/.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from ..core.paths import PACKAGE_ROOT

RUNS_ROOT = Path("runs")


def run_dir(command: str, name: str, root: Path | None = None) -> Path:
    """A fresh folder `runs/<command>/<date>_<time>_<name>` (created), relative to the working directory."""
    stamp = _dt.datetime.now().strftime("%Y-%m-%d_%H%M%S")
    path = (root or RUNS_ROOT) / command / f"{stamp}_{name}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def git_commit() -> str:
    """The commit the code runs from (with `+dirty` when the tree has changes); 'unknown' outside a git tree
    (an installed package)."""
    try:
        out = subprocess.run(["git", "-C", str(PACKAGE_ROOT), "describe", "--always", "--dirty=+dirty",
                              "--abbrev=12"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def provenance() -> dict:
    """What a result needs to be traced back: code commit, command line, time (local, ISO 8601)."""
    return {"commit": git_commit(), "command": " ".join(["bac", *sys.argv[1:]]) if sys.argv else "",
            "created": _dt.datetime.now().isoformat(timespec="seconds")}


def content_hash(path: str | Path | None) -> str | None:
    """First 16 hex digits of the SHA-256 of a file (a schedule, a checkpoint): None for no file."""
    if path is None:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def finished_episodes(path: Path, identity: dict) -> dict[tuple, dict]:
    """The episodes an evaluation's log (episodes.jsonl: its identity, then an episode a line) holds, by (mode,
    method, S, seed); ValueError for a log another run wrote (other arguments, weights or schedules)."""
    done = {}
    if not path.is_file():
        return done
    lines = path.read_text().splitlines()
    if lines and json.loads(lines[0]).get("identity") != identity:
        raise ValueError(f"{path} was written by a run with other arguments, weights or schedules: "
                         "resume it with its own arguments, or start a new run folder")
    for line in lines[1:]:
        try:
            e = json.loads(line)
        except json.JSONDecodeError:  # the line being written when the run was stopped
            continue
        done[(e["mode"], e["method"], e["num_updates"], e["seed"])] = e
    return done


def saved_arguments(run_dir: Path, name: str, leave_out: tuple = ()) -> dict:
    """The arguments a run wrote into `run_dir / name` (JSON), without those in `leave_out` (how it ran, not what
    it measured); FileNotFoundError when there are none."""
    saved = Path(run_dir) / name
    if not saved.is_file():
        raise FileNotFoundError(f"no {name} in {run_dir}")
    return {k: v for k, v in json.loads(saved.read_text()).items() if k not in leave_out}
