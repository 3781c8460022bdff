"""``words.json``: a fitted chip's integer words and the settings they need (host side, NumPy).

A file written by :func:`save_words` (the ``fit`` experiment writes one) holds
everything needed to run the chip again, or to rebuild the HH -> chip mapping
of SPEC 3 for a mismatch study::

    {
      "format": "ndjax-words/1",
      "dg": [dg_Na, dg_K, dg_L],                       # integers 0..1023
      "dErev": [dE_Na, dE_K, dE_L],                    # integers -1023..1023
      "dIb": [[[7 ints], [7 ints]], ... x3],           # [gate m,h,n][alpha,beta][sigmoid j], 0..1023
      "V_ref": 0.9, "I_voltage": 2e-07, "I_master": 1.5e-07, "I_ref": 1e-07,   # V, A
      "capacitance_scaling": 0.1,
      "scl_t": 2.4,           # the chip runs scl_t times faster than the SI HH model
      "scl_v": 3.0,           # voltage scale of the HH target
      "V_mean": 0.162,        # optional: (E_K + E_Na)/2 of the scaled SI target, V
                              #   (V_chip = V_HH + V_ref - V_mean)
      "hh": {"gna": 120.0, ...}   # optional: the HH target, classic units, before scaling
    }

:func:`load_words` checks that the file is UTF-8 JSON, keys (an unknown key is
an error, with the closest valid key suggested), shapes, integer words in range,
the settings and the HH target (finite, conductances ``gna gk gl`` >= 0), and
reports every problem at once. This module does not import JAX.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ._checks import KeyedError, not_utf8

__all__ = ["WORDS_FORMAT", "WordsFileError", "save_words", "load_words", "validate_words"]

#: Value of the ``format`` key.
WORDS_FORMAT = "ndjax-words/1"

# name -> (shape, lo, hi); kept here (not imported from ndjax.models) so this module stays JAX-free;
# tests check they equal ndjax.models.WORD_RANGES / WORD_SHAPES.
_WORDS = {"dg": ((3,), 0, 1023), "dErev": ((3,), -1023, 1023), "dIb": ((3, 2, 7), 0, 1023)}

# name -> (lower bound, upper bound, lower bound inclusive?, doc)
_SETTINGS = {
    "V_ref": (0.0, 1.8, True, "reference voltage, V"),
    "I_voltage": (0.0, math.inf, False, "bias I_voltage, A"),
    "I_master": (0.0, math.inf, False, "bias I_master, A"),
    "I_ref": (0.0, math.inf, False, "bias I_ref, A"),
    "capacitance_scaling": (0.0, math.inf, False, "factor on the 4 pF membrane capacitance"),
    "scl_t": (0.0, math.inf, False, "time scale: chip speed over the SI HH model"),
    "scl_v": (0.0, math.inf, False, "voltage scale of the HH target"),
}
_HH_KEYS = ("gna", "gk", "gl", "ena", "ek", "el")
#: The HH target's maximal conductances (mS/cm^2): a negative one has no physical meaning.
_HH_CONDUCTANCES = ("gna", "gk", "gl")
_KEYS = ("format", *_WORDS, *_SETTINGS, "V_mean", "hh")


class WordsFileError(KeyedError):
    """An invalid words file (or words dict): every problem found, each with its key path.

    Attributes:
        errors: list of ``(path, message)``, e.g. ``("dIb[2][1][0]", "expected an integer word ...")``.
        source: the file, when there is one.
    """

    what = "words file"


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool | np.bool_)


def _as_int_word(x: Any) -> int | None:
    """``x`` as an int if it is an integer (an int, or a float/NumPy value with no fraction)."""
    if isinstance(x, bool | np.bool_) or not _is_number(x):
        return None
    if isinstance(x, float | np.floating) and not (math.isfinite(x) and float(x).is_integer()):
        return None
    return int(x)


def _shape(value: Any) -> tuple[int, ...] | None:
    """Shape of a rectangular nested list (or array) of scalars, else ``None``."""
    if isinstance(value, np.ndarray):
        return value.shape
    if not isinstance(value, list | tuple):
        return ()
    shapes = {_shape(v) for v in value}
    if len(shapes) > 1 or None in shapes:
        return None
    return (len(value), *(shapes.pop() if shapes else ()))


def validate_words(data: Mapping[str, Any], source: str | Path | None = None) -> dict:
    """Check a words dict and return it normalised.

    Args:
        data: as read from ``words.json`` (nested lists) or with NumPy word arrays.
        source: the file, for messages.

    Returns:
        A new dict: ``dg`` (3,), ``dErev`` (3,), ``dIb`` (3, 2, 7) as NumPy int64 arrays;
        the settings as floats; ``format``, ``V_mean`` (float) and ``hh`` (dict of floats) when present.

    Raises:
        WordsFileError: listing every problem (unknown or missing keys, wrong shapes,
            non-integer or out-of-range words, bad settings, a negative HH conductance).
    """
    errors: list[tuple[str, str]] = []
    if not isinstance(data, Mapping):
        raise WordsFileError([("", f"expected a JSON object, got {type(data).__name__}")], source)
    for k in data:
        if k not in _KEYS:
            close = difflib.get_close_matches(str(k), _KEYS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            errors.append((str(k), f"unknown key {k!r}{hint} (valid keys: {', '.join(_KEYS)})"))
    out: dict[str, Any] = {}
    for name, (shape, lo, hi) in _WORDS.items():
        if name not in data:
            errors.append((name, f"required key missing (integer words of shape {shape})"))
            continue
        value = data[name]
        got = _shape(value)
        if got != shape:
            found = f"shape {got}" if got is not None else "a ragged array"
            errors.append((name, f"expected an array of shape {shape}, got {found}"))
            continue
        arr = np.asarray(value, dtype=object)
        words = np.zeros(shape, dtype=np.int64)
        for idx in np.ndindex(*shape):
            x = arr[idx]
            w = _as_int_word(x)
            if w is None or not lo <= w <= hi:
                where = name + "".join(f"[{i}]" for i in idx)
                errors.append((where, f"expected an integer word in {lo}..{hi}, got {x!r}"))
            else:
                words[idx] = w
        out[name] = words
    for name, (lo, hi, lo_inclusive, doc) in _SETTINGS.items():
        if name not in data:
            errors.append((name, f"required key missing ({doc})"))
            continue
        x = data[name]
        low_ok = _is_number(x) and (x >= lo if lo_inclusive else x > lo)
        if not (_is_number(x) and math.isfinite(x) and low_ok and x <= hi):
            bound = f"in {lo:g}..{hi:g}" if math.isfinite(hi) else f"{'>=' if lo_inclusive else '>'} {lo:g}"
            errors.append((name, f"expected a finite number {bound} ({doc}), got {x!r}"))
        else:
            out[name] = float(x)
    if "format" in data:
        if data["format"] != WORDS_FORMAT:
            errors.append(("format", f"expected {WORDS_FORMAT!r}, got {data['format']!r}"))
        else:
            out["format"] = WORDS_FORMAT
    if "V_mean" in data:
        x = data["V_mean"]
        if not (_is_number(x) and math.isfinite(x)):
            errors.append(("V_mean", f"expected a finite number (V), got {x!r}"))
        else:
            out["V_mean"] = float(x)
    if "hh" in data:
        hh = data["hh"]
        if not isinstance(hh, Mapping) or set(hh) != set(_HH_KEYS):
            keys = sorted(hh) if isinstance(hh, Mapping) else type(hh).__name__
            errors.append(("hh", f"expected an object with keys {', '.join(_HH_KEYS)}, got {keys}"))
        else:
            bad = [k for k in _HH_KEYS if not (_is_number(hh[k]) and math.isfinite(hh[k]))]
            errors += [(f"hh.{k}", f"expected a finite number, got {hh[k]!r}") for k in bad]
            negative = [k for k in _HH_CONDUCTANCES if k not in bad and hh[k] < 0]
            errors += [(f"hh.{k}", f"expected a conductance >= 0 (mS/cm^2), got {hh[k]!r}") for k in negative]
            bad += negative
            if not bad:
                out["hh"] = {k: float(hh[k]) for k in _HH_KEYS}
    if errors:
        raise WordsFileError(errors, source)
    return {k: out[k] for k in _KEYS if k in out}


def _dumps(d: dict) -> str:
    """JSON with one line per key and one line per gate of ``dIb`` (readable, still plain JSON)."""
    lines = []
    for k, v in d.items():
        if k == "dIb":
            gates = ",\n".join(f"    {json.dumps(g)}" for g in v)
            text = f"[\n{gates}\n  ]"
        else:
            text = json.dumps(v, allow_nan=False)
        lines.append(f"  {json.dumps(k)}: {text}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def save_words(
    path: str | Path,
    *,
    dg: Any,
    dErev: Any,
    dIb: Any,
    v_ref: float,
    i_voltage: float,
    i_master: float,
    i_ref: float,
    capacitance_scaling: float,
    scl_t: float,
    scl_v: float,
    v_mean: float | None = None,
    hh: Mapping[str, float] | None = None,
) -> Path:
    """Validate and write a words file (see the module docstring).

    Args:
        path: the file to write.
        dg, dErev, dIb: integer words, shapes (3,), (3,), (3, 2, 7) (lists or arrays).
        v_ref: V; i_voltage, i_master, i_ref: A.
        capacitance_scaling, scl_t, scl_v: the mapping's scales.
        v_mean: ``(E_K + E_Na)/2`` of the scaled SI target, V (optional).
        hh: the HH target's ``gna gk gl ena ek el``, classic units (optional).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        WordsFileError: an invalid value (nothing is written).
    """
    data: dict[str, Any] = {
        "format": WORDS_FORMAT,
        "dg": dg,
        "dErev": dErev,
        "dIb": dIb,
        "V_ref": v_ref,
        "I_voltage": i_voltage,
        "I_master": i_master,
        "I_ref": i_ref,
        "capacitance_scaling": capacitance_scaling,
        "scl_t": scl_t,
        "scl_v": scl_v,
    }
    if v_mean is not None:
        data["V_mean"] = v_mean
    if hh is not None:
        data["hh"] = dict(hh)
    checked = validate_words(data, source=path)
    plain = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in checked.items()}
    path = Path(path)
    path.write_text(_dumps(plain), encoding="utf-8")
    return path


def load_words(path: str | Path) -> dict:
    """Read and validate a words file.

    Returns:
        See :func:`validate_words`: ``dg``, ``dErev``, ``dIb`` as NumPy int64 arrays, settings as floats.

    Raises:
        WordsFileError: not UTF-8 text (the byte offset named), not JSON, or invalid content (every
            problem listed).
        OSError: the file cannot be read.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise WordsFileError([("", not_utf8(err))], path) from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise WordsFileError([("", f"not valid JSON: {err}")], path) from err
    return validate_words(data, source=path)
