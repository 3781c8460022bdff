"""``kind = "fit"``: integer NeuroDyn words for an HH model (SPEC 3), evaluated on held-out currents.

The ``[optimizer]`` table and its ``[optimizer.calibrate]``, ``[optimizer.gradient]`` and
``[optimizer.polish]`` sub-tables are generated from :class:`ndjax.fit._settings.FitSettings`
(``ndjax defaults fit`` prints them); ``[target]`` and ``[chip]`` take their defaults from
``make_target``/``make_targets``. Writes ``words.json`` (the fitted integer words and their
settings, read back by :func:`ndjax._words_io.load_words`), ``metrics.json``, ``traces.npz``,
``traces.png``, ``fi_curve.png`` and ``loss.png``. The fit keeps each attempt's calibration and
each finished attempt in ``checkpoint/`` as they end (:mod:`ndjax.fit._checkpoint`): the same
config run again into the folder of an interrupted run resumes after them, and ends on the same
words. ``prepare`` solves the HH target at every training and evaluation current first: a
current where that solve fails is a :class:`ConfigError` on ``currents.fit[i]`` or
``currents.evaluate[i]`` (exit 2, no folder).

Every call into the fitter (``ndjax.fit``) is in this module.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ... import fit as fitting
from ..._checks import SolveFailedError
from ...fit._settings import FitSettings
from ...models._neurodyn import nd_biases
from .._common import COMMON, duplicates, param_default, same_current, say
from .._rundir import RunDir
from .._schema import ConfigError, Derived, Key, Scope, Table, _fmt, settings_table, settings_value

__all__ = [
    "SCHEMA",
    "RESUMABLE",
    "input_files",
    "prepare",
    "run",
    "fit_settings",
    "fit_targets",
    "resolve_fit_currents",
    "OPTIMIZER",
    "OPTIMIZER_MOVED",
    "MIN_HELD_OUT",
]

#: Running a config into a folder that holds an interrupted run of the same config resumes it
#: (the saved calibrations and attempts in ``checkpoint/`` are loaded, not recomputed).
RESUMABLE = True

#: The report currents of the issue (uA/cm^2); with the guide's model, 2.5, 8, 12.5 and 17.5 are
#: held out (``currents.fit = "auto"`` and why, in experiments/FIT_RESULTS.md).
EVALUATE_CURRENTS_DEFAULT = (0.0, 2.5, 5.0, 8.0, 10.0, 12.5, 17.5, 20.0)
#: Fewest report currents the fit never saw.
MIN_HELD_OUT = 3


def _check_target(values: dict, scope: Scope) -> Iterable[tuple[str, str]]:
    ena, ek = values["ena"], values["ek"]
    if not ek < ena / 2:
        yield (
            "ek",
            (f"expected ek < ena/2 = {ena / 2:g} mV (FitND fits the gates over ek..ena/2), got {ek!r}"),
        )


def _check_currents(values: dict, scope: Scope) -> Iterable[tuple[str, str]]:
    fit, evaluate = values["fit"], values["evaluate"]
    if fit == "auto":  # chosen from the target at run time; the runner checks the held-out count then
        yield from duplicates("evaluate", evaluate)
        if not any(x > 0 for x in evaluate):
            yield (
                "evaluate",
                "expected a positive current when currents.fit = 'auto' (the largest one is the top"
                f" of the automatic training currents), got {evaluate!r}",
            )
        return
    yield from duplicates("fit", fit)
    yield from duplicates("evaluate", evaluate)
    held_out = [x for x in evaluate if not any(same_current(x, f) for f in fit)]
    if len(held_out) < MIN_HELD_OUT:
        shown = ", ".join(_fmt(x) for x in held_out) or "none"
        yield (
            "evaluate",
            (
                f"expected at least {MIN_HELD_OUT} currents not in currents.fit (held out), "
                f"got {len(held_out)} ({shown})"
            ),
        )


def _trace_currents(scope: Scope) -> list[float]:
    """Four report currents spread over the sorted ``currents.evaluate`` (all, if fewer)."""
    evaluate = sorted(scope.parents[0]["currents"]["evaluate"])
    n = len(evaluate)
    if n <= 4:
        return evaluate
    picks = sorted({round(i * (n - 1) / 3) for i in range(4)})
    return [evaluate[i] for i in picks]


def _check_report(values: dict, scope: Scope) -> Iterable[tuple[str, str]]:
    evaluate = scope.parents[0].get("currents", {}).get("evaluate")
    if evaluate is None:  # invalid, already reported
        return
    traces = values["trace_currents"]
    for i, x in enumerate(traces):
        if not any(same_current(x, e) for e in evaluate):
            yield f"trace_currents[{i}]", f"expected one of currents.evaluate, got {x!r}"
    yield from duplicates("trace_currents", traces)
    if values["fi_step"] > 0:
        if values["fi_refine"] > values["fi_step"]:
            yield (
                "fi_refine",
                f"expected at most fi_step = {values['fi_step']:g}, got {values['fi_refine']!r}",
            )
        top = max(evaluate, default=0.0)
        if not values["fi_step"] <= top:
            yield (
                "fi_step",
                f"expected at most the largest evaluation current ({top:g}), or 0 for no dense curve",
            )


def _target(name: str) -> Any:
    """A ``[target]`` or ``[chip]`` default: ``make_target``'s."""
    return param_default(fitting.make_target, name)


