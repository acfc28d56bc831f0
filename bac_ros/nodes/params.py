"""Parameters declared once, as a table per node (in the spirit of generate_parameter_library): name, default
(its type), description with the unit, a range or choices, and whether it is read-only after start. The table
is what the node declares (`declare_params`: descriptors, so `ros2 param describe` prints it), what validates
the values on start and on set, and what `bac reference` writes into docs/reference.md."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from rclpy.node import Node

from ..core.settings import out_of_range


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    range: tuple[float, float] | None = None  # numbers: [low, high]
    choices: tuple[str, ...] | None = None  # strings: one of these
    read_only: bool = True  # read at start-up only (most are: a node does not re-plan on a changed value)

    @property
    def type_name(self) -> str:
        d = self.default
        if isinstance(d, bool):
            return "bool"
        if isinstance(d, (tuple, list)):
            return "double[]" if d and isinstance(d[0], float) else "integer[]" if d else "string[]"
        return {int: "integer", float: "double", str: "string"}[type(d)]

    def check(self, value) -> str | None:
        """Why `value` is not allowed, or None."""
        return out_of_range(self.name, value, self.range, self.choices)


def from_settings(cls, read_only: bool = True) -> list[Param]:
    """The parameters of a settings dataclass (`core.settings.setting` fields: default, description, range)."""
    out = []
    for f in dataclasses.fields(cls):
        low, high = f.metadata.get("range", (None, None))
        out.append(Param(f.name, f.default, f.metadata.get("description", ""),
                         (low, high) if low is not None else None, f.metadata.get("choices"), read_only))
    return out


def settings_from(cls, values: SimpleNamespace):
    """A settings dataclass built from the declared values of its fields (validated on construction)."""
    return cls(**{f.name: getattr(values, f.name) for f in dataclasses.fields(cls)})


def declare_params(node: Node, table: list[Param]) -> SimpleNamespace:
    """Declare every parameter of `table` with its descriptor and return their values (tuples for lists) as
    attributes. ValueError naming the parameter for a value outside its range or choices; a set at run time is
    refused for read-only ones (by rclpy) and checked against the table for the others."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.exceptions import ParameterException

    values = {}
    for p in table:
        d = ParameterDescriptor(description=p.description, read_only=p.read_only)
        if p.choices is not None:
            d.additional_constraints = f"one of: {', '.join(p.choices)}"
        if p.range is not None and isinstance(p.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]), to_value=float(p.range[1]),
                                                         step=0.0)]
        elif p.range is not None and isinstance(p.default, int) and not isinstance(p.default, bool):
            d.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]), step=1)]
        default = list(p.default) if isinstance(p.default, tuple) else p.default
        try:
            value = node.declare_parameter(p.name, default, d).value
        except ParameterException as e:  # a value of another type (serial:=123456 is an integer): one line, exit 2
            raise ValueError(f"parameter {p.name} ({type(p.default).__name__}): {e}"
                             + (" (quote a string of digits: name:=\"'123'\")" if isinstance(p.default, str) else "")) \
                from None
        value = tuple(value) if isinstance(p.default, tuple) else value
        problem = p.check(value)
        if problem:
            raise ValueError(f"parameter {problem}")
        values[p.name] = value
    by_name = {p.name: p for p in table}

    def on_set(params):
        from rcl_interfaces.msg import SetParametersResult

        for prm in params:
            spec = by_name.get(prm.name)
            problem = spec.check(prm.value) if spec is not None else None
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return SimpleNamespace(**values)
