"""Settings dataclasses whose fields are also ROS parameters (no ROS here).

A field made with `setting(default, description, low, high)` carries its meaning and its bounds, so each
default is written once: the dataclass is validated on construction, the nodes declare one parameter per
field from it (`nodes.params.from_settings`), and `from_mapping` reads the same names from a
parameter file (config/grasp.yaml) for the evaluation harness.
"""
from __future__ import annotations

import dataclasses
from typing import Any


def setting(default: Any, description: str, low: float | None = None, high: float | None = None,
            choices: tuple[str, ...] | None = None):
    """A dataclass field that is also a parameter: its description (with the unit), range [low, high] or
    choices."""
    if isinstance(default, list):
        default = tuple(default)
    return dataclasses.field(default=default, metadata={"description": description, "range": (low, high),
                                                        "choices": choices})


def out_of_range(name: str, value, bounds: tuple | None = None, choices: tuple | None = None) -> str | None:
    """Why `value` is not allowed for `name` (outside `choices`, or outside [low, high] `bounds`), or None."""
    if choices is not None and value not in choices:
        return f"{name} must be one of {', '.join(choices)}, got {value!r}"
    if bounds and bounds[0] is not None and not isinstance(value, bool) and not bounds[0] <= value <= bounds[1]:
        return f"{name} must be in [{bounds[0]}, {bounds[1]}], got {value}"
    return None


def check_ranges(obj) -> None:
    """ValueError naming the field when a value lies outside the range or choices its `setting` declares."""
    for f in dataclasses.fields(obj):
        why = out_of_range(f.name, getattr(obj, f.name), f.metadata.get("range"), f.metadata.get("choices"))
        if why:
            raise ValueError(why)


def from_mapping(cls, values: dict, strict: bool = False):
    """An instance of the settings dataclass `cls` from a mapping of parameter values (e.g. a node's
    section of a parameter file): its own fields are taken, the rest left to the defaults. Other keys are
    ignored, or with `strict` refused (a typo in a lab's file should not pass unnoticed)."""
    names = {f.name for f in dataclasses.fields(cls)}
    if strict:
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown parameter(s) for {cls.__name__}: {unknown}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
    return cls(**kwargs)


def node_parameters(node: str, path=None) -> dict:
    """One node's `ros__parameters` from a ROS parameter file (default: the package's config/grasp.yaml),
    as the node would get them with `--params-file`: the `/**` section's, then its own (which win); {} when
    the file has neither."""
    from pathlib import Path

    import yaml

    from .paths import CONFIG_DIR

    path = Path(path) if path is not None else CONFIG_DIR / "grasp.yaml"
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: not a readable parameter file ({e})") from None
    params = {}
    for key in ("/**", node, "/" + node):  # as ROS: the wildcard section first, the node's own wins
        section = data.get(key) or {}
        values = section.get("ros__parameters", {}) if isinstance(section, dict) else None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: {key}.ros__parameters must be a mapping")
        params.update(values)
    return params