TARGET = Table(
    {
        "gna": Key(
            "float",
            _target("gna"),
            "sodium conductance, mS/cm^2 (classic units, before scaling)",
            ge=0,
            le=1000,
        ),
        "gk": Key("float", _target("gk"), "potassium conductance, mS/cm^2", ge=0, le=1000),
        "gl": Key("float", _target("gl"), "leak conductance, mS/cm^2", ge=0, le=100),
        "ena": Key("float", _target("ena"), "sodium reversal, mV (rest at 0 mV)", ge=-200, le=200),
        "ek": Key("float", _target("ek"), "potassium reversal, mV; < ena/2", ge=-200, le=200),
        "el": Key("float", _target("el"), "leak reversal, mV", ge=-200, le=200),
        "scl_v": Key("float", _target("scl_v"), "voltage scale of the target (SPEC 1, 3)", gt=0, le=10),
    },
    doc="the HH model to fit, classic units before scaling (make_target)",
    checks=(_check_target,),
)

CHIP = Table(
    {
        "i_voltage": Key(
            "float",
            param_default(fitting.make_targets, "i_voltage"),
            "bias I_voltage, A (LSB of the reversal words); 'auto': 200 nA x scl_v/3, within 50-400 nA;"
            " 'search': that and 3/4 of it, screened by the calibration",
            ge=50e-9,
            le=400e-9,
            literals=("auto", "search"),
        ),
        "i_master": Key(
            "float",
            _target("i_master"),
            "bias I_master, A (LSB of the conductance and rate words)",
            ge=50e-9,
            le=400e-9,
        ),
        "v_ref": Key(
            "float",
            _target("v_ref"),
            "reference voltage, V (where the chip puts the target's V_mean)",
            ge=0,
            le=1.8,
        ),
        "i_ref": Key(
            "float",
            param_default(nd_biases, "i_ref"),
            "bias I_ref, A (recorded in words.json; no effect on the equations)",
            gt=0,
        ),
        "capacitance_scaling": Key(
            "float",
            _target("capacitance_scaling"),
            "factor on the 4 pF membrane capacitance (smaller: a faster chip)",
            gt=0,
        ),
        "speedup": Key(
            "float",
            param_default(fitting.make_targets, "speedup"),
            "chip speed over FitND's time scale (rate and g words grow by it); 'conductance': the"
            " largest conductance word at 1023; 'auto': that and FitND's own, the better kept",
            gt=0,
            literals=("auto", "conductance"),
        ),
    },
    doc="the chip's biases and time scale",
)

CURRENTS = Table(
    {
        "fit": Key(
            "array",
            param_default(fitting.fit_words, "currents_ua"),
            "HH currents the fit trains on, uA/cm^2; 'auto': chosen from the target's HH F-I curve"
            " up to the largest evaluate current (ndjax.fit.auto_currents)",
            shape=(None,),
            ge=-100.0,
            le=200.0,
            literals=("auto",),
        ),
        "evaluate": Key(
            "array",
            list(EVALUATE_CURRENTS_DEFAULT),
            f"HH currents of the report, uA/cm^2; at least {MIN_HELD_OUT} not in fit",
            shape=(None,),
            ge=-100.0,
            le=200.0,
        ),
    },
    doc="applied currents (constant, from rest), uA/cm^2 of the HH target",
    checks=(_check_currents,),
)


