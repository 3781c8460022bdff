"""The one diffrax call: :func:`simulate` and :func:`vclamp`.

Everything here is ``jit``, ``vmap`` and ``grad`` safe. Failures (step limit,
non-finite values) never raise inside traced code: they are reported in
``Trace.ok`` so one bad chip in a batch of thousands does not abort the batch.
The host-side :func:`check_trace` turns a failed trace into an error for
interactive use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._checks import Status
from ._stimulus import Stimulus, as_stimulus
from .models._hh import HHParams, gate_derivative, hh_currents, hh_rates, hh_vector_field
from .models._neurodyn import nd_currents, nd_rates, nd_vector_field

__all__ = [
    "Model",
    "HH",
    "NEURODYN",
    "Trace",
    "ClampTrace",
    "simulate",
    "rates_over",
    "currents_over",
    "vclamp",
    "check_trace",
    "default_solver",
    "DEFAULT_RTOL",
    "DEFAULT_ATOL",
    "DEFAULT_MAX_STEPS",
]

#: Default tolerances. With Tsit5 and the PID controller these reproduce the
#: SPEC reference spike times (HH: within 0.01 ms of a 1e-12 Dopri8 solution).
DEFAULT_RTOL = 1e-6
DEFAULT_ATOL = 1e-9
DEFAULT_MAX_STEPS = 100_000
#: PID coefficients (diffrax's suggestion for non-stiff problems).
DEFAULT_PCOEFF = 0.3
DEFAULT_ICOEFF = 0.4


def _hh_param_rates(v, params: HHParams):
    return hh_rates(v, params.gates)


class Model(NamedTuple):
    """The pure functions that define one membrane model (all module-level,
    so they can be static arguments of a jitted function)."""

    name: str
    vector_field: Callable  # f(t, y, (params, stim)) -> dy, y = [V, m, h, n]
    rates: Callable  # rates(v, params) -> (alpha (3,), beta (3,))
    currents: Callable  # currents(v, x, params) -> (3,) [I_Na, I_K, I_L]


HH = Model("hh", hh_vector_field, _hh_param_rates, hh_currents)
NEURODYN = Model("neurodyn", nd_vector_field, nd_rates, nd_currents)


@functools.partial(jax.jit, static_argnames="model")
def rates_over(model: Model, params, vs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A model's gate rates at many voltages: ``vs`` (T,) -> alpha, beta, each (T, 3)."""
    return jax.vmap(model.rates, in_axes=(0, None))(vs, params)


@functools.partial(jax.jit, static_argnames="model")
def currents_over(model: Model, params, v: jax.Array, x: jax.Array) -> jax.Array:
    """A model's ionic currents at many states: ``v`` (T,), ``x`` (T, 3) -> (T, 3)."""
    return jax.vmap(model.currents, in_axes=(0, 0, None))(v, x, params)


class Trace(NamedTuple):
    """Result of :func:`simulate`.

    Attributes:
        ts: (T,) save times.
        ys: (T, 4) states ``[V, m, h, n]`` at ``ts`` (or whatever ``save_fn`` returns).
            After a failed solve, save points it never reached hold ``inf``
            (in ``ts`` too).
        ok: () True when the solve reached ``t1`` with finite values.
        max_steps_reached: () True when the solve stopped at ``max_steps``.
        n_steps: () accepted steps taken (rejected steps also count towards ``max_steps``).
        interpolation: dense interpolation (``dense=True`` only), ``.evaluate(t)``.
    """

    ts: jax.Array
    ys: Any
    ok: jax.Array
    max_steps_reached: jax.Array
    n_steps: jax.Array
    interpolation: Any = None


class ClampTrace(NamedTuple):
    """Result of :func:`vclamp`.

    Attributes:
        ts: (T,) save times.
        v: (T,) clamp voltage.
        gates: (T, 3) ``[m, h, n]``.
        currents: (T, 3) ionic currents ``[I_Na, I_K, I_L]`` from those gates.
        ok, max_steps_reached, n_steps: as in :class:`Trace`.
    """

    ts: jax.Array
    v: jax.Array
    gates: jax.Array
    currents: jax.Array
    ok: jax.Array
    max_steps_reached: jax.Array
    n_steps: jax.Array


