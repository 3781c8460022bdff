"""Settings objects: frozen dataclasses whose fields carry their own documentation and bounds.

A settings dataclass is the single source of a knob's default. Each field is declared with
:func:`setting`, which stores the doc line and the bounds in the field's metadata; the config
schema of ``ndjax run`` (its TOML tables, their validation and the comments of the written
config) is generated from those fields, so the default in code, the one a config gets and the
one ``ndjax defaults KIND`` prints are the same value. One name per knob: the TOML key is the
field name, and the stage function that reads it takes the settings object.

Host-side, plain Python values; nothing here imports JAX.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

__all__ = ["setting", "setting_fields", "check_settings", "SettingSpec"]


@dataclasses.dataclass(frozen=True)
class SettingSpec:
    """What a field's metadata says about it (see :func:`setting`)."""

    doc: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] | None = None
    elem: str | None = None  # for tuples: "float" or "int"
    min_len: int = 0


def setting(
    default: Any,
    doc: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[str, ...] | None = None,
    elem: str | None = None,
    min_len: int = 0,
) -> Any:
    """A dataclass field with its default, a one-line doc (meaning and unit) and its bounds.

    Tuples (lists in TOML) give ``elem`` (``"float"`` or ``"int"``) and ``min_len``; bounds then
    apply to every entry.
    """
    spec = SettingSpec(doc, ge, gt, le, lt, choices, elem, min_len)
    return dataclasses.field(default=default, metadata={"ndjax": spec})


def setting_fields(cls_or_obj: Any) -> Iterator[tuple[dataclasses.Field, SettingSpec]]:
    """The fields declared with :func:`setting`, in declaration order, with their specs."""
    for f in dataclasses.fields(cls_or_obj):
        spec = f.metadata.get("ndjax")
        if spec is not None:
            yield f, spec


def _bound_problems(name: str, x: float, spec: SettingSpec) -> list[str]:
    shown, x = x, float(x)
    out = []
    if not math.isfinite(x):
        return [f"{name} must be finite, got {x!r}"]
    for op, bound, ok in (
        (">=", spec.ge, lambda b: x >= b),
        (">", spec.gt, lambda b: x > b),
        ("<=", spec.le, lambda b: x <= b),
        ("<", spec.lt, lambda b: x < b),
    ):
        if bound is not None and not ok(bound):
            out.append(f"{name} must be {op} {bound:g}, got {shown!r}")
    return out


def check_settings(obj: Any) -> list[tuple[str, str]]:
    """Every field of a settings object that breaks its type or bounds, as ``(name, message)``;
    nested settings objects are checked too, their names dotted (``calibrate.sigma``)."""
    problems: list[tuple[str, str]] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            problems += [(f"{f.name}.{k}", m) for k, m in check_settings(value)]
            continue
        spec = f.metadata.get("ndjax")
        if spec is None:
            continue
        default = f.default
        if spec.choices is not None:
            if value not in spec.choices:
                problems.append((f.name, f"{f.name} must be one of {list(spec.choices)}, got {value!r}"))
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                problems.append((f.name, f"{f.name} must be true or false, got {value!r}"))
        elif isinstance(default, int | float):
            want_int = isinstance(default, int)
            if isinstance(value, bool) or not isinstance(value, int if want_int else int | float):
                kind = "an integer" if want_int else "a number"
                problems.append((f.name, f"{f.name} must be {kind}, got {value!r}"))
            else:
                problems += [(f.name, m) for m in _bound_problems(f.name, value, spec)]
        elif isinstance(default, tuple):
            if not isinstance(value, tuple | list) or len(value) < spec.min_len:
                problems.append(
                    (f.name, f"{f.name} must be a list of at least {spec.min_len}, got {value!r}")
                )
            else:
                for i, x in enumerate(value):
                    if isinstance(x, bool) or not isinstance(x, int | float):
                        problems.append((f.name, f"{f.name}[{i}] must be a number, got {x!r}"))
                    else:
                        problems += [(f.name, m) for m in _bound_problems(f"{f.name}[{i}]", x, spec)]
    return problems