#: Keys of the flat ``[optimizer]`` table before it had a sub-table per stage -> where they are now.
OPTIMIZER_MOVED = {
    **{f"es_{k}": f"optimizer.calibrate.{k}" for k in ("generations", "population", "sigma", "restarts",
                                                       "screen", "extend", "extend_above", "extend_max")},
    "grad_steps": "optimizer.gradient.steps",
    "learning_rate": "optimizer.gradient.learning_rate",
    "grad_min_word": "optimizer.gradient.min_word",
    **{f"polish_{k}": f"optimizer.polish.{k}" for k in ("sweeps", "combine", "starts")},
}  # fmt: skip

#: ``[optimizer]``: :class:`FitSettings`, one key per field, a sub-table per stage.
OPTIMIZER = settings_table(FitSettings, moved=OPTIMIZER_MOVED)


def fit_settings(optimizer: dict) -> FitSettings:
    """The :class:`FitSettings` of a validated ``[optimizer]`` table."""
    return settings_value(FitSettings, optimizer)


REPORT = Table(
    {
        "n_save": Key("int", 6000, "voltage samples per trace in the report", ge=10, le=10_000_000),
        "trace_currents": Key(
            "array",
            Derived(_trace_currents, "4 currents spread over currents.evaluate"),
            "currents drawn in traces.png (each one of currents.evaluate), uA/cm^2",
            shape=(None,),
            ge=-100.0,
            le=200.0,
        ),
        "fi_step": Key(
            "float",
            0.25,
            "grid of the dense F-I curves (HH, NNLS-rounded and fitted chip) in fi_curve.png and"
            " metrics.json, uA/cm^2, from 0 to the largest evaluation current (0: only the evaluation"
            " currents)",
            ge=0,
            le=100,
        ),
        "fi_refine": Key(
            "float",
            0.05,
            "each onset of repetitive firing is located to this, uA/cm^2 (<= fi_step)",
            gt=0,
            le=100,
        ),
        "dpi": Key("int", 120, "resolution of the PNG files", ge=30, le=1200),
    },
    doc="evaluation and figures",
    checks=(_check_report,),
)

SCHEMA = Table(
    {
        **COMMON,
        "span_ms": Key(
            "float",
            param_default(fitting.fit_words, "t_hh_ms"),
            "simulated span of each current, ms of HH time (fit and report)",
            gt=0,
            le=1000,
        ),
        "target": TARGET,
        "chip": CHIP,
        "currents": CURRENTS,
        "optimizer": OPTIMIZER,
        "report": REPORT,
    },
    doc="fit integer NeuroDyn words to an HH model, evaluate them on held-out currents",
)

# history key of fit_words -> (its key in FitOutcome.seconds, y label of loss.png)
_FIT_STAGES: dict[str, tuple[str | None, str]] = {
    "es": ("calibrate", "score (best so far)"),
    "grad": ("gradient", "spike-time loss"),
    "polish": ("polish", "score"),
    "grad_score": (None, "score of the rounded words"),
}


def fit_targets(target: dict, chip: dict) -> list:
    """The time-scale candidates (``make_targets``) of a validated ``[target]`` and ``[chip]``."""
    return fitting.make_targets(
        speedup=chip["speedup"],
        **target,
        capacitance_scaling=chip["capacitance_scaling"],
        i_voltage=chip["i_voltage"],
        i_master=chip["i_master"],
        v_ref=chip["v_ref"],
    )


def input_files(cfg: dict, source: Path | None = None) -> dict[str, Path]:
    """The files a run reads, by the config key that names them: none (the config is all)."""
    return {}


