"""Schema tables shared by the experiment kinds: the top-level keys, the solver, figures, models
(HH and NeuroDyn, their inputs, spike detection and mismatch), and small checks.

Where the code that reads a key has a default of its own (``hh_params``, ``nd_chip``,
``simulate``), the key's default is read from there (:func:`param_default`), not copied.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._simulate import DEFAULT_ATOL, DEFAULT_MAX_STEPS, DEFAULT_RTOL
from ..models._hh import hh_params
from ..models._neurodyn import (
    DEFAULT_DEREV,
    DEFAULT_DG,
    DEFAULT_DIB,
    EXPONENT_SIGMA,
    WORD_RANGES,
    nd_chip,
    sample_mismatch,
)
from ._schema import REQUIRED, Derived, Key, Scope, Table, Union, _copy

__all__ = [
    "COMMON",
    "SOLVER",
    "SOLVER_NAMES",
    "PLOT",
    "INPUT",
    "HH_MODEL",
    "ND_MODEL",
    "MODEL",
    "MISMATCH",
    "EXTRA_MISMATCH_KEYS",
    "param_default",
    "time_unit",
    "root_seed",
    "duplicates",
    "same_current",
    "say",
]


def param_default(fn: Callable, name: str) -> Any:
    """The default of parameter ``name`` of ``fn``: a schema key whose value ``fn`` receives takes
    its default from there."""
    default = inspect.signature(fn).parameters[name].default
    if default is inspect.Parameter.empty:
        raise TypeError(f"{fn.__name__}() has no default for {name!r}")
    return default


def say(message: str) -> None:
    """A progress line of a run (indented under the runner's own lines)."""
    print(f"  {message}", flush=True)


def same_current(a: float, b: float) -> bool:
    """Two currents of a config are the same one (``rel 1e-12, abs 1e-9``)."""
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)


def duplicates(name: str, currents: list[float]) -> Iterable[tuple[str, str]]:
    """Errors for each current of the list ``name`` that repeats an earlier one."""
    for i, x in enumerate(currents):
        for j in range(i):
            if same_current(x, currents[j]):
                yield f"{name}[{i}]", f"duplicate current {x!r} (also {name}[{j}])"
                break


#: Solver names accepted in ``[solver] name``; the runner maps them to diffrax solvers.
SOLVER_NAMES = ("tsit5", "dopri5", "dopri8", "bosh3")


def time_unit(model: Mapping[str, Any]) -> str:
    """The time unit of a validated model table: ``"ms"`` (classic HH) or ``"s"``."""
    if model["type"] == "hh" and not model.get("params", {}).get("si_units", False):
        return "ms"
    return "s"


def _source_stem(scope: Scope) -> str:
    return scope.source.stem if scope.source is not None else "experiment"


def root_seed(scope: Scope) -> int:
    """A :class:`Derived` default: the config's top-level ``seed``."""
    return scope.parents[0]["seed"]


COMMON: dict[str, Any] = {
    "name": Key("str", Derived(_source_stem, "the config file's stem"), "experiment name"),
    "description": Key("str", "", "free text, kept with the results"),
    "seed": Key("int", 0, "default seed of every random draw", ge=0, le=2**32 - 1),
}

SOLVER = Table(
    {
        "name": Key("str", "tsit5", "diffrax solver", choices=SOLVER_NAMES),
        "rtol": Key("float", DEFAULT_RTOL, "relative tolerance of the PID step-size controller", gt=0, lt=1),
        "atol": Key("float", DEFAULT_ATOL, "absolute tolerance of the PID step-size controller", gt=0),
        "dt0": Key(
            "float",
            "auto",
            "first step (model time unit; shared by every model), or 'auto'",
            gt=0,
            literals=("auto",),
        ),
        "max_steps": Key("int", DEFAULT_MAX_STEPS, "step budget of one solve", ge=1, le=100_000_000),
        "n_save": Key("int", 2001, "save points, evenly spaced over [t0, t1]", ge=2, le=10_000_000),
    },
    doc="ODE solver settings shared by every model",
)

PLOT = Table(
    {
        "layout": Key(
            "str",
            "stacked",
            "one figure with a panel per model, or a figure each",
            choices=("stacked", "separate"),
        ),
        "dpi": Key("int", 120, "resolution of the PNG files", ge=30, le=1200),
        "show_spikes": Key("bool", True, "draw the spike threshold and mark detected spikes"),
    },
    doc="figures",
)


def _check_step(values: dict, scope: Scope) -> Iterable[tuple[str, str]]:
    if not values["t_off"] > values["t_on"]:
        yield "t_off", f"expected t_off > t_on = {values['t_on']!r}, got {values['t_off']!r}"


