"""The ``ndjax`` console script: ``ndjax run CONFIG.toml [--out DIR] [--force]``.

An entry point, so it turns on JAX float64 (``jax_enable_x64``) before
anything else runs. The config is validated completely before any solve
(:mod:`ndjax._config`); its ``kind`` picks the experiment from
:data:`EXPERIMENTS`. Every run writes into its own folder (default
``runs/<config stem>-<timestamp>``):

- ``config.toml``: the config as run, every default filled in (re-reading it
  gives the same config); ``config.original.toml``: the file as given;
- ``versions.json``: Python, package versions, platform, devices, seed;
- what the experiment writes; for ``simulate``: ``results.json`` (per model:
  ok flag and failure reason, solver steps, spike count and times, firing
  rate), ``traces.npz`` (``model<i>_t``, ``model<i>_V``, ``_m``, ``_h``, ``_n``)
  and ``traces*.png``; for ``fit`` (:func:`prepare_fit`): ``words.json`` (the fitted
  integer words and their settings, read back by :func:`ndjax._words_io.load_words`),
  ``metrics.json``, ``traces.npz``, ``traces.png``, ``fi_curve.png`` and ``loss.png``.

Exit status: 0 success, 1 a simulation failed (its results are still
written), 2 a bad command line, config or output folder (nothing run).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import functools
import importlib.metadata
import inspect
import json
import math
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from .._checks import Status
from ._config import ConfigError, compensation_settings, dump_toml, fit_settings, load_config

__all__ = [
    "main",
    "EXPERIMENTS",
    "Experiment",
    "register_experiment",
    "RunDir",
    "build_model",
    "BuiltModel",
    "prepare_simulate",
    "prepare_fit",
    "prepare_mismatch",
]

_PACKAGES = ("jax", "jaxlib", "diffrax", "optax", "numpy", "matplotlib")


@dataclasses.dataclass
class RunDir:
    """The output folder of one run, handed to an experiment function.

    Experiments write through these helpers so the runner can list the files.
    """

    path: Path
    written: list[Path] = dataclasses.field(default_factory=list)

    def file(self, name: str) -> Path:
        """Path of ``name`` in the folder, recorded as written."""
        p = self.path / name
        if p not in self.written:
            self.written.append(p)
        return p

    def write_text(self, name: str, text: str) -> Path:
        p = self.file(name)
        p.write_text(text, encoding="utf-8")
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        """JSON with NaN/inf written as ``null`` (strict JSON)."""
        return self.write_text(name, json.dumps(_json_safe(obj), indent=2, allow_nan=False) + "\n")

    def write_npz(self, name: str, arrays: dict[str, Any]) -> Path:
        import numpy as np

        p = self.file(name)
        np.savez_compressed(p, **{k: np.asarray(v) for k, v in arrays.items()})
        return p

    def save_figure(self, name: str, fig: Any, dpi: int = 120) -> Path:
        from .. import plot

        p = self.file(name)
        fig.savefig(p, dpi=dpi)
        plot.close(fig)
        return p


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if type(obj).__module__ == "numpy":  # arrays and NumPy scalars
        return _json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


#: An experiment in two phases: ``prepare(config)`` builds everything and checks it against the
#: core (raising :class:`ConfigError` before any folder is made or any solve runs) and returns
#: ``execute(run_dir) -> ok``, which runs and writes its results through ``run_dir``.
Experiment = Callable[[dict], Callable[[RunDir], bool]]

#: ``kind`` -> experiment function. A new kind registers its schema with
#: ``ndjax._config.register_kind`` and its function with :func:`register_experiment`.
EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(kind: str, fn: Experiment) -> None:
    """Add (or replace) the experiment that runs configs of ``kind`` (see :data:`Experiment`)."""
    EXPERIMENTS[kind] = fn


# ---------------------------------------------------------------------------------------------------
# kind = "simulate"


def _solvers() -> dict[str, Any]:
    import diffrax as dfx

    return {"tsit5": dfx.Tsit5, "dopri5": dfx.Dopri5, "dopri8": dfx.Dopri8, "bosh3": dfx.Bosh3}


@dataclasses.dataclass(frozen=True)
class BuiltModel:
    """One ``[[models]]`` table turned into the arguments of ``ndjax.simulate``."""

    model: Any  # ndjax.HH | ndjax.NEURODYN
    params: Any
    stim: Any
    y0: Any
    time_unit: str
    voltage_unit: str
    current_unit: str


def _stimulus(inp: dict):
    from .._stimulus import constant, pulses, step

    if inp["type"] == "constant":
        return constant(inp["amplitude"])
    if inp["type"] == "step":
        return step(inp["amplitude"], inp["t_on"], inp["t_off"], inp["baseline"])
    if inp["type"] == "pulses":
        return pulses(
            inp["amplitude"], inp["t_start"], inp["width"], inp["period"], inp["n_pulses"], inp["baseline"]
        )
    raise ValueError(f"unknown input type {inp['type']!r}")


def build_model(m: dict) -> BuiltModel:
    """Model, parameters, stimulus and initial state of a validated model table.

    Raises:
        ValueError: the core rejected a value the schema let through.
    """
    import jax.numpy as jnp

    from .. import plot
    from .._simulate import HH, NEURODYN
    from ..models._hh import hh_params
    from ..models._neurodyn import chip_params, nd_chip, sample_mismatch

    p = m["params"]
    stim = _stimulus(m["input"])
    y0 = jnp.asarray(m["x0"], dtype=float)
    if m["type"] == "hh":
        params = hh_params(**p)
        t_unit, v_unit = plot.units("hh", p["si_units"])
        return BuiltModel(HH, params, stim, y0, t_unit, v_unit, "A/cm^2" if p["si_units"] else "uA/cm^2")
    mm = m.get("mismatch")
    mismatch = None
    if mm is not None:
        mismatch = sample_mismatch(
            jax.random.key(mm["seed"]),
            mm["sigma"],
            mm["exponent_sigma"],
            centre_sigma=mm["centre_sigma"],
            kappa_sigma=mm["kappa_sigma"],
        )
    chip = nd_chip(
        p["dg"],
        p["dErev"],
        p["dIb"],
        v_ref=p["v_ref"],
        i_voltage=p["i_voltage"],
        i_master=p["i_master"],
        i_ref=p["i_ref"],
        capacitance_scaling=p["capacitance_scaling"],
        digital=p["digital"],
        mismatch=mismatch,
    )
    return BuiltModel(NEURODYN, chip_params(chip), stim, y0, "s", "V", "A")


def _failure_reason(trace, max_steps: int) -> str | None:
    """None for a good solve, else the :class:`ndjax.Status` message (naming the config key)."""
    import numpy as np

    from .._checks import Status, status_code

    status = Status(int(status_code(np.asarray(trace.ok), np.asarray(trace.max_steps_reached))))
    if status is Status.OK:
        return None
    return status.message(max_steps).replace("Raise max_steps", "Raise solver.max_steps")


def prepare_simulate(cfg: dict) -> Callable[[RunDir], bool]:
    """``kind = "simulate"``: build every model (core errors surface here, before any solve)."""
    built = []
    for i, m in enumerate(cfg["models"]):
        try:
            built.append(build_model(m))
        except (ValueError, TypeError) as err:
            raise ConfigError([(f"models[{i}]", str(err))]) from err
    return functools.partial(_run_simulate, cfg, built)


def _run_simulate(cfg: dict, built: list[BuiltModel], run: RunDir) -> bool:
    """Solve each model, detect spikes, save results, traces and figures."""
    import numpy as np

    from .. import plot
    from .._analysis import spike_times
    from .._simulate import simulate

    s = cfg["solver"]
    solver = _solvers()[s["name"]]()
    dt0 = None if s["dt0"] == "auto" else s["dt0"]
    results, arrays, panels = [], {}, []
    for i, (m, b) in enumerate(zip(cfg["models"], built, strict=True)):
        print(f"  [{i}] {m['label']}: {m['type']}, {m['t0']:g}..{m['t1']:g} {b.time_unit}", flush=True)
        ts = np.linspace(m["t0"], m["t1"], s["n_save"])
        start = time.perf_counter()
        trace = simulate(
            b.model,
            b.params,
            b.stim,
            b.y0,
            ts,
            solver=solver,
            rtol=s["rtol"],
            atol=s["atol"],
            dt0=dt0,
            max_steps=s["max_steps"],
        )
        ys = np.asarray(trace.ys)
        wall = time.perf_counter() - start
        ts_np = ts  # the save grid (a failed solve leaves inf in trace.ts after the failure)
        reason = _failure_reason(trace, s["max_steps"])
        finite = np.all(np.isfinite(ys), axis=1)
        n_good = len(finite) if finite.all() else int(np.argmin(finite))  # the finite prefix
        thr, hyst = m["spikes"]["threshold"], m["spikes"]["hysteresis"]
        spikes = spike_times(ts_np[:n_good], ys[:n_good, 0], thr, hyst) if n_good >= 2 else np.zeros(0)
        to_seconds = 1e-3 if b.time_unit == "ms" else 1.0
        duration = (m["t1"] - m["t0"]) * to_seconds
        v_good = ys[:n_good, 0]
        results.append(
            {
                "index": i,
                "label": m["label"],
                "type": m["type"],
                "ok": reason is None,
                "failure": reason,
                "n_steps": int(np.asarray(trace.n_steps)),
                "t0": m["t0"],
                "t1": m["t1"],
                "t_reached": float(ts_np[n_good - 1]) if n_good else m["t0"],
                "units": {"time": b.time_unit, "voltage": b.voltage_unit, "current": b.current_unit},
                "threshold": thr,
                "hysteresis": hyst,
                "spike_count": int(spikes.size),
                "spike_times": [float(x) for x in spikes],
                "firing_rate_hz": spikes.size / duration,
                "v_min": float(v_good.min()) if n_good else None,
                "v_max": float(v_good.max()) if n_good else None,
                "wall_s": round(wall, 3),
                "traces": f"model{i}_",
            }
        )
        arrays[f"model{i}_t"] = ts_np
        for j, name in enumerate(("V", "m", "h", "n")):
            arrays[f"model{i}_{name}"] = ys[:, j]
        panels.append(
            plot.TracePanel(
                ts_np,
                ys[:, 0],
                label=f"{m['label']} ({m['type']})" + ("" if reason is None else " - FAILED"),
                time_unit=b.time_unit,
                voltage_unit=b.voltage_unit,
                threshold=thr if cfg["plot"]["show_spikes"] else None,
                spike_times=spikes if cfg["plot"]["show_spikes"] else None,
            )
        )
        status = "ok" if reason is None else f"FAILED: {reason}"
        print(
            f"      {spikes.size} spikes, {results[-1]['n_steps']} steps, {wall:.2f} s, {status}", flush=True
        )

    ok = all(r["ok"] for r in results)
    run.write_json("results.json", {"kind": cfg["kind"], "name": cfg["name"], "ok": ok, "models": results})
    run.write_npz("traces.npz", arrays)
    dpi = cfg["plot"]["dpi"]
    if cfg["plot"]["layout"] == "stacked":
        run.save_figure("traces.png", plot.plot_traces(panels, title=cfg["name"]), dpi=dpi)
    else:
        for i, panel in enumerate(panels):
            run.save_figure(f"traces_model{i}.png", plot.plot_traces(panel, title=cfg["name"]), dpi=dpi)
    return ok


register_experiment("simulate", prepare_simulate)


# ---------------------------------------------------------------------------------------------------
# kind = "fit"

# history key of ndjax._e2e.fit_words -> (its key in FitOutcome.seconds, y label of loss.png)
_FIT_STAGES: dict[str, tuple[str | None, str]] = {
    "es": ("calibrate", "score (best so far)"),
    "grad": ("gradient", "spike-time loss"),
    "polish": ("polish", "score"),
    "grad_score": (None, "score of the rounded words"),
}


def _say(message: str) -> None:
    print(f"  {message}", flush=True)


def fit_targets(target: dict, chip: dict) -> list:
    """The time-scale candidates (``ndjax.make_targets``) of a validated ``[target]`` and ``[chip]``."""
    from ..fit import _e2e

    return _e2e.make_targets(
        speedup=chip["speedup"],
        **target,
        capacitance_scaling=chip["capacitance_scaling"],
        i_voltage=chip["i_voltage"],
        i_master=chip["i_master"],
        v_ref=chip["v_ref"],
    )


def prepare_fit(cfg: dict) -> Callable[[RunDir], bool]:
    """``kind = "fit"``: build the HH -> chip mapping (FitND; core errors surface here, before any solve)."""
    import warnings

    ch = cfg["chip"]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pairs = fit_targets(cfg["target"], ch)
    except (ValueError, TypeError, ZeroDivisionError) as err:
        raise ConfigError([("target", f"the classical fit (make_target) failed: {err}")]) from err
    with warnings.catch_warnings(record=True) as caught_currents:
        warnings.simplefilter("always")
        fit_currents = resolve_fit_currents(cfg, pairs[0][0])
    caught = [*caught, *caught_currents]
    notes = [str(w.message) for w in caught]
    return functools.partial(_run_fit, cfg, pairs, notes, fit_currents)


def resolve_fit_currents(cfg: dict, target: Any) -> list[float]:
    """``currents.fit``, with ``"auto"`` chosen from the target's HH F-I curve up to the largest
    ``currents.evaluate`` (``ndjax._e2e.auto_currents``); at least ``MIN_HELD_OUT`` evaluation
    currents must stay unseen (a :class:`ConfigError` otherwise)."""
    from ..fit import _e2e
    from ._config import MIN_HELD_OUT

    fit, evaluate = cfg["currents"]["fit"], cfg["currents"]["evaluate"]
    if fit != "auto":
        return list(fit)
    chosen = list(_e2e.auto_currents(target, top=max(evaluate), t_hh_ms=cfg["span_ms"]))
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


def _run_fit(cfg: dict, pairs: list, notes: list[str], fit_currents: list[float], run: RunDir) -> bool:
    """Fit the words, write words.json, evaluate both word sets, write metrics and figures."""
    import numpy as np

    from .. import plot
    from .._words_io import save_words
    from ..fit import _e2e

    for note in notes:
        print(f"  note: {note}", flush=True)
    span, opt, rep = cfg["span_ms"], cfg["optimizer"], cfg["report"]
    evaluate = cfg["currents"]["evaluate"]
    target, words0 = pairs[0]
    if cfg["currents"]["fit"] == "auto":
        print(f"  fit currents (auto, from the HH F-I curve): {', '.join(f'{c:g}' for c in fit_currents)}")
    if len(pairs) > 1:
        tried = ", ".join(f"scl_t {t.scl_t:.4g} at I_voltage {1e9 * t.i_voltage:.4g} nA" for t, _ in pairs)
        print(f"  candidates screened by the calibration: {tried}")
    print(
        f"  target: scl_v {target.scl_v:g}, chip {target.scl_t:.4g} x faster than SI HH, "
        f"V_mean {target.v_mean:.4g} V -> V_ref {target.v_ref:g} V; {len(fit_currents)} fit currents, "
        f"{span:g} ms",
        flush=True,
    )
    start = time.perf_counter()
    outcome = _e2e.fit_words(
        target,
        words0,
        fit_currents,
        t_hh_ms=span,
        settings=fit_settings(opt),
        seed=cfg["seed"],
        progress=_say,
        alternatives=pairs[1:],
    )
    target = outcome.target  # the time scale the calibration kept
    seconds = {k: float(v) for k, v in outcome.seconds.items()}
    seconds["fit_total"] = time.perf_counter() - start

    dg, de, dib = outcome.words
    save_words(
        run.file("words.json"),
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

    print(f"  evaluating at {len(evaluate)} currents ({rep['n_save']} samples per trace)", flush=True)
    t0 = time.perf_counter()
    m_nnls, (_, _, v_nnls) = _e2e.evaluate_words(
        target, outcome.nnls_words, evaluate, t_hh_ms=span, n_save=rep["n_save"], return_traces=True
    )
    m_fit, (ts_ms, v_hh, v_fit) = _e2e.evaluate_words(
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
        fi = _e2e.fi_curves(
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
    seconds["total"] = time.perf_counter() - start
    ts_ms, v_hh, v_nnls, v_fit = (np.asarray(x, dtype=float) for x in (ts_ms, v_hh, v_nnls, v_fit))
    ok_fit = [bool(np.all(np.isfinite(v))) for v in v_fit]
    ok_hh = [bool(np.all(np.isfinite(v))) for v in v_hh]
    held = [not any(math.isclose(x, f, abs_tol=1e-9) for f in fit_currents) for x in evaluate]

    metrics = _fit_metrics(cfg, evaluate, held, m_nnls, m_fit, ok_fit, seconds)
    metrics["fit_currents"] = [float(c) for c in fit_currents]
    if fi:
        finite = lambda x: float(x) if math.isfinite(x) else None  # noqa: E731  (strict JSON)
        metrics["fi_curve"] = {
            "currents_ua_cm2": fi["fitted"].currents.tolist(),
            "hh_rate_hz": fi["fitted"].hh_rate.tolist(),
            "nnls_rate_hz": fi["nnls"].chip_rate.tolist(),
            "fitted_rate_hz": fi["fitted"].chip_rate.tolist(),
            "onset_ua_cm2": {
                "hh": finite(fi["fitted"].hh_onset),
                "nnls": finite(fi["nnls"].chip_onset),
                "fitted": finite(fi["fitted"].chip_onset),
            },
            "onset_resolution_ua_cm2": rep["fi_refine"],
        }
    metrics["history"] = {k: np.asarray(v, dtype=float).tolist() for k, v in outcome.history.items()}
    run.write_json("metrics.json", metrics)
    run.write_npz(
        "traces.npz",
        {
            "ts_ms": ts_ms,
            "currents": np.asarray(evaluate),
            "v_hh": v_hh,
            "v_chip_nnls": v_nnls,
            "v_chip_fitted": v_fit,
        },
    )

    # figures
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
        threshold=target.threshold,
        chip_label="fitted chip",
        title=f"{cfg['name']}: HH vs fitted chip",
    )
    run.save_figure("traces.png", fig, dpi=dpi)
    names = ("HH", "chip, NNLS words rounded", "chip, fitted words")
    if fi:  # dense curves, markers at the evaluation currents, the onsets as vertical lines
        f_fit, f_nnls = fi["fitted"], fi["nnls"]
        rates = dict(zip(names, (f_fit.hh_rate, f_nnls.chip_rate, f_fit.chip_rate), strict=True))
        onsets = dict(zip(names, (f_fit.hh_onset, f_nnls.chip_onset, f_fit.chip_onset), strict=True))
        fig = plot.plot_fi_curves(f_fit.currents, rates, held_out=held_out, marks=evaluate, onsets=onsets,
                                  title=f"{cfg['name']}: F-I curves")  # fmt: skip
    else:
        rates = dict(zip(names, ([m.hh_rate for m in m_fit], [m.chip_rate for m in m_nnls],
                                 [m.chip_rate for m in m_fit]), strict=True))  # fmt: skip
        fig = plot.plot_fi_curves(evaluate, rates, held_out=held_out, title=f"{cfg['name']}: F-I curves")
    run.save_figure("fi_curve.png", fig, dpi=dpi)
    # objective traces only ("candidates" holds (scl_t, I_voltage, score) of each calibrated
    # candidate, "polish_starts" each start's polish score per sweep and "attempts" the [seed, final
    # score] of each attempt; all are in metrics.json)
    skip = ("candidates", "polish_starts", "attempts")
    stages = {k: list(v) for k, v in outcome.history.items() if k not in skip}
    stage_seconds, ylabels = {}, {}
    for k in stages:
        name, ylabel = _FIT_STAGES.get(k, (k, "objective"))
        ylabels[k] = ylabel
        if name in seconds:
            stage_seconds[k] = seconds[name]
    fig = plot.plot_loss_history(
        stages,
        seconds=stage_seconds,
        ylabels=ylabels,
        title=f"{cfg['name']}: objective per stage",
    )
    run.save_figure("loss.png", fig, dpi=dpi)

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


register_experiment("fit", prepare_fit)


# ---------------------------------------------------------------------------------------------------
# The command line


def _versions(cfg: dict, argv: list[str]) -> dict:
    from .._version import __version__

    def version(pkg: str) -> str | None:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "ndjax": __version__,
        **{pkg: version(pkg) for pkg in _PACKAGES},
        "platform": platform.platform(),
        "machine": platform.machine(),
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "jax_enable_x64": bool(jax.config.read("jax_enable_x64")),
        "seed": cfg["seed"],
        "argv": argv,
        "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _strip_header(text: str) -> str:
    """A written config.toml without its leading comment lines (they name the source file)."""
    lines = text.splitlines(keepends=True)
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    return "".join(lines)


def _default_out(config_path: Path) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path("runs") / f"{config_path.stem}-{stamp}"
    n = 1
    while out.exists():  # two runs within a second
        out = Path("runs") / f"{config_path.stem}-{stamp}-{n}"
        n += 1
    return out


def _parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="ndjax",
        description=(
            "Run ndjax experiments described by TOML configs. The runner enables JAX float64 "
            "(jax_enable_x64) before anything else: tight tolerances and SI-unit NeuroDyn values need it."
        ),
    )
    parser.add_argument("--version", action="version", version=f"ndjax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="validate CONFIG.toml, run it, write the results into a new folder",
        description=(
            "Validate CONFIG.toml completely (every error reported at once), then run it and write "
            "config.toml (defaults filled in), config.original.toml, versions.json and the experiment's "
            "results and figures into the output folder. Runs in float64 (jax_enable_x64)."
        ),
    )
    run.add_argument("config", type=Path, metavar="CONFIG.toml", help="experiment config")
    run.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output folder (default: runs/<config stem>-<timestamp>)",
    )
    run.add_argument("--force", action="store_true", help="write into a non-empty output folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``ndjax`` console script; returns the exit status (see the module docstring)."""
    jax.config.update("jax_enable_x64", True)  # first thing: an entry point owns the dtype setting
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return _run(args, argv)


