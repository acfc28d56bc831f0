"""`Schedule`: which denoising steps each decoder block updates at; JSON I/O and validation."""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from .acs import DEFAULT_TOP_N
from ..core.paths import package_data_dir
from .config import PolicyConfig

FORMAT = "bac-schedule/1"
REUSE = ("copy", "forecast")  # a skipped block adds its last output, or extrapolates its last two


class Method(StrEnum):
    """How a schedule picks each block's update steps (docs/policy.md)."""
    FULL = "full"  # every block at every step
    UNIFORM = "uniform"  # every block at the same evenly spaced steps
    ACS_UNIFIED = "acs-unified"  # the ACS dynamic program, one set of steps for all blocks
    ACS_BLOCKWISE = "acs-blockwise"  # ACS per block
    BAC = "bac"  # ACS per block and the Bubbling Union over the top-n blocks
    TEACACHE = "teacache"  # dynamic: recompute when the accumulated input change passes a threshold


STATIC_METHODS = tuple(m for m in Method if m != Method.TEACACHE)
METHODS = tuple(Method)
ACS_METHODS = (Method.ACS_UNIFIED, Method.ACS_BLOCKWISE, Method.BAC)  # calibrated by the ACS dynamic program
PER_BLOCK_METHODS = (Method.ACS_BLOCKWISE, Method.BAC)  # steps per block: the forecast objective applies
SCHEDULE_DIR = package_data_dir("schedules")  # schedules/<model name>/<method>_s<S>[...].json


class ScheduleError(ValueError):
    """A schedule file is malformed or does not fit the model; the message names the field."""


def _fail(field_name: str, msg: str) -> None:
    raise ScheduleError(f"schedule field '{field_name}': {msg}")