def default_solver() -> dfx.AbstractSolver:
    """Tsit5: explicit, adaptive, 5th order (the default of every simulation)."""
    return dfx.Tsit5()


def _controller(rtol, atol, jump_ts, pcoeff, icoeff):
    pid = dfx.PIDController(rtol=rtol, atol=atol, pcoeff=pcoeff, icoeff=icoeff)
    if jump_ts is None:
        return pid
    return dfx.ClipStepSizeController(pid, jump_ts=jump_ts)


@functools.partial(
    jax.jit,
    static_argnames=("vector_field", "solver", "max_steps", "dense", "save_fn", "adjoint"),
)
def _solve(
    vector_field,
    params,
    stim,
    y0,
    ts,
    t0,
    t1,
    dt0,
    rtol,
    atol,
    pcoeff,
    icoeff,
    *,
    solver,
    max_steps,
    dense,
    save_fn,
    adjoint,
):
    jump_ts = getattr(stim, "jump_ts", None)
    if dt0 is None:
        # diffrax's own initial-step heuristic falls back to an absolute 1e-6 (time
        # units) from a zero state, which is a huge first step in seconds (SI models)
        # and can stall the controller on non-finite trial steps; a fraction of the
        # span is unit-free, and the controller grows it tenfold per step.
        dt0 = (t1 - t0) * 1e-6
    saveat = dfx.SaveAt(ts=ts, dense=dense, fn=save_fn) if save_fn else dfx.SaveAt(ts=ts, dense=dense)
    sol = dfx.diffeqsolve(
        dfx.ODETerm(vector_field),
        solver,
        t0=t0,
        t1=t1,
        dt0=dt0,
        y0=y0,
        args=(params, stim),
        saveat=saveat,
        stepsize_controller=_controller(rtol, atol, jump_ts, pcoeff, icoeff),
        max_steps=max_steps,
        adjoint=adjoint,
        throw=False,
    )
    finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(sol.ys)]))
    ok = (sol.result == dfx.RESULTS.successful) & finite
    return Trace(
        ts=sol.ts,
        ys=sol.ys,
        ok=ok,
        max_steps_reached=sol.result == dfx.RESULTS.max_steps_reached,
        n_steps=sol.stats["num_accepted_steps"],
        interpolation=sol.interpolation if dense else None,
    )


def _is_concrete(x) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def _check_time_args(t0, t1, ts):
    """Validate the time span on concrete values (skipped under tracing)."""
    if not _is_concrete((t0, t1, ts)):
        return
    t0f, t1f = np.asarray(t0, dtype=float), np.asarray(t1, dtype=float)
    if t0f.shape != () or t1f.shape != ():
        raise ValueError(f"t0 and t1 must be scalars, got shapes {t0f.shape} and {t1f.shape}")
    if not (np.isfinite(t0f) and np.isfinite(t1f)):
        raise ValueError(f"the time span must be finite, got t0={t0f}, t1={t1f}")
    if not t1f > t0f:
        raise ValueError(
            f"the time span must run forward (t0 < t1), got t0={t0f}, t1={t1f}"
            + (" (empty)" if t1f == t0f else " (reversed)")
        )
    if ts is not None:
        tsf = np.asarray(ts, dtype=float)
        if tsf.ndim != 1 or tsf.size == 0:
            raise ValueError(f"ts must be a non-empty 1-D array of save times, got shape {tsf.shape}")
        if not np.all(np.isfinite(tsf)):
            raise ValueError("ts must be finite")
        if np.any(np.diff(tsf) < 0):
            raise ValueError("ts must be non-decreasing")
        eps = 1e-12 * max(abs(t0f), abs(t1f), 1.0)
        if tsf[0] < t0f - eps or tsf[-1] > t1f + eps:
            raise ValueError(f"ts must lie within [t0, t1] = [{t0f}, {t1f}], got [{tsf[0]}, {tsf[-1]}]")