def _error(message: str) -> int:
    print(f"ndjax: error: {message}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    config_path: Path = args.config
    try:
        cfg = load_config(config_path)
    except ConfigError as err:
        return _error(str(err))
    except OSError as err:
        return _error(f"cannot read {config_path}: {err}")
    experiment = EXPERIMENTS.get(cfg["kind"])
    if experiment is None:
        return _error(f"{config_path}: no runner registered for kind {cfg['kind']!r}")

    try:
        if "source" in inspect.signature(experiment).parameters:
            execute = experiment(cfg, source=config_path)
        else:
            execute = experiment(cfg)
    except ConfigError as err:  # the core rejected a value the schema let through
        return _error(str(ConfigError(err.errors, config_path)))

    out: Path = args.out if args.out is not None else _default_out(config_path)
    if out.exists() and not out.is_dir():
        return _error(f"output path {out} exists and is not a folder")
    as_run = dump_toml(cfg, header="")
    resume = False
    if out.is_dir() and any(out.iterdir()) and not args.force:
        previous = out / "config.toml"
        same = previous.is_file() and _strip_header(previous.read_text(encoding="utf-8")) == as_run
        if cfg["kind"] in RESUMABLE and same:
            resume = True
        elif cfg["kind"] in RESUMABLE and previous.is_file():
            return _error(f"output folder {out} holds a run of a different config; choose another --out "
                          "or pass --force (which discards its saved work)")  # fmt: skip
        else:
            return _error(f"output folder {out} is not empty; choose another --out or pass --force")
    if args.force and (out / "chunks").is_dir():
        shutil.rmtree(out / "chunks")  # saved work of whatever config ran here before
    out.mkdir(parents=True, exist_ok=True)
    run = RunDir(out)

    header = f"ndjax {cfg['kind']} config as run (defaults filled in), from {config_path}"
    run.write_text("config.toml", dump_toml(cfg, header=header))
    if resume:
        print(f"ndjax: {out} holds an interrupted run of this config: resuming (finished chunks are kept)")
    shutil.copyfile(config_path, run.file("config.original.toml"))
    run.write_json("versions.json", _versions(cfg, argv))

    print(f"ndjax: running {config_path} (kind = {cfg['kind']!r}) into {out}", flush=True)
    start = time.perf_counter()
    ok = execute(run)
    elapsed = time.perf_counter() - start
    print(f"ndjax: {'done' if ok else 'FAILED'} in {elapsed:.1f} s; wrote {len(run.written)} files to {out}:")
    for p in run.written:
        print(f"  {p}")
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------------
# kind = "mismatch"

#: Experiments whose output folder can be resumed: running the same config into the same folder
#: again skips the work it had finished (saved chunks).
RESUMABLE = {"mismatch"}


def prepare_mismatch(cfg: dict, source: Path | None = None) -> Callable[[RunDir], bool]:
    """``kind = "mismatch"``: read the words file, build one :class:`ndjax.studies.Study` per sigma."""
    import numpy as np

    from .. import studies as _studies
    from .._words_io import WordsFileError, load_words
    from ..fit._e2e import Target
    from ..models._neurodyn import NDWords, nd_biases, nd_chip

    words_path = cfg["chip"]["words"]
    target = None
    if words_path:
        path = Path(words_path)
        if not path.is_absolute() and source is not None:
            path = Path(source).parent / path
        try:
            w = load_words(path)
        except OSError as err:
            raise ConfigError([("chip.words", f"cannot read {path}: {err}")]) from err
        except WordsFileError as err:
            raise ConfigError([("chip.words", str(err))]) from err
        words = NDWords(*(np.asarray(w[k], dtype=float) for k in ("dg", "dErev", "dIb")))
        biases = nd_biases(
            v_ref=w["V_ref"],
            i_voltage=w["I_voltage"],
            i_master=w["I_master"],
            i_ref=w["I_ref"],
            capacitance_scaling=w["capacitance_scaling"],
        )
        if "hh" in w and "V_mean" in w:
            target = Target(
                hh=dict(w["hh"]),
                scl_v=w["scl_v"],
                scl_t=w["scl_t"],
                capacitance_scaling=w["capacitance_scaling"],
                i_voltage=w["I_voltage"],
                i_master=w["I_master"],
                v_ref=w["V_ref"],
                v_mean=w["V_mean"],
            )
    else:
        chip = nd_chip()
        words, biases = chip.words, chip.biases
    cur = cfg["currents"]
    unit = cur["unit"]
    if unit == "auto":
        unit = "uA/cm2" if target is not None else "nA"
    if unit == "uA/cm2" and target is None:
        raise ConfigError(
            [("currents.unit", "'uA/cm2' needs a words file with an HH target ('hh' and 'V_mean')")]
        )
    st = cfg["study"]
    reference = st["reference"]
    if reference == "auto":
        reference = "target" if target is not None else "nominal"
    if reference == "target" and target is None:
        raise ConfigError([("study.reference", "'target' needs a words file with an HH target")])
    values = np.asarray(cur["values"], dtype=float)
    if unit == "uA/cm2":
        currents = np.asarray(target.chip_current(values * 1e-6))
        span = cur["span_ms"] * 1e-3 / target.scl_t
        y0 = np.array([target.v_shift, 0.0, 0.0, 0.0])
        threshold, hysteresis = target.threshold + target.v_shift, target.hysteresis
    else:
        currents = values * 1e-9
        span = cur["span_ms"] * 1e-3
        y0 = np.array([0.7, 0.0, 0.0, 0.0]) if not words_path else np.array([float(biases.v_ref), 0, 0, 0])
        threshold = hysteresis = None
    ts = np.linspace(0.0, span, cur["n_save"])
    spk = cfg["spikes"]
    if threshold is None and "auto" in (spk["threshold"], spk["hysteresis"]):
        threshold, hysteresis = _nominal_spike_levels(words, biases, currents, ts, y0, cfg["solver"])
    threshold = threshold if spk["threshold"] == "auto" else spk["threshold"]
    hysteresis = hysteresis if spk["hysteresis"] == "auto" else spk["hysteresis"]
    sol = cfg["solver"]
    studies = [
        _studies.Study(
            words=words,
            biases=biases,
            currents=currents,
            ts=ts,
            y0=y0,
            threshold=threshold,
            hysteresis=hysteresis,
            sigma=float(s),
            exponent_sigma=tuple(st["exponent_sigma"]),
            centre_sigma=st["centre_sigma"],
            kappa_sigma=st["kappa_sigma"],
            seed=st["seed"],
            count_tol=st["count_tol"],
            rate_tol=st["rate_tol"],
            rtol=sol["rtol"],
            atol=sol["atol"],
            max_steps=sol["max_steps"],
            segments=sol["segments"],
        )
        for s in st["sigma"]
    ]
    labels = [f"{v:g} {unit}" for v in values]
    amps_per_unit = 1e-9 if unit == "nA" else float(target.chip_current(1e-6))
    ref_target = target if reference == "target" else None
    return functools.partial(_run_mismatch, cfg, studies, ref_target, labels, amps_per_unit)


def _nominal_spike_levels(words, biases, currents, ts, y0, solver: dict) -> tuple[float, float]:
    """Threshold halfway between the nominal chip's trough and peak (second half of the span, at the
    largest current) and a quarter of that height as hysteresis."""
    import numpy as np

    from .._simulate import NEURODYN, simulate
    from ..models._neurodyn import NDChip, chip_params, nd_constants, nominal_mismatch

    chip = NDChip(words, biases, nominal_mismatch(), nd_constants())
    i_max = float(currents[int(np.argmax(np.abs(currents)))])
    tr = simulate(NEURODYN, chip_params(chip), i_max, y0, ts, rtol=solver["rtol"], atol=solver["atol"],
                  max_steps=solver["max_steps"])  # fmt: skip
    v = np.asarray(tr.ys[ts.size // 2 :, 0])
    if not bool(tr.ok) or v.max() - v.min() < 1e-3:
        raise ConfigError([("spikes.threshold", "the nominal chip does not oscillate at the largest current; "
                            "give spikes.threshold and spikes.hysteresis")])  # fmt: skip
    return float((v.max() + v.min()) / 2), float((v.max() - v.min()) / 4)


def _mismatch_summary(res: dict, methods: list[str], unit_scale: float) -> dict:
    import numpy as np


    n = res["behaves"].size
    failed = np.flatnonzero((res["status"] != 0).any(axis=1))
    out = {
        "n_chips": int(n),
        "behaving_uncompensated": float(res["behaves"].mean()),
        "failed_solves": [
            {
                "chip": int(res["index"][i]),
                "reasons": sorted({Status(int(s)).text for s in res["status"][i] if s != 0}),
            }
            for i in failed
        ],
        "within_10pct_rate_uncompensated": float(res["within_robust_tol"].mean()),
        "seconds_per_chip": {"uncompensated": float(res["seconds"].sum() / n)},
        "methods": {},
    }
    for m in methods:
        d = {
            "behaving": float(res[f"{m}_behaves"].mean()),
            "seconds_per_chip": float(res[f"{m}_seconds"].sum() / n),
        }
        if m == "robust":
            d["within_10pct_rate"] = float(res["robust_within_robust_tol"].mean())
            d["fit_seconds"] = float(res["robust_fit_seconds"])  # once per sigma, not per chip
            d["training_objective_history"] = res["robust_history"].tolist()
        if m == "offset":
            v = res["offset_value"][np.isfinite(res["offset_value"])] * unit_scale
            d["offset"] = _stats(np.abs(v), "|offset| of the restored chips (current unit)")
        else:
            ch = res[f"{m}_changes"][res[f"{m}_behaves"]]
            d["word_changes_lsb"] = _stats(ch, "sum over the words of |change| in LSBs, restored chips")
        out["methods"][m] = d
    return out


def _stats(x, what: str) -> dict:
    import numpy as np

    if x.size == 0:
        return {"what": what, "n": 0}
    q = np.quantile(x, [0.0, 0.5, 0.9, 1.0])
    return {
        "what": what,
        "n": int(x.size),
        "mean": float(x.mean()),
        "min": float(q[0]),
        "median": float(q[1]),
        "p90": float(q[2]),
        "max": float(q[3]),
    }


def _run_mismatch(
    cfg: dict, studies: list, target: Any, labels: list[str], amps_per_unit: float, run: RunDir
) -> bool:
    import numpy as np

    from .. import plot
    from .. import studies as _studies

    comp = cfg["compensation"]
    methods = [m for m in _studies.COMPENSATIONS if comp[m]]
    mesh = _studies.device_mesh()
    _say(f"{jax.device_count()} device(s){'; chips sharded over them' if mesh is not None else ''}")
    _say(f"spikes: threshold {studies[0].threshold:.4g} V, hysteresis {studies[0].hysteresis:.3g} V")
    # offsets are fractions of the largest |current| (of one current unit when every current is 0)
    scale = float(np.max(np.abs(studies[0].currents))) or amps_per_unit
    unit_scale = 1.0 / amps_per_unit  # offsets reported in the currents' unit
    per_sigma, fractions = [], {k: [] for k in ["uncompensated", *methods]}
    arrays: dict[str, Any] = {}
    for i, study in enumerate(studies):
        ref = (
            _studies.hh_reference(study, target)
            if target is not None
            else _studies.nominal_reference(study)
        )
        nominal = _studies.nominal_reference(study)
        _say(
            f"sigma = {study.sigma:g}: reference ({'HH target' if target is not None else 'nominal chip'}) "
            f"counts {ref.count.tolist()}, rates {np.round(ref.rate, 1).tolist()} Hz (chip time)"
        )
        res = _studies.run_study(
            study,
            cfg["study"]["n_chips"],
            ref=ref,
            chunk=cfg["study"]["chunk"],
            folder=run.path / "chunks" / f"sigma_{i}",
            label=f"sigma {study.sigma:g} ",
            compensation=compensation_settings(comp, methods),
            offset_unit=scale,
            mesh=mesh,
            block=cfg["solver"]["block"],
        )
        summary = _mismatch_summary(res, methods, unit_scale)
        nominal_ok = bool(
            _studies.behaves(
                nominal.count[None], nominal.rate[None], ref.count, ref.rate, study.count_tol, study.rate_tol
            )[0]
        )
        per_sigma.append(
            {
                "sigma": study.sigma,
                "reference": {"count": ref.count, "rate_hz": ref.rate},
                "nominal_chip": {"count": nominal.count, "rate_hz": nominal.rate, "behaves": nominal_ok},
                **summary,
            }
        )
        fractions["uncompensated"].append(summary["behaving_uncompensated"])
        for m in methods:
            fractions[m].append(summary["methods"][m]["behaving"])
        for k, v in res.items():
            arrays[f"sigma{i}_{k}"] = v
        rates = {"uncompensated": res["rate"], **{m: res[f"{m}_rate"] for m in methods}}
        fig = plot.plot_rate_histograms(
            rates,
            ref.rate,
            labels,
            rate_tol=study.rate_tol,
            title=f"sigma = {study.sigma:g}, {summary['n_chips']} chips",
        )
        run.save_figure(f"rates_sigma{i}.png", fig, dpi=cfg["report"]["dpi"])
        _print_mismatch(study.sigma, summary, methods)
    run.write_npz("results.npz", arrays)
    run.write_json(
        "metrics.json",
        {
            "kind": cfg["kind"],
            "name": cfg["name"],
            "currents": labels,
            "criterion": f"count within {studies[0].count_tol}, rate within "
            f"{studies[0].rate_tol:.0%} of the reference at every current",
            "reference": "HH target" if target is not None else "nominal chip",
            "spike_threshold_v": studies[0].threshold,
            "spike_hysteresis_v": studies[0].hysteresis,
            "sigmas": per_sigma,
        },
    )
    if len(studies) > 1:
        fig = plot.plot_restored_vs_sigma([s.sigma for s in studies], fractions)
        run.save_figure("restored_vs_sigma.png", fig, dpi=cfg["report"]["dpi"])
    if cfg["report"]["example_chips"]:
        _example_traces(studies[0], arrays, methods, target, labels, cfg, run)
    return True


def _print_mismatch(sigma: float, s: dict, methods: list[str]) -> None:
    _say(f"sigma = {sigma:g}: {s['n_chips']} chips, {len(s['failed_solves'])} failed solves")
    _say(f"  {'method':<14} {'behaving':>9} {'rate within 10%':>16} {'s/chip':>8}")
    base, secs = s["behaving_uncompensated"], s["seconds_per_chip"]["uncompensated"]
    within = s["within_10pct_rate_uncompensated"]
    _say(f"  {'uncompensated':<14} {base:>9.1%} {within:>16.1%} {secs:>8.3f}")
    for m in methods:
        d = s["methods"][m]
        w = f"{d['within_10pct_rate']:.1%}" if "within_10pct_rate" in d else "-"
        _say(f"  {m:<14} {d['behaving']:>9.1%} {w:>16} {d['seconds_per_chip']:>8.3f}")
    if "robust" in methods:
        _say(
            f"  (robust words fitted once on training chips in {s['methods']['robust']['fit_seconds']:.1f} s)"
        )


def _example_traces(
    study, arrays: dict, methods: list[str], target: Any, labels: list[str], cfg: dict, run: RunDir
) -> None:
    """Traces at the largest current: the nominal chip, then for a few misbehaving chips the
    uncompensated chip and each compensation."""
    import dataclasses as dc

    import jax.numpy as jnp
    import numpy as np

    from .. import plot
    from .. import studies as _studies
    from .._simulate import NEURODYN, simulate
    from .._stimulus import Constant
    from ..fit._wordspace import unflatten_words
    from ..models._neurodyn import chip_params

    bad = np.flatnonzero(~arrays["sigma0_behaves"])[: cfg["report"]["example_chips"]]
    if bad.size == 0:
        return
    j = int(np.argmax(np.abs(study.currents)))
    ts_ms = study.ts * 1e3

    def trace(chip, offset=0.0):
        tr = simulate(
            NEURODYN,
            chip_params(chip),
            Constant(study.currents[j] + offset),
            jnp.asarray(study.y0),
            study.ts,
            rtol=study.rtol,
            atol=study.atol,
            max_steps=study.max_steps,
        )
        return np.asarray(tr.ys[:, 0])

    panels = [plot.TracePanel(ts_ms, trace(study.template()), "nominal chip", "ms", "V", study.threshold)]
    for i in bad:
        idx = int(arrays["sigma0_index"][i])
        mm = jax.tree.map(lambda x: x[0], _studies.chip_mismatch(study, np.array([idx])))
        base = dc.replace(study.template(), mismatch=mm)
        panels.append(
            plot.TracePanel(ts_ms, trace(base), f"chip {idx}, uncompensated", "ms", "V", study.threshold)
        )
        if "offset" in methods and np.isfinite(arrays["sigma0_offset_value"][i]):
            off = float(arrays["sigma0_offset_value"][i])
            panels.append(
                plot.TracePanel(
                    ts_ms,
                    trace(base, off),
                    f"chip {idx}, offset {off * 1e9:+.3g} nA",
                    "ms",
                    "V",
                    study.threshold,
                )
            )
        if "retune" in methods:
            w = unflatten_words(jnp.asarray(arrays["sigma0_retune_words"][i]))
            ok = "restored" if arrays["sigma0_retune_behaves"][i] else "not restored"
            panels.append(
                plot.TracePanel(
                    ts_ms,
                    trace(dc.replace(base, words=w)),
                    f"chip {idx}, retuned ({ok})",
                    "ms",
                    "V",
                    study.threshold,
                )
            )
        if "rebalance" in methods and arrays["sigma0_rebalance_behaves"][i]:
            dg = jnp.asarray(arrays["sigma0_rebalance_dg"][i], dtype=float)
            w = dc.replace(study.words, g=dg)
            label = f"chip {idx}, rebalanced dg = {[int(x) for x in arrays['sigma0_rebalance_dg'][i]]}"
            panels.append(
                plot.TracePanel(ts_ms, trace(dc.replace(base, words=w)), label, "ms", "V", study.threshold)
            )
        if "robust" in methods:
            w = unflatten_words(jnp.asarray(arrays["sigma0_robust_words"]))
            ok = "within 10%" if arrays["sigma0_robust_within_robust_tol"][i] else "not within 10%"
            label = f"chip {idx}, robust words ({ok})"
            panels.append(
                plot.TracePanel(ts_ms, trace(dc.replace(base, words=w)), label, "ms", "V", study.threshold)
            )
    fig = plot.plot_traces(panels, title=f"{labels[j]} (chip time)")
    run.save_figure("traces.png", fig, dpi=cfg["report"]["dpi"])


register_experiment("mismatch", prepare_mismatch)
