"""A small TOML writer, enough for validated configs (tables, arrays of tables, scalars, arrays), with
each key's doc and what it accepts as a trailing comment."""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping
from typing import Any

from ._schema import Derived, Key, Table, Tables, Union, _bounds_text, _join, _shape_text

__all__ = ["dump_toml"]


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _toml_string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(value)  # shortest repr that reads back to the same float
        return text if ("." in text or "e" in text) else text + ".0"
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a TOML value")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _resolve(spec: Any, value: Mapping[str, Any]) -> Table | None:
    """The table schema that describes ``value`` (following a union's tag)."""
    if isinstance(spec, Union):
        spec = spec.variants.get(value.get(spec.tag))  # type: ignore[arg-type]
    return spec if isinstance(spec, Table) else None


def _rule_text(key: Key) -> str:
    """What a key accepts, for its comment: choices, bounds, literals, a shape."""
    if key.choices:
        return "one of " + ", ".join(map(repr, key.choices))
    parts = [_bounds_text(key)] if key.type in ("int", "float", "array") else []
    if key.type == "array" and key.shape and key.shape != (None,):
        parts.append(f"shape {_shape_text(key.shape)}")
    if key.min_len and (not key.shape or key.shape[0] is None):  # a fixed length says it already
        parts.append(f"at least {key.min_len}")
    if key.literals:
        parts.append("or " + " or ".join(map(repr, key.literals)))
    return ", ".join(p for p in parts if p)


_WIDTH = 110  # longer lines get their comment on the lines above


def _doc_text(field: Any) -> str:
    return "; ".join(p for p in (field.doc, _rule_text(field)) if p) if isinstance(field, Key) else ""


def _with_comment(lines: list[str], line: str, text: str) -> None:
    """``line`` with ``text`` as its trailing comment, or above it when that gets too long."""
    if not text:
        lines.append(line)
    elif len(line) + 4 + len(text) <= _WIDTH:
        lines.append(f"{line}  # {text}")
    else:
        lines += textwrap.wrap(text, _WIDTH, initial_indent="# ", subsequent_indent="#   ")
        lines.append(line)


def _write_table(
    lines: list[str], prefix: str, table: Mapping[str, Any], spec: Table | None, derived_off: bool
) -> None:
    fields = spec.fields if spec is not None else {}
    for k, v in table.items():
        if v is None or isinstance(v, dict) or _is_table_array(v):
            continue
        field = fields.get(k)
        line = f"{_toml_key(k)} = {_toml_value(v)}"
        if derived_off and isinstance(field, Key) and isinstance(field.default, Derived):
            # a default that follows other keys: shown, not pinned
            _with_comment(lines, f"# {line}", f"{_doc_text(field)}; default: {field.default.doc}")
        else:
            _with_comment(lines, line, _doc_text(field))
    for k, v in table.items():
        name = _join(prefix, _toml_key(k))
        field = fields.get(k)
        if isinstance(v, dict):
            sub = _resolve(field, v)
            lines.append("")
            _with_comment(lines, f"[{name}]", sub.doc if sub is not None else "")
            _write_table(lines, name, v, sub, derived_off)
        elif _is_table_array(v):
            item_spec = field.item if isinstance(field, Tables) else None
            for item in v:
                sub = _resolve(item_spec, item)
                lines.append("")
                _with_comment(lines, f"[[{name}]]", sub.doc if sub is not None else "")
                _write_table(lines, name, item, sub, derived_off)


def dump_toml(data: Mapping[str, Any], schema: Any = None, header: str | None = None,
              derived_off: bool = False) -> str:  # fmt: skip
    """Write a config as TOML.

    Handles tables, arrays of tables, strings, numbers (inf and nan included), booleans and nested
    arrays; ``None`` values are left out.

    Args:
        data: a validated config (or any TOML-able mapping).
        schema: its :class:`Table` or :class:`Union`: each key gets its doc and what it accepts as a
            trailing comment, each table its doc (``None``: no comments).
        header: comment lines at the top.
        derived_off: write the keys whose default is :class:`Derived` as comments (``# key =
            value``), so a file that is edited keeps deriving them (what ``ndjax defaults`` prints).
    """
    lines = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    if lines:
        lines.append("")
    _write_table(lines, "", data, _resolve(schema, data) if schema is not None else None, derived_off)
    return "\n".join(lines).strip("\n") + "\n"