@dataclass
class Schedule:
    method: str
    num_steps: int
    blocks: dict[str, list[int]]  # empty for teacache (dynamic)
    model: dict  # name, config_hash, n_layer
    sampler: dict  # type, num_inference_steps
    num_updates: int | None = None
    bua: dict | None = None  # top_n, blocks
    teacache: dict | None = None  # threshold, mean_updates
    calibration: dict | None = None
    reuse: str = "copy"  # copy: the block's last output; forecast: extrapolated from its last two (caching.py)
    source: str = field(default="", compare=False)  # file it came from, for messages

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, cfg: PolicyConfig, method: str, blocks: dict[str, list[int]], num_updates: int | None = None,
               bua: dict | None = None, teacache: dict | None = None, calibration: dict | None = None,
               reuse: str = "copy") -> "Schedule":
        s = cls(method=method, num_steps=cfg.num_steps,
                blocks={b: sorted(int(x) for x in blocks[b]) for b in cfg.block_ids} if blocks else {},
                model={"name": cfg.name, "config_hash": cfg.config_hash, "n_layer": cfg.n_layer},
                sampler={"type": cfg.sampler.type, "num_inference_steps": cfg.num_steps},
                num_updates=num_updates, bua=bua, teacache=teacache, calibration=calibration, reuse=reuse)
        s.validate(cfg)
        return s

    @classmethod
    def full(cls, cfg: PolicyConfig) -> "Schedule":
        return cls.create(cfg, Method.FULL, {b: list(range(cfg.num_steps)) for b in cfg.block_ids},
                          num_updates=cfg.num_steps)

    # ---- queries ------------------------------------------------------------------------------
    @property
    def is_dynamic(self) -> bool:
        return self.method == Method.TEACACHE

    def update_mask(self, block_ids: list[str]) -> np.ndarray:
        """(num_steps, len(block_ids)) bool: True where the block recomputes."""
        mask = np.zeros((self.num_steps, len(block_ids)), dtype=bool)
        for j, b in enumerate(block_ids):
            mask[self.blocks[b], j] = True
        return mask

    def mean_updates(self) -> float:
        if self.is_dynamic:
            return float(self.teacache.get("mean_updates", float("nan")))
        return float(np.mean([len(v) for v in self.blocks.values()]))

    @property
    def label(self) -> str:
        s = self.num_updates if self.num_updates is not None else "-"
        return f"{self.method}{'+forecast' if self.reuse == 'forecast' else ''}(S={s})"

    # ---- validation ---------------------------------------------------------------------------
    def validate(self, cfg: PolicyConfig | None = None) -> None:
        """Internal consistency; with `cfg`, also that the schedule fits that model."""
        if self.method not in METHODS:
            _fail("method", f"'{self.method}' is not one of {list(METHODS)}")
        if self.reuse not in REUSE or (self.reuse != "copy" and self.is_dynamic):
            _fail("reuse", f"must be one of {list(REUSE)} (static schedules only), got {self.reuse!r}")
        k = self.num_steps
        if not isinstance(k, int) or k < 1:
            _fail("sampler.num_inference_steps", f"must be a positive integer, got {k!r}")
        if self.num_updates is not None and not (isinstance(self.num_updates, int) and 1 <= self.num_updates <= k):
            _fail("num_updates", f"must be an integer in 1..{k}, got {self.num_updates!r}")
        if self.is_dynamic:
            thr = (self.teacache or {}).get("threshold")
            if not isinstance(thr, (int, float)) or not thr >= 0:
                _fail("teacache.threshold", f"must be a number >= 0, got {thr!r}")
        else:
            if not self.blocks:
                _fail("blocks", "missing or empty")
            for b, steps in self.blocks.items():
                if not isinstance(steps, list) or not all(isinstance(x, int) for x in steps):
                    _fail(f"blocks.{b}", "must be a list of integer steps")
                if steps != sorted(set(steps)):
                    _fail(f"blocks.{b}", "steps must be sorted and distinct")
                if not steps or steps[0] != 0:
                    _fail(f"blocks.{b}", "every block must update at step 0")
                if steps[-1] >= k:
                    _fail(f"blocks.{b}", f"step {steps[-1]} is outside 0..{k - 1}")
        if self.bua is not None:
            if not isinstance(self.bua.get("top_n"), int) or self.bua["top_n"] < 0:
                _fail("bua.top_n", f"must be a non-negative integer, got {self.bua.get('top_n')!r}")
            unknown = [b for b in self.bua.get("blocks", []) if self.blocks and b not in self.blocks]
            if unknown:
                _fail("bua.blocks", f"unknown block(s) {unknown}")
        if cfg is None:
            return
        if self.model.get("n_layer") != cfg.n_layer:
            _fail("model.n_layer", f"schedule has {self.model.get('n_layer')}, model '{cfg.name}' has {cfg.n_layer}")
        if not self.is_dynamic:
            got, want = set(self.blocks), set(cfg.block_ids)
            if got != want:
                _fail("blocks", f"block ids differ from the model's: missing {sorted(want - got)}, "
                                f"unexpected {sorted(got - want)}")
        if k != cfg.num_steps:
            _fail("sampler.num_inference_steps", f"schedule has K={k}, model '{cfg.name}' samples with K={cfg.num_steps}")
        if self.sampler.get("type") != cfg.sampler.type:
            _fail("sampler.type", f"schedule has '{self.sampler.get('type')}', model uses '{cfg.sampler.type}'")
        if self.model.get("config_hash") != cfg.config_hash:
            _fail("model.config_hash", f"schedule was made for config {self.model.get('config_hash')}, "
                                       f"model '{cfg.name}' is {cfg.config_hash}")

    def check_weights(self, weights_id: str | None) -> None:
        """Warn (not fail) when the schedule was calibrated on other weights of the same architecture."""
        calibrated = (self.calibration or {}).get("weights")
        if calibrated and weights_id and calibrated != weights_id:
            warnings.warn(f"schedule {self.source or self.label} was calibrated on weights {calibrated}, "
                          f"running with {weights_id}: recalibrate with `bac schedule`", stacklevel=2)

    # ---- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"format": FORMAT, "method": self.method, "num_updates": self.num_updates, "model": self.model,
             "sampler": self.sampler}
        if self.bua is not None:
            d["bua"] = self.bua
        if self.teacache is not None:
            d["teacache"] = self.teacache
        if self.reuse != "copy":
            d["reuse"] = self.reuse
        d["blocks"] = self.blocks
        if self.calibration is not None:
            d["calibration"] = self.calibration
        return d

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # One line per block keeps the files readable and diffable.
        body = json.dumps({k: v for k, v in self.to_dict().items() if k != "blocks"}, indent=1)
        blocks = ",\n".join(f'  "{b}": {json.dumps(s)}' for b, s in self.blocks.items())
        path.write_text(body[:-2] + ',\n "blocks": {\n' + blocks + "\n }\n}\n")
        return path

    @classmethod
    def from_dict(cls, d: dict, cfg: PolicyConfig | None = None, source: str = "") -> "Schedule":
        if not isinstance(d, dict):
            raise ScheduleError(f"{source or 'schedule'}: top level must be a JSON object")
        if d.get("format") != FORMAT:
            _fail("format", f"expected '{FORMAT}', got {d.get('format')!r}")
        for name in ("method", "model", "sampler"):
            if name not in d:
                _fail(name, "missing")
        if not isinstance(d["model"], dict) or not isinstance(d["sampler"], dict):
            _fail("model" if not isinstance(d["model"], dict) else "sampler", "must be an object")
        blocks = d.get("blocks") or {}
        if not isinstance(blocks, dict):
            _fail("blocks", "must be an object mapping block id -> steps")
        s = cls(method=d["method"], num_steps=d["sampler"].get("num_inference_steps"), blocks=blocks,
                model=d["model"], sampler=d["sampler"], num_updates=d.get("num_updates"), bua=d.get("bua"),
                teacache=d.get("teacache"), calibration=d.get("calibration"), reuse=d.get("reuse", "copy"),
                source=source)
        try:
            s.validate(cfg)
        except ScheduleError as e:
            raise ScheduleError(f"{source}: {e}" if source else str(e)) from None
        return s

    @classmethod
    def load(cls, path: str | Path, cfg: PolicyConfig | None = None) -> "Schedule":
        path = Path(path)
        if not path.is_file():
            raise ScheduleError(f"schedule file not found: {path}")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ScheduleError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(d, cfg, source=str(path))