def _check_state(name, y0, n):
    if not _is_concrete(y0):
        return
    arr = np.asarray(y0, dtype=float)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr}")


@jax.jit
def _all_finite(leaves):
    return jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves])


def _check_params(params):
    if not _is_concrete(params):
        return
    paths, leaves = zip(*jax.tree_util.tree_leaves_with_path(params), strict=True)
    finite = np.asarray(_all_finite(list(leaves)))  # one device call for the whole pytree
    if not finite.all():
        i = int(np.argmin(finite))
        raise ValueError(f"parameter {jax.tree_util.keystr(paths[i])} is not finite: {leaves[i]}")


def _time_span(ts, t0, t1):
    """Save times as an array and the span; concrete values stay on the host."""
    if ts is None and (t0 is None or t1 is None):
        raise ValueError("give save times ts, or both t0 and t1 (dense=True)")
    if ts is None:
        return None, t0, t1
    if not _is_concrete(ts):
        ts_arr = jnp.asarray(ts)
        return ts_arr, ts_arr[0] if t0 is None else t0, ts_arr[-1] if t1 is None else t1
    ts_np = np.asarray(ts, dtype=float)
    t0 = (float(ts_np[0]) if ts_np.size else 0.0) if t0 is None else t0
    t1 = (float(ts_np[-1]) if ts_np.size else 0.0) if t1 is None else t1
    return ts_np, t0, t1


def simulate(
    model: Model,
    params,
    stim: Stimulus | ArrayLike | Callable,
    y0: ArrayLike,
    ts: ArrayLike | None = None,
    *,
    t0: ArrayLike | None = None,
    t1: ArrayLike | None = None,
    solver: dfx.AbstractSolver | None = None,
    rtol: ArrayLike = DEFAULT_RTOL,
    atol: ArrayLike = DEFAULT_ATOL,
    dt0: ArrayLike | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    pcoeff: ArrayLike = DEFAULT_PCOEFF,
    icoeff: ArrayLike = DEFAULT_ICOEFF,
    dense: bool = False,
    save_fn: Callable | None = None,
    adjoint: dfx.AbstractAdjoint | None = None,
) -> Trace:
    """Integrate a membrane model with diffrax.

    Args:
        model: :data:`HH` or :data:`NEURODYN` (or any :class:`Model`).
        params: the model's parameters (:class:`HHParams`; :class:`NDParams`, for
            instance ``chip_params(chip)``).
        stim: applied current: a :class:`Stimulus`, a number, or a traceable
            callable of ``t`` (a new callable means a new compilation).
        y0: (4,) initial state ``[V, m, h, n]``.
        ts: (T,) save times; ``t0``/``t1`` default to its ends.
        t0, t1: integration span (``t0 < t1``).
        solver: a diffrax solver (default Tsit5).
        rtol, atol: tolerances of the PID step-size controller.
        dt0: initial step (``None``: 1e-6 of the span; the controller adapts it).
        max_steps: step budget; exhausting it gives ``ok=False`` and
            ``max_steps_reached=True``, never silently truncated data.
        pcoeff, icoeff: PID coefficients.
        dense: also return a dense interpolation.
        save_fn: ``fn(t, y, args)`` to save instead of ``y`` (static; for
            example only the voltage in large batches).
        adjoint: diffrax adjoint (default: recursive checkpointing, for
            reverse-mode gradients; ``dfx.ForwardMode()`` for ``jax.jacfwd``).

    Returns:
        :class:`Trace`. Check ``ok`` (or call :func:`check_trace`).

    Raises:
        ValueError / TypeError: on concrete bad inputs (span, shapes,
        non-finite values, ``max_steps``); checks are skipped for traced values.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be ndjax.HH, ndjax.NEURODYN or a Model, got {type(model).__name__}")
    if not isinstance(max_steps, int | np.integer) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    ts_arr, t0, t1 = _time_span(ts, t0, t1)
    _check_time_args(t0, t1, ts_arr)
    _check_state("y0", y0, 4)
    _check_params(params)
    stim = as_stimulus(stim, "stim", t0=float(t0) if _is_concrete(t0) else 0.0)
    return _solve(
        model.vector_field,
        params,
        stim,
        jnp.asarray(y0, dtype=jnp.result_type(float)),
        ts_arr,
        t0,
        t1,
        dt0,
        rtol,
        atol,
        pcoeff,
        icoeff,
        solver=solver or default_solver(),
        max_steps=int(max_steps),
        dense=bool(dense),
        save_fn=save_fn,
        adjoint=adjoint or dfx.RecursiveCheckpointAdjoint(),
    )


@functools.cache
def _clamp_field(rates: Callable) -> Callable:
    """Gate-only vector field for a model's rates (cached: one object per model)."""

    def field(t, x, args):
        params, v_stim = args
        alpha, beta = rates(v_stim(t), params)
        return gate_derivative(x, alpha, beta)

    return field