def prepare(cfg: dict, source: Path | None = None) -> Callable[[RunDir], bool]:
    """Build the HH -> chip mappings and the training currents (core errors surface here, before
    any fit); warnings of the classical fit become notes printed by the run."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pairs = fit_targets(cfg["target"], cfg["chip"])
    except (ValueError, TypeError, ZeroDivisionError) as err:
        raise ConfigError([("target", f"the classical fit (make_target) failed: {err}")]) from err
    with warnings.catch_warnings(record=True) as caught_currents:
        warnings.simplefilter("always")
        try:
            fit_currents = resolve_fit_currents(cfg, pairs[0][0])
        except SolveFailedError as err:  # the F-I curve that picks them
            raise ConfigError([("currents.fit", f"'auto' needs the HH F-I curve up to the largest "
                                f"currents.evaluate: {err}")]) from err  # fmt: skip
    _check_memory(cfg, len(fit_currents))
    _check_hh_solves(cfg, pairs[0][0], fit_currents)
    notes = [str(w.message) for w in [*caught, *caught_currents]]
    return functools.partial(run, cfg, pairs, notes, fit_currents)


def _check_memory(cfg: dict, n_fit: int) -> None:
    """The largest batches of the run fit in memory (:mod:`ndjax._memory`): the calibration scores
    ``population x restarts`` chips at every training current at once, the report solves every
    evaluation current at once; a :class:`ConfigError` naming the keys to lower otherwise."""
    from ..._memory import memory_problem

    opt, cal = cfg["optimizer"], cfg["optimizer"]["calibrate"]
    jobs = cal["population"] * cal["restarts"] * n_fit
    problems = [
        ("optimizer", memory_problem(
            jobs, opt["n_save"], f"{jobs:,} chip solves per calibration step ({cal['population']} x "
            f"{cal['restarts']} chips at {n_fit} currents)",
            "optimizer.calibrate.population, optimizer.calibrate.restarts or optimizer.n_save")),
        ("report.n_save", memory_problem(
            2 * len(cfg["currents"]["evaluate"]), cfg["report"]["n_save"],
            "the report's HH and chip solves at every evaluation current", "report.n_save")),
    ]  # fmt: skip
    errors = [(key, message) for key, message in problems if message]
    if errors:
        raise ConfigError(errors)


def _check_hh_solves(cfg: dict, target: Any, fit_currents: list[float]) -> None:
    """The HH target solves at every training and evaluation current (a fit on a failed reference
    would train on NaN scores); a :class:`ConfigError` on ``currents.fit[i]`` or
    ``currents.evaluate[i]`` otherwise. The save times do not change an adaptive solve, so two
    suffice."""
    from ...fit._simulate_pair import hh_spikes_from_rest

    evaluate = list(cfg["currents"]["evaluate"])
    try:
        hh_spikes_from_rest(target, [*fit_currents, *evaluate], cfg["span_ms"], 2)
    except SolveFailedError as err:
        n = len(fit_currents)
        if err.index >= n:
            key = f"currents.evaluate[{err.index - n}]"
        else:
            key = "currents.fit" if cfg["currents"]["fit"] == "auto" else f"currents.fit[{err.index}]"
        raise ConfigError([(key, str(err))]) from err


def resolve_fit_currents(cfg: dict, target: Any) -> list[float]:
    """``currents.fit``, with ``"auto"`` chosen from the target's HH F-I curve up to the largest
    ``currents.evaluate`` (``auto_currents``); at least :data:`MIN_HELD_OUT` evaluation currents
    must stay unseen (a :class:`ConfigError` otherwise)."""
    fit, evaluate = cfg["currents"]["fit"], cfg["currents"]["evaluate"]
    if fit != "auto":
        return list(fit)
    chosen = list(fitting.auto_currents(target, top=max(evaluate), t_hh_ms=cfg["span_ms"]))
    held = [x for x in evaluate if not any(math.isclose(x, f, abs_tol=1e-9) for f in chosen)]
    if len(held) < MIN_HELD_OUT:
        raise ConfigError(
            [
                (
                    "currents.evaluate",
                    f"expected at least {MIN_HELD_OUT} currents not among the automatic training currents"
                    f" {', '.join(f'{c:g}' for c in chosen)}, got {len(held)}",
                )
            ]
        )
    return chosen


def _word_set_metrics(m: Any) -> dict:
    return {
        "chip_count": int(m.chip_count),
        "chip_rate_hz": float(m.chip_rate),
        "rate_error": float(m.rate_error),
        "timing_error": float(m.timing_error),
        "passed": bool(m.passed),
    }


def _fit_metrics(
    cfg: dict, currents: list[float], held: list[bool], nnls: list, fitted: list, ok_fit: list, seconds: dict
) -> dict:
    rows = []
    for i0, is_held, mn, mf, ok in zip(currents, held, nnls, fitted, ok_fit, strict=True):
        rows.append(
            {
                "current_ua_cm2": float(i0),
                "used_by_fit": not is_held,
                "hh_count": int(mf.hh_count),
                "hh_rate_hz": float(mf.hh_rate),
                "nnls": _word_set_metrics(mn),
                "fitted": {**_word_set_metrics(mf), "solve_ok": bool(ok)},
            }
        )

    def passed(which: str, only_held: bool = False) -> int:
        return sum(r[which]["passed"] for r in rows if not (only_held and r["used_by_fit"]))

    return {
        "kind": cfg["kind"],
        "name": cfg["name"],
        "criteria": {
            "count": "|chip - HH| <= 1 spike",
            "rate_error": "relative rate error <= 0.03 (null: infinite, only one side fires repetitively)",
            "timing_error": "RMS spike-time error <= 0.05 of the HH ISI (null: infinite, no spikes to match)",
        },
        "span_ms": cfg["span_ms"],
        "currents": rows,
        "summary": {
            "n_currents": len(rows),
            "n_held_out": sum(held),
            "passed": {"nnls": passed("nnls"), "fitted": passed("fitted")},
            "passed_held_out": {"nnls": passed("nnls", True), "fitted": passed("fitted", True)},
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
        },
    }


def _announce(cfg: dict, pairs: list, notes: list[str], fit_currents: list[float]) -> None:
    for note in notes:
        print(f"  note: {note}", flush=True)
    target = pairs[0][0]
    if cfg["currents"]["fit"] == "auto":
        print(f"  fit currents (auto, from the HH F-I curve): {', '.join(f'{c:g}' for c in fit_currents)}")
    if len(pairs) > 1:
        tried = ", ".join(f"scl_t {t.scl_t:.4g} at I_voltage {1e9 * t.i_voltage:.4g} nA" for t, _ in pairs)
        print(f"  candidates screened by the calibration: {tried}")
    print(
        f"  target: scl_v {target.scl_v:g}, chip {target.scl_t:.4g} x faster than SI HH, "
        f"V_mean {target.v_mean:.4g} V -> V_ref {target.v_ref:g} V; {len(fit_currents)} fit currents, "
        f"{cfg['span_ms']:g} ms",
        flush=True,
    )


def _save_words(cfg: dict, outcome: Any, run_dir: RunDir) -> None:
    from ..._words_io import save_words

    target = outcome.target  # the time scale the calibration kept
    dg, de, dib = outcome.words
    save_words(
        run_dir.file("words.json"),
        dg=dg,
        dErev=de,
        dIb=dib,
        v_ref=target.v_ref,
        i_voltage=target.i_voltage,
        i_master=target.i_master,
        i_ref=cfg["chip"]["i_ref"],
        capacitance_scaling=target.capacitance_scaling,
        scl_t=target.scl_t,
        scl_v=target.scl_v,
        v_mean=target.v_mean,
        hh=target.hh,
    )


def _evaluate(cfg: dict, outcome: Any, seconds: dict) -> tuple:
    """Both word sets at the evaluation currents (metrics and traces) and, with ``report.fi_step``,
    their dense F-I curves."""
    span, rep, evaluate, target = cfg["span_ms"], cfg["report"], cfg["currents"]["evaluate"], outcome.target
    print(f"  evaluating at {len(evaluate)} currents ({rep['n_save']} samples per trace)", flush=True)
    t0 = time.perf_counter()
    m_nnls, (_, _, v_nnls) = fitting.evaluate_words(
        target, outcome.nnls_words, evaluate, t_hh_ms=span, n_save=rep["n_save"], return_traces=True
    )
    m_fit, (ts_ms, v_hh, v_fit) = fitting.evaluate_words(
        target, outcome.words, evaluate, t_hh_ms=span, n_save=rep["n_save"], return_traces=True
    )
    seconds["evaluate"] = time.perf_counter() - t0
    fi = {}
    if rep["fi_step"] > 0:
        print(
            f"  F-I curves from 0 to {max(evaluate):g} every {rep['fi_step']:g} uA/cm^2, onsets to "
            f"{rep['fi_refine']:g}",
            flush=True,
        )
        t0 = time.perf_counter()
        grid = dict(top=max(evaluate), step=rep["fi_step"], refine=rep["fi_refine"], t_hh_ms=span)
        fi = fitting.fi_curves(
            target, {"nnls": outcome.nnls_words, "fitted": outcome.words}, **grid, n_save=rep["n_save"]
        )
        seconds["fi_curve"] = time.perf_counter() - t0
        on = {"HH": fi["fitted"].hh_onset, "NNLS-rounded chip": fi["nnls"].chip_onset,
              "fitted chip": fi["fitted"].chip_onset}  # fmt: skip
        print(
            "  onset of repetitive firing from rest: "
            + ", ".join(f"{k} {v:g}" if math.isfinite(v) else f"{k} none" for k, v in on.items())
            + " uA/cm^2",
            flush=True,
        )
    return m_nnls, m_fit, (ts_ms, v_hh, v_nnls, v_fit), fi


def _fi_metrics(fi: dict, resolution: float) -> dict:
    finite = lambda x: float(x) if math.isfinite(x) else None  # noqa: E731  (strict JSON)
    return {
        "currents_ua_cm2": fi["fitted"].currents.tolist(),
        "hh_rate_hz": fi["fitted"].hh_rate.tolist(),
        "nnls_rate_hz": fi["nnls"].chip_rate.tolist(),
        "fitted_rate_hz": fi["fitted"].chip_rate.tolist(),
        "onset_ua_cm2": {
            "hh": finite(fi["fitted"].hh_onset),
            "nnls": finite(fi["nnls"].chip_onset),
            "fitted": finite(fi["fitted"].chip_onset),
        },
        "onset_resolution_ua_cm2": resolution,
    }


def _figures(cfg: dict, outcome: Any, evals: tuple, held: list[bool], seconds: dict, run_dir: RunDir) -> None:
    """traces.png (HH against the fitted chip), fi_curve.png and loss.png."""
    from ... import plot

    m_nnls, m_fit, (ts_ms, v_hh, _, v_fit), fi = evals
    rep, evaluate, name = cfg["report"], cfg["currents"]["evaluate"], cfg["name"]
    dpi = rep["dpi"]
    held_out = [x for x, h in zip(evaluate, held, strict=True) if h]
    pick = [
        next(i for i, e in enumerate(evaluate) if math.isclose(x, e, abs_tol=1e-9))
        for x in rep["trace_currents"]
    ]
    fig = plot.plot_fit_traces(
        ts_ms,
        [evaluate[i] for i in pick],
        v_hh[pick],
        v_fit[pick],
        held_out=held_out,
        counts=[(m_fit[i].hh_count, m_fit[i].chip_count) for i in pick],
        threshold=outcome.target.threshold,
        chip_label="fitted chip",
        title=f"{name}: HH vs fitted chip",
    )
    run_dir.save_figure("traces.png", fig, dpi=dpi)
    names = ("HH", "chip, NNLS words rounded", "chip, fitted words")
    if fi:  # dense curves, markers at the evaluation currents, the onsets as vertical lines
        f_fit, f_nnls = fi["fitted"], fi["nnls"]
        rates = dict(zip(names, (f_fit.hh_rate, f_nnls.chip_rate, f_fit.chip_rate), strict=True))
        onsets = dict(zip(names, (f_fit.hh_onset, f_nnls.chip_onset, f_fit.chip_onset), strict=True))
        fig = plot.plot_fi_curves(f_fit.currents, rates, held_out=held_out, marks=evaluate, onsets=onsets,
                                  title=f"{name}: F-I curves")  # fmt: skip
    else:
        rates = dict(zip(names, ([m.hh_rate for m in m_fit], [m.chip_rate for m in m_nnls],
                                 [m.chip_rate for m in m_fit]), strict=True))  # fmt: skip
        fig = plot.plot_fi_curves(evaluate, rates, held_out=held_out, title=f"{name}: F-I curves")
    run_dir.save_figure("fi_curve.png", fig, dpi=dpi)
    # objective traces only ("candidates" holds (scl_t, I_voltage, score) of each calibrated
    # candidate, "polish_starts" each start's polish score per sweep and "attempts" the [seed, final
    # score] of each attempt; all are in metrics.json)
    skip = ("candidates", "polish_starts", "attempts")
    stages = {k: list(v) for k, v in outcome.history.items() if k not in skip}
    stage_seconds, ylabels = {}, {}
    for k in stages:
        stage, ylabel = _FIT_STAGES.get(k, (k, "objective"))
        ylabels[k] = ylabel
        if stage in seconds:
            stage_seconds[k] = seconds[stage]
    fig = plot.plot_loss_history(stages, seconds=stage_seconds, ylabels=ylabels,
                                 title=f"{name}: objective per stage")  # fmt: skip
    run_dir.save_figure("loss.png", fig, dpi=dpi)


def run(cfg: dict, pairs: list, notes: list[str], fit_currents: list[float], run_dir: RunDir) -> bool:
    """Fit the words, write words.json, evaluate both word sets, write metrics and figures; ok when
    every HH and fitted-chip solve of the evaluation is finite."""
    import numpy as np

    _announce(cfg, pairs, notes, fit_currents)
    target, words0 = pairs[0]
    start = time.perf_counter()
    outcome = fitting.fit_words(
        target,
        words0,
        fit_currents,
        t_hh_ms=cfg["span_ms"],
        settings=fit_settings(cfg["optimizer"]),
        seed=cfg["seed"],
        progress=say,
        alternatives=pairs[1:],
        checkpoint=run_dir.path / "checkpoint",
        on_save=run_dir.record,
    )
    seconds = {k: float(v) for k, v in outcome.seconds.items()}
    seconds["fit_total"] = time.perf_counter() - start
    _save_words(cfg, outcome, run_dir)
    evals = _evaluate(cfg, outcome, seconds)
    m_nnls, m_fit, traces, fi = evals
    seconds["total"] = time.perf_counter() - start
    ts_ms, v_hh, v_nnls, v_fit = (np.asarray(x, dtype=float) for x in traces)
    evals = (m_nnls, m_fit, (ts_ms, v_hh, v_nnls, v_fit), fi)
    ok_fit = [bool(np.all(np.isfinite(v))) for v in v_fit]
    ok_hh = [bool(np.all(np.isfinite(v))) for v in v_hh]
    evaluate = cfg["currents"]["evaluate"]
    held = [not any(math.isclose(x, f, abs_tol=1e-9) for f in fit_currents) for x in evaluate]

    metrics = _fit_metrics(cfg, evaluate, held, m_nnls, m_fit, ok_fit, seconds)
    metrics["fit_currents"] = [float(c) for c in fit_currents]
    if fi:
        metrics["fi_curve"] = _fi_metrics(fi, cfg["report"]["fi_refine"])
    metrics["history"] = {k: np.asarray(v, dtype=float).tolist() for k, v in outcome.history.items()}
    run_dir.write_json("metrics.json", metrics)
    run_dir.write_npz("traces.npz", {"ts_ms": ts_ms, "currents": np.asarray(evaluate), "v_hh": v_hh,
                                     "v_chip_nnls": v_nnls, "v_chip_fitted": v_fit})  # fmt: skip
    _figures(cfg, outcome, evals, held, seconds, run_dir)
    _print_fit_table(metrics)
    ok = all(ok_fit) and all(ok_hh)
    if not ok:
        print("  a solve failed (non-finite voltage): see solve_ok in metrics.json", flush=True)
    return ok


def _print_fit_table(metrics: dict) -> None:
    def err(x: float) -> str:
        return "inf" if not math.isfinite(x) else f"{100 * x:.1f}%"

    print(
        f"  {'I (uA/cm^2)':>11}  {'':8}  {'HH':>3}  {'NNLS':>4}  {'fitted':>6}  {'rate err':>8}  "
        f"{'timing err':>10}  pass",
        flush=True,
    )
    for r in metrics["currents"]:
        f = r["fitted"]
        used = "fit" if r["used_by_fit"] else "held out"
        print(
            f"  {r['current_ua_cm2']:>11g}  {used:8}  {r['hh_count']:>3}  "
            f"{r['nnls']['chip_count']:>4}  {f['chip_count']:>6}  {err(f['rate_error']):>8}  "
            f"{err(f['timing_error']):>10}  {'yes' if f['passed'] else 'no'}",
            flush=True,
        )
    s = metrics["summary"]
    sec = ", ".join(f"{k} {v:.1f} s" for k, v in s["seconds"].items())
    print(
        f"  passed: fitted {s['passed']['fitted']}/{s['n_currents']} "
        f"({s['passed_held_out']['fitted']}/{s['n_held_out']} held out), NNLS-rounded "
        f"{s['passed']['nnls']}/{s['n_currents']}; {sec}",
        flush=True,
    )