def _check_pulses(values: dict, scope: Scope) -> Iterable[tuple[str, str]]:
    if not values["width"] < values["period"]:
        yield "width", f"expected width < period = {values['period']!r}, got {values['width']!r}"


_AMPLITUDE = "current (HH: uA/cm^2, or A/cm^2 with si_units; ND: A)"
_BASELINE = Key("float", 0.0, "current outside the on-times")

INPUT = Union(
    "type",
    {
        "constant": Table({"amplitude": Key("float", 0.0, _AMPLITUDE)}, doc="constant current"),
        "step": Table(
            {
                "amplitude": Key("float", REQUIRED, _AMPLITUDE),
                "t_on": Key("float", REQUIRED, "step on (model time unit)"),
                "t_off": Key("float", math.inf, "step off (model time unit), inf: never", finite=False),
                "baseline": _BASELINE,
            },
            doc="a step of current",
            checks=(_check_step,),
        ),
        "pulses": Table(
            {
                "amplitude": Key("float", REQUIRED, _AMPLITUDE),
                "t_start": Key("float", 0.0, "start of the first pulse (model time unit)"),
                "width": Key("float", REQUIRED, "pulse width (model time unit)", gt=0),
                "period": Key("float", REQUIRED, "pulse period (model time unit)", gt=0),
                "n_pulses": Key("int", REQUIRED, "number of pulses", ge=1, le=1_000_000),
                "baseline": _BASELINE,
            },
            doc="a train of rectangular pulses",
            checks=(_check_pulses,),
        ),
    },
    default="constant",
    doc="applied current",
)


def _model_label(scope: Scope) -> str:
    return f"{scope.parents[-1]['type']}-{scope.index}"


def _check_model(values: dict, scope: Scope) -> Iterable[tuple[str, str]]:
    if not values["t1"] > values["t0"]:
        kind = "empty" if values["t1"] == values["t0"] else "reversed"
        yield "t1", f"expected t1 > t0 = {values['t0']!r}, got {values['t1']!r} ({kind} span)"
    for i, gate in enumerate("mhn", start=1):
        x = values["x0"][i]
        if not 0.0 <= x <= 1.0:
            yield f"x0[{i}]", f"expected the gate {gate} in 0..1, got {x!r}"


def _model_fields(x0: tuple[float, ...]) -> dict[str, Any]:
    return {
        "label": Key("str", Derived(_model_label, "'<type>-<index>'"), "name in results and figures"),
        "t0": Key("float", 0.0, "span start (model time unit)"),
        "t1": Key("float", REQUIRED, "span end (model time unit), > t0"),
        "x0": Key("array", list(x0), "initial state [V, m, h, n]", shape=(4,)),
    }


def _hh_scale(scope: Scope) -> float:
    params = scope.parents[-2]["params"]
    return params["scl_v"] * (1e-3 if params["si_units"] else 1.0)


def _hh(name: str) -> Any:
    return param_default(hh_params, name)


def _nd(name: str) -> Any:
    return param_default(nd_chip, name)


HH_PARAMS = Table(
    {
        "gna": Key("float", _hh("gna"), "sodium conductance, mS/cm^2 (classic units, before scaling)", ge=0),
        "gk": Key("float", _hh("gk"), "potassium conductance, mS/cm^2", ge=0),
        "gl": Key("float", _hh("gl"), "leak conductance, mS/cm^2", ge=0),
        "ena": Key("float", _hh("ena"), "sodium reversal, mV (rest at 0 mV)"),
        "ek": Key("float", _hh("ek"), "potassium reversal, mV"),
        "el": Key("float", _hh("el"), "leak reversal, mV"),
        "c": Key("float", _hh("c"), "membrane capacitance, uF/cm^2", gt=0),
        "scl_v": Key("float", _hh("scl_v"), "voltage scale (SPEC 1)", gt=0),
        "scl_t": Key("float", _hh("scl_t"), "time scale (SPEC 1)", gt=0),
        "si_units": Key("bool", _hh("si_units"), "V, s, A/cm^2 instead of mV, ms, uA/cm^2"),
    },
    doc="ndjax.hh_params(...)",
)

HH_SPIKES = Table(
    {
        "threshold": Key(
            "float",
            Derived(lambda s: 60.0 * _hh_scale(s), "60 mV x scl_v (in V with si_units)"),
            "spike threshold (model voltage unit)",
        ),
        "hysteresis": Key(
            "float",
            Derived(lambda s: 10.0 * _hh_scale(s), "10 mV x scl_v (in V with si_units)"),
            "re-arm below threshold - hysteresis",
            ge=0,
        ),
    },
    doc="spike detection",
)

HH_MODEL = Table(
    {
        **_model_fields((0.0, 0.0, 0.0, 0.0)),
        "params": HH_PARAMS,
        "input": INPUT,
        "spikes": HH_SPIKES,
    },
    doc="a Hodgkin-Huxley neuron (SPEC 1)",
    checks=(_check_model,),
)


