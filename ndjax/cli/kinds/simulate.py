"""``kind = "simulate"``: simulate HH and NeuroDyn neurons, detect their spikes, plot their traces.

Writes ``results.json`` (per model: ok flag and failure reason, solver steps, spike count and
times, firing rate), ``traces.npz`` (``model<i>_t``, ``model<i>_V``, ``_m``, ``_h``, ``_n``) and
``traces*.png``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from .._common import COMMON, MODEL, PLOT, SOLVER
from .._rundir import RunDir
from .._schema import ConfigError, Table, Tables

__all__ = ["SCHEMA", "RESUMABLE", "input_files", "prepare", "run", "build_model", "BuiltModel", "solvers"]

SCHEMA = Table(
    {**COMMON, "solver": SOLVER, "plot": PLOT, "models": Tables(MODEL, "the neurons", min_items=1)},
    doc="simulate neurons and plot their traces",
)

RESUMABLE = False


def solvers() -> dict[str, Any]:
    """``[solver] name`` -> diffrax solver class (the names are ``_common.SOLVER_NAMES``)."""
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
    from ..._stimulus import constant, pulses, step

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

    from ... import plot
    from ..._simulate import HH, NEURODYN
    from ...models._hh import hh_params
    from ...models._neurodyn import chip_params, nd_chip, sample_mismatch

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

    from ..._checks import Status, status_code
    from ..._simulate import failure_window

    status = Status(int(status_code(np.asarray(trace.ok), np.asarray(trace.max_steps_reached))))
    if status is Status.OK:
        return None
    message = status.message(max_steps, when=failure_window(trace.ts))
    return message.replace("Raise max_steps", "Raise solver.max_steps")


def input_files(cfg: dict, source: Path | None = None) -> dict[str, Path]:
    """The files a run reads, by the config key that names them: none (the config is all)."""
    return {}


def prepare(cfg: dict, source: Path | None = None) -> Callable[[RunDir], bool]:
    """Build every model (core errors surface here, before any solve)."""
    from ..._memory import memory_problem

    # each model is solved alone, saving its whole state (4 values for a neuron) at every point
    message = memory_problem(4, cfg["solver"]["n_save"], "one model's 4 state variables", "solver.n_save")
    if message:
        raise ConfigError([("solver.n_save", message)])
    built = []
    for i, m in enumerate(cfg["models"]):
        try:
            built.append(build_model(m))
        except (ValueError, TypeError) as err:
            raise ConfigError([(f"models[{i}]", str(err))]) from err
    return functools.partial(run, cfg, built)


def _solve(cfg: dict, i: int, m: dict, b: BuiltModel) -> tuple[dict, dict, Any]:
    """One model: its results record, its arrays for traces.npz and its figure panel."""
    import numpy as np

    from ... import plot
    from ..._analysis import spike_times
    from ..._simulate import default_controller, simulate

    s = cfg["solver"]
    ts = np.linspace(m["t0"], m["t1"], s["n_save"])
    start = time.perf_counter()
    trace = simulate(
        b.model,
        b.params,
        b.stim,
        b.y0,
        ts,
        solver=solvers()[s["name"]](),
        stepsize_controller=default_controller(s["rtol"], s["atol"]),
        dt0=None if s["dt0"] == "auto" else s["dt0"],
        max_steps=s["max_steps"],
    )
    ys = np.asarray(trace.ys)
    wall = time.perf_counter() - start
    # the save grid ts, not trace.ts (a failed solve leaves inf in trace.ts after the failure)
    reason = _failure_reason(trace, s["max_steps"])
    finite = np.all(np.isfinite(ys), axis=1)
    n_good = len(finite) if finite.all() else int(np.argmin(finite))  # the finite prefix
    thr, hyst = m["spikes"]["threshold"], m["spikes"]["hysteresis"]
    spikes = spike_times(ts[:n_good], ys[:n_good, 0], thr, hyst) if n_good >= 2 else np.zeros(0)
    duration = (m["t1"] - m["t0"]) * (1e-3 if b.time_unit == "ms" else 1.0)
    v_good = ys[:n_good, 0]
    result = {
        "index": i,
        "label": m["label"],
        "type": m["type"],
        "ok": reason is None,
        "failure": reason,
        "n_steps": int(np.asarray(trace.n_steps)),
        "t0": m["t0"],
        "t1": m["t1"],
        "t_reached": float(ts[n_good - 1]) if n_good else m["t0"],
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
    arrays = {f"model{i}_t": ts, **{f"model{i}_{name}": ys[:, j] for j, name in enumerate("Vmhn")}}
    show = cfg["plot"]["show_spikes"]
    panel = plot.TracePanel(
        ts,
        ys[:, 0],
        label=f"{m['label']} ({m['type']})" + ("" if reason is None else " - FAILED"),
        time_unit=b.time_unit,
        voltage_unit=b.voltage_unit,
        threshold=thr if show else None,
        spike_times=spikes if show else None,
    )
    status = "ok" if reason is None else f"FAILED: {reason}"
    print(f"      {spikes.size} spikes, {result['n_steps']} steps, {wall:.2f} s, {status}", flush=True)
    return result, arrays, panel


def run(cfg: dict, built: list[BuiltModel], run_dir: RunDir) -> bool:
    """Solve each model, detect spikes, save results, traces and figures; ok when every solve is."""
    from ... import plot

    results, arrays, panels = [], {}, []
    for i, (m, b) in enumerate(zip(cfg["models"], built, strict=True)):
        print(f"  [{i}] {m['label']}: {m['type']}, {m['t0']:g}..{m['t1']:g} {b.time_unit}", flush=True)
        result, more, panel = _solve(cfg, i, m, b)
        results.append(result)
        arrays.update(more)
        panels.append(panel)
    ok = all(r["ok"] for r in results)
    run_dir.write_json(
        "results.json", {"kind": cfg["kind"], "name": cfg["name"], "ok": ok, "models": results}
    )
    run_dir.write_npz("traces.npz", arrays)
    dpi = cfg["plot"]["dpi"]
    if cfg["plot"]["layout"] == "stacked":
        run_dir.save_figure("traces.png", plot.plot_traces(panels, title=cfg["name"]), dpi=dpi)
    else:
        for i, panel in enumerate(panels):
            run_dir.save_figure(f"traces_model{i}.png", plot.plot_traces(panel, title=cfg["name"]), dpi=dpi)
    return ok
