"""The config schema engine: declarative tables, a validator that reports every error at once, and
a TOML writer with the docs as comments.

A schema is a tree: a :class:`Table` maps each key to a :class:`Key` (type, default, range or
choices, doc), a nested :class:`Table`, an array of tables (:class:`Tables`) or a tagged
:class:`Union` (the table's own ``type`` picks its schema). Defaults that depend on other values
are :class:`Derived`; cross-key rules are a table's ``checks``; keys that moved are a table's
``moved``. :func:`settings_table` generates a table from a settings dataclass
(:mod:`ndjax._settings`: default, doc and bounds of each field) and :func:`settings_value` turns
the validated table back into the dataclass, so a knob has one name and one default from the
TOML key to the function that reads it. The TOML writer is :mod:`ndjax.cli._toml`; each kind's
schema is in :mod:`ndjax.cli.kinds`, and ``ndjax defaults KIND`` prints a complete config of a kind
with every default and its doc, generated from it.

:func:`validate` checks a parsed document against a schema: unknown keys (with the closest valid
key suggested), wrong types (``"10"`` or ``true`` where a number goes, ``5.0`` where an integer
goes), out-of-range values, wrong array shapes, inconsistent spans and keys that moved all end in
one :class:`ConfigError` that lists every problem by its dotted key path
(``models[1].input.amplitude``). Missing keys get their defaults, so the validated config is
complete, and :func:`ndjax.cli._toml.dump_toml` writes it back to the same value.

Host-side code: plain Python values, no JAX.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .._checks import KeyedError, not_utf8

__all__ = [
    "ConfigError",
    "Key",
    "Derived",
    "Table",
    "Tables",
    "Union",
    "Scope",
    "REQUIRED",
    "settings_table",
    "settings_value",
    "validate",
    "parse",
    "load",
]


class ConfigError(KeyedError):
    """An invalid experiment config: every problem found, each with its key path.

    Attributes:
        errors: list of ``(path, message)``, e.g. ``("models[1].input.amplitude",
            "expected a number, got string 'ten'")``.
        source: the file, when the config came from one.
    """

    what = "config"


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Default of a key that must be given.
REQUIRED: Any = _Required()


class Scope(NamedTuple):
    """What a :class:`Derived` default or a table check can see.

    Attributes:
        parents: the enclosing validated tables, outermost (the whole config) first;
            ``parents[-1]`` holds the table being filled, as filled so far.
        index: position in the nearest enclosing array of tables (``None``: none).
        source: the config file, if any.
    """

    parents: tuple[dict, ...]
    index: int | None
    source: Path | None


@dataclasses.dataclass(frozen=True)
class Derived:
    """A default computed from values validated before it (schema order).

    ``fn(scope)`` gets the :class:`Scope`; ``doc`` says what the default is.
    """

    fn: Callable[[Scope], Any]
    doc: str


@dataclasses.dataclass(frozen=True)
class Key:
    """One value.

    Attributes:
        type: ``"float"`` (an int is accepted and stored as float; never a bool),
            ``"int"`` (an integer, not a bool or a float), ``"bool"``, ``"str"``,
            or ``"array"`` (nested TOML arrays of numbers of shape ``shape``).
        default: a value, :data:`REQUIRED`, ``None`` (may be absent and stays
            absent), or a :class:`Derived`.
        doc: one line: meaning and unit.
        choices: allowed values (strings).
        gt, ge, lt, le: bounds on a number or on every array entry.
        shape: array shape; a ``None`` entry matches any length (``(None,)``: a list
            of any length, empty included).
        elem: array entries: ``"float"`` (stored as float), ``"int"``, or
            ``"number"`` (ints stay ints, floats stay floats).
        literals: strings accepted besides the type (``"auto"``).
        finite: reject inf (NaN is always rejected).
        scalar_ok: a 1-D array key also takes a single number (stored as a 1-element list).
        min_len: fewest entries of an array (along its first axis). The rule is 1: a list-valued
            key is never empty unless it says ``min_len=0`` (an empty list passed through would only
            fail later, in the code that reads it).
    """

    type: str
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple[str, ...] | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    shape: tuple[int | None, ...] | None = None
    elem: str = "float"
    literals: tuple[str, ...] = ()
    finite: bool = True
    scalar_ok: bool = False
    min_len: int = 1


CheckFn = Callable[[dict, Scope], Iterable[tuple[str, str]]]


@dataclasses.dataclass(frozen=True)
class Table:
    """A TOML table: its keys, in the order they are validated and written.

    Attributes:
        fields: key -> :class:`Key` | :class:`Table` | :class:`Tables` | :class:`Union`.
        doc: what the table is.
        optional: absent -> left out (instead of filled with defaults).
        checks: cross-key rules ``check(values, scope) -> [(key, message), ...]``
            (``key`` relative to the table). ``values`` holds only the keys that
            validated; a check that needs an invalid one (a ``KeyError``) stops there.
        moved: old key -> the dotted path it moved to (``"es_generations":
            "optimizer.calibrate.generations"``); an old key is an error that says where it went.
    """

    fields: Mapping[str, Any]
    doc: str = ""
    optional: bool = False
    checks: tuple[CheckFn, ...] = ()
    moved: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def extend(self, *, checks: tuple[CheckFn, ...] = (), **fields) -> Table:
        """A copy with ``fields`` added (or replaced) and ``checks`` appended."""
        return dataclasses.replace(self, fields={**self.fields, **fields}, checks=self.checks + checks)


@dataclasses.dataclass(frozen=True)
class Tables:
    """An array of tables (``[[models]]``), each validated against ``item``."""

    item: Any  # Table | Union
    doc: str = ""
    min_items: int = 1


@dataclasses.dataclass(frozen=True)
class Union:
    """A table whose key ``tag`` selects its schema among ``variants``.

    ``default`` is the tag used when the key is absent (``None``: the tag is required).
    """

    tag: str
    variants: Mapping[str, Table]
    default: str | None = None
    doc: str = ""
    optional: bool = False


# ---------------------------------------------------------------------------------------------------
# The validator


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


def _got(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{_toml_type(value)} {text}"


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


def _bounds_text(key: Key) -> str:
    if key.ge is not None and key.le is not None and key.gt is None and key.lt is None:
        return f"in {_fmt(key.ge)}..{_fmt(key.le)}"
    parts = [
        f"{op} {_fmt(bound)}"
        for op, bound in ((">", key.gt), (">=", key.ge), ("<", key.lt), ("<=", key.le))
        if bound is not None
    ]
    return " and ".join(parts)


def _in_bounds(key: Key, x: float) -> bool:
    return not (
        (key.gt is not None and not x > key.gt)
        or (key.ge is not None and not x >= key.ge)
        or (key.lt is not None and not x < key.lt)
        or (key.le is not None and not x <= key.le)
    )


class _Validator:
    def __init__(self, source: Path | None):
        self.source = source
        self.errors: list[tuple[str, str]] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append((path, message))

    # -- scalars and arrays ------------------------------------------------------------------------

    def number(self, key: Key, value: Any, path: str, want: str) -> Any:
        """One number of kind ``want`` ("float", "int", "number"); ``None`` after an error."""
        bounds = _bounds_text(key)
        what = {"float": "a number", "int": "an integer", "number": "a number"}[want]
        expected = f"{what} {bounds}".strip()
        ok_type = (
            isinstance(value, int) and not isinstance(value, bool) if want == "int" else _is_number(value)
        )
        if not ok_type:
            hint = " (write 5, not 5.0)" if want == "int" and isinstance(value, float) else ""
            if isinstance(value, str) and key.literals:
                expected += " or " + " or ".join(repr(s) for s in key.literals)
            self.error(path, f"expected {expected}{hint}, got {_got(value)}")
            return None
        if isinstance(value, float) and (math.isnan(value) or (key.finite and math.isinf(value))):
            self.error(path, f"expected a finite number, got {value!r}")
            return None
        if not _in_bounds(key, value):
            self.error(path, f"expected {expected}, got {value!r}")
            return None
        return float(value) if want == "float" else value

    def key(self, key: Key, value: Any, path: str) -> Any:
        if isinstance(value, str) and value in key.literals:
            return value
        if key.type in ("float", "int"):
            return self.number(key, value, path, key.type)
        if key.type == "bool":
            if not isinstance(value, bool):
                self.error(path, f"expected true or false, got {_got(value)}")
                return None
            return value
        if key.type == "str":
            if not isinstance(value, str):
                expected = "one of " + ", ".join(map(repr, key.choices)) if key.choices else "a string"
                self.error(path, f"expected {expected}, got {_got(value)}")
                return None
            if key.choices is not None and value not in key.choices:
                choices = ", ".join(map(repr, key.choices))
                self.error(path, f"expected one of {choices}, got {value!r}{_suggest(value, key.choices)}")
                return None
            return value
        if key.type == "array":
            return self.array(key, value, path)
        raise TypeError(f"schema error at {path}: unknown key type {key.type!r}")

    def array(self, key: Key, value: Any, path: str) -> Any:
        shape = key.shape or ()
        if key.scalar_ok and len(shape) == 1 and _is_number(value):
            value = [value]
        if not isinstance(value, list):
            alt = " or " + " or ".join(map(repr, key.literals)) if key.literals else ""
            self.error(path, f"expected an array of shape {_shape_text(shape)}{alt}, got {_got(value)}")
            return None
        got_shape = _nested_shape(value)
        if not _shape_matches(got_shape, shape):
            found = f"shape {got_shape}" if got_shape is not None else "a ragged or non-numeric array"
            self.error(path, f"expected an array of shape {_shape_text(shape)}, got {found}")
            return None
        if len(value) < key.min_len:
            got = "an empty array" if not value else f"{len(value)}"
            self.error(path, f"expected at least {key.min_len} value(s), got {got}")
            return None
        n_before = len(self.errors)

        def walk(v, p):
            if isinstance(v, list):
                return [walk(item, f"{p}[{i}]") for i, item in enumerate(v)]
            return self.number(key, v, p, key.elem)

        out = walk(value, path)
        return out if len(self.errors) == n_before else None

    # -- tables ------------------------------------------------------------------------------------

    def node(self, spec: Any, value: Any, path: str, parents: tuple[dict, ...], index: int | None) -> Any:
        if isinstance(spec, Key):
            return self.key(spec, value, path)
        if isinstance(spec, Table):
            return self.table(spec, value, path, parents, index)
        if isinstance(spec, Union):
            return self.union(spec, value, path, parents, index)
        if isinstance(spec, Tables):
            return self.tables(spec, value, path, parents)
        raise TypeError(f"schema error at {path}: {spec!r}")

    def tables(self, spec: Tables, value: Any, path: str, parents: tuple[dict, ...]) -> Any:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.error(
                path, f"expected an array of tables ([[{path.rsplit('.', 1)[-1]}]]), got {_got(value)}"
            )
            return None
        if len(value) < spec.min_items:
            self.error(path, f"expected at least {spec.min_items} [[{path}]] table(s), got {len(value)}")
            return None
        return [self.node(spec.item, v, f"{path}[{i}]", parents, i) for i, v in enumerate(value)]

    def union(self, spec: Union, value: Any, path: str, parents: tuple[dict, ...], index: int | None) -> Any:
        if not isinstance(value, dict):
            self.error(path or "<top level>", f"expected a table, got {_got(value)}")
            return None
        tag_path = _join(path, spec.tag)
        choices = ", ".join(map(repr, spec.variants))
        tag = value.get(spec.tag, spec.default)
        if tag is None:
            self.error(tag_path, f"required key missing: expected one of {choices}")
            return None
        if not isinstance(tag, str) or tag not in spec.variants:
            hint = _suggest(tag, spec.variants) if isinstance(tag, str) else ""
            self.error(tag_path, f"expected one of {choices}, got {_got(tag)}{hint}")
            return None
        return self.table(spec.variants[tag], value, path, parents, index, tag=(spec.tag, tag))

    def table(
        self,
        spec: Table,
        value: Any,
        path: str,
        parents: tuple[dict, ...],
        index: int | None,
        tag: tuple[str, str] | None = None,
    ) -> dict | None:
        if not isinstance(value, dict):
            self.error(path or "<top level>", f"expected a table ([{path}]), got {_got(value)}")
            return None
        n_before = len(self.errors)
        out: dict[str, Any] = {}
        valid = set(spec.fields)
        if tag is not None:
            out[tag[0]] = tag[1]
            valid.add(tag[0])
        self.unknown_keys(spec, value, path, valid)
        scope_parents = (*parents, out)
        for name, field in spec.fields.items():
            sub = _join(path, name)
            if name in spec.moved and isinstance(field, Table) and not isinstance(value.get(name, {}), dict):
                self.error(sub, f"moved to {spec.moved[name]}")  # a value became a table
                continue
            if name in value:
                result = self.node(field, value[name], sub, scope_parents, index)
                if result is not None:
                    out[name] = result
                continue
            if isinstance(field, Key):
                self.default(field, out, name, sub, Scope(scope_parents, index, self.source))
            elif isinstance(field, Table | Union):
                if not field.optional:
                    result = self.node(field, {}, sub, scope_parents, index)
                    if result is not None:
                        out[name] = result
            elif isinstance(field, Tables):
                if field.min_items > 0:
                    self.error(sub, f"required: at least {field.min_items} [[{sub}]] table(s)")
        scope = Scope(scope_parents, index, self.source)
        for check in spec.checks:
            try:
                for key_path, message in check(out, scope):
                    self.error(_join(path, key_path), message)
            except KeyError:  # a key it needs is invalid, and already reported
                if len(self.errors) == n_before:
                    raise
        return out

    def unknown_keys(self, spec: Table, value: dict, path: str, valid: set[str]) -> None:
        """An error for each key of ``value`` not in ``valid``: where it moved, or the closest valid
        key (or old key, with where it moved)."""
        for k in value:
            if k in valid:
                continue
            if k in spec.moved:
                self.error(_join(path, k), f"moved to {spec.moved[k]}")
                continue
            close = difflib.get_close_matches(k, [*valid, *spec.moved], n=1, cutoff=0.6)
            hint = ""
            if close:
                hint = f"; did you mean {close[0]!r}?"
                if close[0] in spec.moved and close[0] not in valid:
                    hint += f" (it moved to {spec.moved[close[0]]})"
            options = ", ".join(sorted(valid))
            self.error(_join(path, k), f"unknown key {k!r}{hint} (valid keys: {options})")

    def default(self, field: Key, out: dict, name: str, path: str, scope: Scope) -> None:
        if field.default is REQUIRED:
            doc = f" ({field.doc})" if field.doc else ""
            self.error(path, f"required key missing{doc}")
        elif isinstance(field.default, Derived):
            try:
                out[name] = field.default.fn(scope)
            except (KeyError, TypeError, IndexError):
                if not self.errors:  # an upstream key is invalid (already reported); else a schema bug
                    raise
        elif field.default is not None:
            out[name] = _copy(field.default)


def _nested_shape(value: Any) -> tuple[int, ...] | None:
    """Shape of a rectangular nested list of scalars, else ``None``."""
    if not isinstance(value, list):
        return None if isinstance(value, dict) else ()
    if not value:
        return (0,)
    inner = {_nested_shape(v) for v in value}
    if len(inner) != 1:
        return None
    (shape,) = inner
    return None if shape is None else (len(value), *shape)


def _shape_matches(got: tuple[int, ...] | None, want: tuple[int | None, ...]) -> bool:
    if got is None or len(got) != len(want):
        return False
    return all(w is None or g == w for g, w in zip(got, want, strict=True))


def _shape_text(shape: tuple[int | None, ...]) -> str:
    """``(3,)``, ``(3, 2, 7)``; ``None`` (any length) written as ``n``."""
    dims = ["n" if d is None else str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _copy(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------------
# Tables generated from settings dataclasses (ndjax._settings)


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"settings field {f.name!r} has no default")


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n", 1)[0].strip()


_SCALAR_TYPES = ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"))


def _setting_key(default: Any, spec: Any, where: str) -> Key:
    """The :class:`Key` of one settings field: its type from the default, doc and bounds from its
    :class:`ndjax._settings.SettingSpec`."""
    bounds = dict(ge=spec.ge, gt=spec.gt, le=spec.le, lt=spec.lt)
    if isinstance(default, tuple):
        longer = {"min_len": spec.min_len} if spec.min_len else {}  # else the schema's rule (1)
        return Key("array", list(default), spec.doc, shape=(None,), elem=spec.elem or "float",
                   **longer, **bounds)  # fmt: skip
    for cls, name in _SCALAR_TYPES:  # bool before int: a bool is an int
        if isinstance(default, cls):
            if name in ("bool", "str"):
                return Key(name, default, spec.doc, choices=spec.choices)
            return Key(name, default, spec.doc, **bounds)
    raise TypeError(f"{where}: no TOML type for a default of type {type(default).__name__}")


def settings_table(
    cls: type,
    *,
    doc: str | None = None,
    checks: tuple[CheckFn, ...] = (),
    moved: Mapping[str, str] | None = None,
    tables: Mapping[str, Table] | None = None,
) -> Table:
    """The :class:`Table` of a settings dataclass: a key per field, named as the field.

    Each field's TOML type follows its default (``bool``, ``int``, ``float``, ``str``, a tuple of
    numbers -> an array), its doc, bounds, choices and shortest length come from the field's
    :func:`ndjax._settings.setting`; a field holding a settings dataclass becomes a nested table.

    Args:
        cls: a frozen dataclass whose fields are declared with :func:`ndjax._settings.setting` (or
            hold nested settings dataclasses).
        doc: the table's doc (default: the first line of the class docstring).
        checks, moved: the table's cross-key rules and moved keys (see :class:`Table`).
        tables: nested field -> the table to use for it (one with its own checks or moved keys).

    Raises:
        TypeError: a field without a default, without a spec, or of a type TOML cannot hold.
    """
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        default = _field_default(f)
        if tables and f.name in tables:
            fields[f.name] = tables[f.name]
        elif dataclasses.is_dataclass(default):
            fields[f.name] = settings_table(type(default))
        elif "ndjax" in f.metadata:
            fields[f.name] = _setting_key(default, f.metadata["ndjax"], f"{cls.__name__}.{f.name}")
        else:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with ndjax._settings.setting")
    doc = _first_line(cls.__doc__) if doc is None else doc
    return Table(fields, doc=doc, checks=checks, moved=dict(moved or {}))


def settings_value(cls: type, values: Mapping[str, Any]) -> Any:
    """The settings dataclass ``cls`` of a table validated against :func:`settings_table` (lists
    become tuples, nested tables nested settings objects)."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        default, value = _field_default(f), values[f.name]
        if dataclasses.is_dataclass(default):
            kwargs[f.name] = settings_value(type(default), value)
        elif isinstance(default, tuple):
            kwargs[f.name] = tuple(value)
        else:
            kwargs[f.name] = value
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------------------
# Entry points


def validate(schema: Any, raw: Mapping[str, Any], source: str | Path | None = None) -> dict:
    """Check a parsed document against ``schema`` and fill in the defaults.

    Args:
        schema: a :class:`Table` or :class:`Union`.
        raw: the parsed TOML document.
        source: the file it came from (seen by :class:`Derived` defaults; named in messages).

    Returns:
        A new dict, complete (every default filled in), keys in schema order.

    Raises:
        ConfigError: listing every problem found.
    """
    path = Path(source) if source is not None else None
    validator = _Validator(path)
    out = validator.node(schema, dict(raw), "", (), None)
    if validator.errors:
        raise ConfigError(validator.errors, source)
    return out


def parse(schema: Any, text: str, source: str | Path | None = None) -> dict:
    """Parse TOML text and validate it (see :func:`validate`)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError([("", f"not valid TOML: {err}")], source) from err
    return validate(schema, raw, source)


def load(schema: Any, path: str | Path) -> dict:
    """Read, parse and validate a config file.

    Raises:
        ConfigError: not UTF-8 text (the byte offset named), invalid TOML or an invalid config.
        OSError: the file cannot be read.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError([("", not_utf8(err))], path) from err
    return parse(schema, text, path)