def _check_words(values: dict, scope: Scope) -> Iterable[tuple[str, str]]:
    for name in ("dg", "dErev", "dIb"):
        lo, hi = WORD_RANGES[name]
        for idx, x in _flat(values[name]):
            where = name + "".join(f"[{i}]" for i in idx)
            if values["digital"]:
                if x != round(x) or not lo <= x <= hi:
                    yield where, f"expected an integer word in {lo}..{hi}, got {x!r}"
            elif name != "dErev" and x < 0:
                yield where, f"expected a physical value >= 0 (digital = false), got {x!r}"


def _flat(value: Any, idx: tuple[int, ...] = ()) -> Iterable[tuple[tuple[int, ...], float]]:
    if isinstance(value, list):
        for i, v in enumerate(value):
            yield from _flat(v, (*idx, i))
    else:
        yield idx, value


_WORD_DOC = " (digital = false: physical values, SPEC 2)"

ND_PARAMS = Table(
    {
        "dg": Key(
            "array",
            list(DEFAULT_DG),
            "conductance words [Na, K, L], 0..1023" + _WORD_DOC,
            shape=(3,),
            elem="number",
        ),
        "dErev": Key(
            "array",
            list(DEFAULT_DEREV),
            "reversal words [Na, K, L], -1023..1023" + _WORD_DOC,
            shape=(3,),
            elem="number",
        ),
        "dIb": Key(
            "array",
            _copy(DEFAULT_DIB),
            "sigmoid-weight words [gate m,h,n][alpha,beta][j], 0..1023" + _WORD_DOC,
            shape=(3, 2, 7),
            elem="number",
        ),
        "v_ref": Key("float", _nd("v_ref"), "reference voltage, V", gt=0, le=1.8),
        "i_voltage": Key("float", _nd("i_voltage"), "bias I_voltage, A", gt=0),
        "i_master": Key("float", _nd("i_master"), "bias I_master, A", gt=0),
        "i_ref": Key("float", _nd("i_ref"), "bias I_ref, A (no effect on the equations)", gt=0),
        "capacitance_scaling": Key(
            "float", _nd("capacitance_scaling"), "factor on the 4 pF membrane capacitance", gt=0
        ),
        "digital": Key("bool", _nd("digital"), "words are DAC words (false: physical values)"),
    },
    doc="ndjax.nd_chip(...)",
    checks=(_check_words,),
)

ND_SPIKES = Table(
    {
        "threshold": Key(
            "float", Derived(lambda s: s.parents[-2]["params"]["v_ref"], "v_ref"), "spike threshold, V"
        ),
        "hysteresis": Key("float", 0.05, "re-arm below threshold - hysteresis, V", ge=0),
    },
    doc="spike detection",
)

#: Mismatch sources beyond SPEC 2 (ndjax.sample_mismatch's centre_sigma and kappa_sigma), off by
#: default; shared by a simulated chip's [models.mismatch] and a study's [study].
EXTRA_MISMATCH_KEYS = {
    "centre_sigma": Key(
        "float",
        0.0,
        "beyond SPEC 2: offsets of the 42 sigmoid centres, V (about 0.015 is physical; 0: off)",
        ge=0,
        le=1.8,
    ),
    "kappa_sigma": Key(
        "float", 0.0, "beyond SPEC 2: relative spread of each sigmoid's kappa (0: off)", ge=0, le=1
    ),
}

MISMATCH = Table(
    {
        "sigma": Key(
            "float",
            param_default(sample_mismatch, "sigma"),
            "relative spread of currents and conductances",
            ge=0,
        ),
        "exponent_sigma": Key(
            "array", list(EXPONENT_SIGMA), "spread of the gate powers p, q, r", shape=(3,), ge=0
        ),
        **EXTRA_MISMATCH_KEYS,
        "seed": Key("int", Derived(root_seed, "the top-level seed"), "key of the draw", ge=0, le=2**32 - 1),
    },
    doc="transistor mismatch: ndjax.sample_mismatch(jax.random.key(seed), sigma, exponent_sigma, ...)",
    optional=True,
)

ND_MODEL = Table(
    {
        **_model_fields((0.7, 0.0, 0.0, 0.0)),
        "params": ND_PARAMS,
        "input": INPUT,
        "spikes": ND_SPIKES,
        "mismatch": MISMATCH,
    },
    doc="a NeuroDyn chip neuron (SPEC 2)",
    checks=(_check_model,),
)

MODEL = Union("type", {"hh": HH_MODEL, "neurodyn": ND_MODEL}, doc="one neuron")

MODEL = Union("type", {"hh": HH_MODEL, "neurodyn": ND_MODEL}, doc="one neuron")