def vclamp(
    model: Model,
    params,
    v: Stimulus | ArrayLike | Callable,
    x0: ArrayLike,
    ts: ArrayLike | None = None,
    *,
    t0: ArrayLike | None = None,
    t1: ArrayLike | None = None,
    solver: dfx.AbstractSolver | None = None,
    rtol: ArrayLike = DEFAULT_RTOL,
    atol: ArrayLike = DEFAULT_ATOL,
    dt0: ArrayLike | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    adjoint: dfx.AbstractAdjoint | None = None,
) -> ClampTrace:
    """Voltage clamp: integrate only the gates while ``V`` follows ``v(t)``.

    Args:
        v: clamp voltage: a :class:`Stimulus` (a :func:`~ndjax.step` for the
            classic experiment, :func:`~ndjax.sampled` to replay a recorded
            trace), a number, or a traceable callable of ``t``.
        x0: (3,) initial gates ``[m, h, n]``.
        Other arguments as in :func:`simulate`.

    Returns:
        :class:`ClampTrace` with the gates and the ionic currents they give.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be ndjax.HH, ndjax.NEURODYN or a Model, got {type(model).__name__}")
    ts_arr, t0, t1 = _time_span(ts, t0, t1)
    _check_time_args(t0, t1, ts_arr)
    _check_state("x0", x0, 3)
    _check_params(params)
    v_stim = as_stimulus(v, "V", t0=float(t0) if _is_concrete(t0) else 0.0)
    trace = _solve(
        _clamp_field(model.rates),
        params,
        v_stim,
        jnp.asarray(x0, dtype=jnp.result_type(float)),
        ts_arr,
        t0,
        t1,
        dt0,
        rtol,
        atol,
        DEFAULT_PCOEFF,
        DEFAULT_ICOEFF,
        solver=solver or default_solver(),
        max_steps=int(max_steps),
        dense=False,
        save_fn=None,
        adjoint=adjoint or dfx.RecursiveCheckpointAdjoint(),
    )
    vs = jax.vmap(v_stim)(trace.ts)
    currents = jax.vmap(model.currents, in_axes=(0, 0, None))(vs, trace.ys, params)
    return ClampTrace(trace.ts, vs, trace.ys, currents, trace.ok, trace.max_steps_reached, trace.n_steps)


def check_trace(trace: Trace | ClampTrace, max_steps: int | None = None) -> None:
    """Host-side: raise ``RuntimeError`` if a (single, concrete) solve failed.

    The message says whether the step budget ran out (and how to raise it) or
    the state became non-finite.
    """
    ok = np.asarray(trace.ok)
    if ok.all():
        return
    status = Status.MAX_STEPS if np.asarray(trace.max_steps_reached).any() else Status.NOT_FINITE
    raise RuntimeError(status.message(max_steps))