# ---- finding schedules -------------------------------------------------------------------------------
def schedule_dir(cfg: PolicyConfig) -> Path:
    """The shipped schedules of a model: `schedules/<model name>/` (source tree or installed share)."""
    return SCHEDULE_DIR / cfg.name


def schedule_file_name(method: Method, num_updates: int, similarity: str = "cosine", force_last: bool = False,
                       top_n: int = DEFAULT_TOP_N, reuse: str = "copy") -> str:
    """The file name `bac schedule` writes a schedule under and `bac eval` looks for it by:
    `<method>_s<S>[_last][_l1][_n<N>][_forecast].json`."""
    suffix = "_last" if force_last and method != Method.FULL else ""
    if similarity != "cosine" and method in ACS_METHODS:
        suffix += f"_{similarity}"
    if method == Method.BAC and top_n != DEFAULT_TOP_N:
        suffix += f"_n{top_n}"
    if reuse != "copy" and method != Method.TEACACHE:
        suffix += f"_{reuse}"
    return f"{method}_s{num_updates}{suffix}.json"


def find_schedule(name: str, cfg: PolicyConfig) -> Schedule | None:
    """What a `schedule` parameter names, loaded and checked against `cfg`: 'full' -> None (no caching); a
    path to a schedule file; or a name in the model's shipped folder (`bac_s7` = schedules/<model>/bac_s7.json).
    ScheduleError (saying what is there) when there is no such file."""
    if name == Method.FULL:
        return None
    path = Path(name)
    if path.suffix != ".json" or not path.is_file():
        shipped = schedule_dir(cfg) / (path.name if path.suffix == ".json" else f"{name}.json")
        if len(path.parts) > 1 or not shipped.is_file():
            have = sorted(p.stem for p in schedule_dir(cfg).glob("*.json"))
            raise ScheduleError(f"no schedule '{name}': not a file, and not in {schedule_dir(cfg)} (there: "
                                f"{', '.join(have) or 'none'}; 'full' runs without caching)")
        path = shipped
    return Schedule.load(path, cfg)


def schedule_files(methods: list[Method], sizes: list[int], directory: Path, cfg: PolicyConfig,
                   similarity: str = "cosine", top_n: int = DEFAULT_TOP_N, reuse: str = "copy"
                   ) -> list[tuple[Method, int, str | None]]:
    """(method, S, schedule file or None for full precision) per evaluation row: each cached method at each S
    in `sizes`, from `directory` under `schedule_file_name`; ScheduleError naming a file that is not there."""
    entries = []
    for method in methods:
        if method == Method.FULL:
            entries.append((Method.FULL, cfg.num_steps, None))
            continue
        for s in sizes:
            path = Path(directory) / schedule_file_name(method, s, similarity, top_n=top_n, reuse=reuse)
            if not path.is_file():
                raise ScheduleError(f"no schedule {path}")
            entries.append((method, s, str(path.resolve())))
    return entries
