"""The one diffrax call: :func:`simulate` and :func:`vclamp`.

Everything here is ``jit``, ``vmap`` and ``grad`` safe. Failures (step limit,
non-finite values) never raise inside traced code: they are reported in
``Trace.ok`` so one bad chip in a batch of thousands does not abort the batch.
A state that turns NaN or inf ends its solve within a few steps (:class:`_StopWhenNonFinite`)
rather than stalling the step-size controller until ``max_steps``. The host-side
:func:`check_trace` turns a failed trace into an error for interactive use. The boundary checks
(span, state, parameters) run on concrete values, also under an outer ``jit``/``vmap``; traced
values pass unchecked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._checks import Status
from ._stimulus import Stimulus, as_stimulus
from .models._hh import HHParams, gate_derivative, hh_currents, hh_rates, hh_vector_field
from .models._kinetics import check_gates, check_neuron_state
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
    "failure_window",
    "default_solver",
    "default_controller",
    "neuron_state",
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


def neuron_state(params) -> jax.ShapeDtypeStruct:
    """The state of one neuron, whatever its parameters: ``[V, m, h, n]``, shape (4,)."""
    return jax.ShapeDtypeStruct((4,), jnp.result_type(float))


def _no_state_check(name: str, y0) -> None:
    """The default :attr:`Model.check_state`: every value of the state's structure is a state."""


class Model(NamedTuple):
    """The pure functions that define a model (all module-level, so they can be static
    arguments of a jitted function).

    Attributes:
        name: for messages.
        vector_field: ``f(t, y, (params, stim)) -> dy``, ``y`` a pytree like ``state(params)``.
        rates: ``rates(v, params) -> (alpha (3,), beta (3,))`` of one neuron's gates.
        currents: ``currents(v, x, params) -> (3,)`` ``[I_Na, I_K, I_L]`` of one neuron.
        state: ``state(params)`` -> a pytree of ``jax.ShapeDtypeStruct``: the structure and shapes
            ``y0`` must have (one neuron: (4,); a network: its neurons and synapses).
        check_state: ``check_state(name, y0)``, host-side, on a concrete ``y0`` already of the
            ``state`` structure (NumPy leaves): raises ``ValueError`` naming an entry that is no
            state of the model (the neurons': a gate outside [0, 1],
            ``ndjax.models._kinetics.check_neuron_state``). Default: no check.
    """

    name: str
    vector_field: Callable
    rates: Callable
    currents: Callable
    state: Callable = neuron_state
    check_state: Callable = _no_state_check


HH = Model("hh", hh_vector_field, _hh_param_rates, hh_currents, check_state=check_neuron_state)
NEURODYN = Model("neurodyn", nd_vector_field, nd_rates, nd_currents, check_state=check_neuron_state)


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
        ys: the states at ``ts``, each leaf with a leading (T,) axis (one neuron: (T, 4)
            ``[V, m, h, n]``), or whatever ``saveat``'s ``fn`` returns.
            After a failed solve, save points it never reached hold ``inf``
            (in ``ts`` too).
        ok: () True when the solve reached ``t1`` with finite values.
        max_steps_reached: () True when the solve stopped at ``max_steps``.
        n_steps: () accepted steps taken (rejected steps also count towards ``max_steps``).
        interpolation: dense interpolation (``saveat.dense`` only), ``.evaluate(t)``.
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


def default_controller(rtol: ArrayLike = DEFAULT_RTOL, atol: ArrayLike = DEFAULT_ATOL) -> dfx.PIDController:
    """The default step-size controller: a PID controller (rtol 1e-6, atol 1e-9 unless given)."""
    return dfx.PIDController(rtol=rtol, atol=atol, pcoeff=DEFAULT_PCOEFF, icoeff=DEFAULT_ICOEFF)


def _numbers(x) -> bool:
    return eqx.is_array(x) or isinstance(x, float | int) and not isinstance(x, bool)


def _split(controller):
    """A step-size controller as (numbers, the rest): its tolerances are traced, not compiled in."""
    return eqx.partition(controller, _numbers)


class _StopWhenNonFinite(dfx.AbstractAdaptiveStepSizeController):
    """An adaptive controller that ends the solve once it is stuck on non-finite values.

    A state (or a vector field) that becomes NaN or inf makes every trial step non-finite; the
    wrapped controller rejects them and shrinks the step, forever, until ``max_steps``. Here a
    rejected step whose candidate is non-finite and whose size is below ``dt_min`` (1e-12 of the
    span: no finite step was found by shrinking it a few dozen times) ends the solve with
    diffrax's ``RESULTS.dt_min_reached``, read as :attr:`ndjax.Status.NOT_FINITE`. It adds one
    reduction per step over the candidate, no vector-field evaluation, and changes no step of a
    solve that stays finite.
    """

    controller: dfx.AbstractAdaptiveStepSizeController
    dt_min: Any

    @property
    def rtol(self):
        return self.controller.rtol

    @property
    def atol(self):
        return self.controller.atol

    @property
    def norm(self):  # pyright: ignore[reportIncompatibleMethodOverride]
        return self.controller.norm

    def wrap(self, direction):
        return _StopWhenNonFinite(self.controller.wrap(direction), self.dt_min)

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        return self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state):
        keep, next_t0, next_t1, made_jump, state, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state
        )
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(y1_candidate)]))
        stuck = jnp.logical_not(keep) & jnp.logical_not(finite) & (jnp.abs(t1 - t0) < self.dt_min)
        result = dfx.RESULTS.where(stuck & (result == dfx.RESULTS.successful), dfx.RESULTS.dt_min_reached,
                                   result)  # fmt: skip
        return keep, next_t0, next_t1, made_jump, state, result


#: A rejected non-finite step below this fraction of the span ends the solve (:class:`_StopWhenNonFinite`;
#: in float32, ten machine epsilons when that is larger).
NON_FINITE_DT = 1e-12


def _stop_when_non_finite(controller, t0, t1):
    """``controller`` wrapped in :class:`_StopWhenNonFinite` (adaptive controllers only)."""
    if not isinstance(controller, dfx.AbstractAdaptiveStepSizeController):
        return controller  # a fixed step rejects nothing: it cannot stall
    t0, t1 = jnp.asarray(t0), jnp.asarray(t1)
    dtype = jnp.result_type(t0, t1, float)
    frac = max(NON_FINITE_DT, 10 * float(jnp.finfo(dtype).eps))
    return _StopWhenNonFinite(controller, (t1 - t0) * frac)


_STATIC = ("vector_field", "solver", "max_steps", "adjoint", "saveat_fn", "dense", "controller_static")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _solve(vector_field, params, stim, y0, t0, t1, dt0, controller_numbers, saveat_ts, *, dense, solver,
           max_steps, adjoint, saveat_fn, controller_static):  # fmt: skip
    controller = eqx.combine(controller_numbers, controller_static)
    jump_ts = getattr(stim, "jump_ts", None)
    if jump_ts is not None and not isinstance(controller, dfx.ClipStepSizeController):
        # an adaptive solver not told where a step current jumps can stall rejecting steps
        controller = dfx.ClipStepSizeController(controller, jump_ts=jump_ts)
    if dt0 is None:
        # diffrax's own initial-step heuristic falls back to an absolute 1e-6 (time
        # units) from a zero state, which is a huge first step in seconds (SI models)
        # and can stall the controller on non-finite trial steps; a fraction of the
        # span is unit-free, and the controller grows it tenfold per step.
        dt0 = (t1 - t0) * 1e-6
    controller = _stop_when_non_finite(controller, t0, t1)
    if saveat_fn is None:
        saveat = dfx.SaveAt(ts=saveat_ts, dense=dense)
    else:
        saveat = dfx.SaveAt(ts=saveat_ts, dense=dense, fn=saveat_fn)
    sol = dfx.diffeqsolve(
        dfx.ODETerm(vector_field),
        solver,
        t0=t0,
        t1=t1,
        dt0=dt0,
        y0=y0,
        args=(params, stim),
        saveat=saveat,
        stepsize_controller=controller,
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


def _check_state(name: str, y0, expected, check: Callable | None = None) -> Any:
    """``y0`` as arrays of the caller's float dtype, checked against ``expected`` (a pytree of
    ``jax.ShapeDtypeStruct``, or a shape tuple) when concrete, then by the model's ``check``
    (``check(name, y0)`` on NumPy leaves, :attr:`Model.check_state`); an error names the leaf."""
    dtype = jnp.result_type(float)
    if isinstance(expected, tuple):
        expected = jax.ShapeDtypeStruct(expected, dtype)
    want = jax.tree.structure(expected)
    single = want == jax.tree.structure(0.0)  # one array, however given (a list of numbers too)
    if not _is_concrete(y0):
        return jnp.asarray(y0, dtype=dtype) if single else jax.tree.map(lambda x: jnp.asarray(x, dtype), y0)
    if not single and jax.tree.structure(y0) != want:
        raise ValueError(f"{name} must be a pytree of the structure {want}, got {jax.tree.structure(y0)}")
    leaves = [y0] if single else jax.tree.leaves(y0)
    paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(expected)]
    out = []
    for path, leaf, spec in zip(paths, leaves, jax.tree.leaves(expected), strict=True):
        arr = np.asarray(leaf, dtype=float)
        if arr.shape != spec.shape:
            raise ValueError(f"{name}{path} must have shape {spec.shape}, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}{path} must be finite, got {arr}")
        out.append(arr)
    if check is not None:
        check(name, jax.tree.unflatten(want, out))
    return jax.tree.unflatten(want, [jnp.asarray(arr, dtype=dtype) for arr in out])


@jax.jit
def _all_finite(leaves):
    return jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves])


def _check_params(params):
    if not _is_concrete(params):
        return
    paths, leaves = zip(*jax.tree_util.tree_leaves_with_path(params), strict=True)
    # concrete parameters closed over by an outer jit/vmap: evaluate now, not as part of its trace
    with jax.ensure_compile_time_eval():
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
    y0: Any,
    ts: ArrayLike | None = None,
    *,
    t0: ArrayLike | None = None,
    t1: ArrayLike | None = None,
    solver: dfx.AbstractSolver | None = None,
    stepsize_controller: dfx.AbstractStepSizeController | None = None,
    saveat: dfx.SaveAt | None = None,
    dt0: ArrayLike | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    adjoint: dfx.AbstractAdjoint | None = None,
) -> Trace:
    """Integrate a model with diffrax.

    Args:
        model: :data:`HH`, :data:`NEURODYN` or any :class:`Model`.
        params: the model's parameters (:class:`HHParams`; :class:`NDParams`, for
            instance ``chip_params(chip)``).
        stim: applied current: a :class:`Stimulus`, a number, or a traceable
            callable of ``t`` (a new callable means a new compilation). Its
            ``jump_ts`` are passed to the step-size controller.
        y0: initial state, a pytree like ``model.state(params)`` (one neuron: (4,)
            ``[V, m, h, n]``).
        ts: (T,) save times; ``t0``/``t1`` default to its ends. Ignored when ``saveat``
            gives its own times.
        t0, t1: integration span (``t0 < t1``).
        solver: a diffrax solver (default Tsit5).
        stepsize_controller: a diffrax step-size controller (default
            :func:`default_controller`: PID, rtol 1e-6, atol 1e-9); wrapped in a
            ``ClipStepSizeController`` at the stimulus's jump times.
        saveat: a ``diffrax.SaveAt`` (default ``SaveAt(ts=ts)``); ``SaveAt(ts=ts,
            fn=...)`` saves only what ``fn(t, y, args)`` returns (a module-level
            function, static), ``dense=True`` adds ``Trace.interpolation``. Only
            ``ts``, ``dense`` and ``fn`` are read.
        dt0: initial step (``None``: 1e-6 of the span; the controller adapts it).
        max_steps: step budget; exhausting it gives ``ok=False`` and
            ``max_steps_reached=True``, never silently truncated data.
        adjoint: diffrax adjoint (default: recursive checkpointing, for
            reverse-mode gradients; ``dfx.ForwardMode()`` for ``jax.jacfwd``).

    Returns:
        :class:`Trace`. Check ``ok`` (or call :func:`check_trace`).

    Raises:
        ValueError / TypeError: on concrete bad inputs (span, the state's structure or
        shapes, non-finite values, ``max_steps``); checks are skipped for traced values.
    """
    _check_model(model)
    if saveat is not None and not isinstance(saveat, dfx.SaveAt):
        raise TypeError(f"saveat must be a diffrax.SaveAt, got {type(saveat).__name__}")
    sub = saveat.subs if saveat is not None else None
    if sub is not None:
        if not isinstance(sub, dfx.SubSaveAt) or sub.t0 or sub.t1 or sub.steps:
            raise ValueError("saveat: only SaveAt(ts=..., fn=..., dense=...) is read (not t0, t1, steps)")
        ts = ts if sub.ts is None else sub.ts
    return _checked_solve(
        model.vector_field, params, ("stim", stim), ("y0", y0, model.state(params), model.check_state), ts,
        t0, t1, solver, stepsize_controller, dt0, max_steps, adjoint,
        dense=bool(saveat.dense) if saveat is not None else False, saveat_fn=_save_fn(sub),
    )[0]  # fmt: skip


def _check_model(model) -> None:
    if not isinstance(model, Model):
        raise TypeError(f"model must be ndjax.HH, ndjax.NEURODYN or a Model, got {type(model).__name__}")


def _checked_solve(vector_field, params, stim, state, ts, t0, t1, solver, controller, dt0, max_steps, adjoint,
                   *, dense=False, saveat_fn=None) -> tuple[Trace, Stimulus]:  # fmt: skip
    """What :func:`simulate` and :func:`vclamp` share: the checks of their concrete inputs at the
    boundary (``stim = (label, value)``, ``state = (label, value, expected structure)``), then
    the one jitted solve. Returns the trace and the stimulus as a :class:`Stimulus`."""
    if not isinstance(max_steps, int | np.integer) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    ts_arr, t0, t1 = _time_span(ts, t0, t1)
    _check_time_args(t0, t1, ts_arr)
    y0 = _check_state(*state)
    _check_params(params)
    stim = as_stimulus(stim[1], stim[0], t0=float(t0) if _is_concrete(t0) else 0.0)
    numbers, rest = _split(default_controller() if controller is None else controller)
    trace = _solve(
        vector_field, params, stim, y0, t0, t1, dt0, numbers, ts_arr, dense=dense,
        solver=solver or default_solver(), max_steps=int(max_steps),
        adjoint=adjoint or dfx.RecursiveCheckpointAdjoint(), saveat_fn=saveat_fn, controller_static=rest,
    )  # fmt: skip
    return trace, stim


#: ``SaveAt``'s own ``fn`` (save the state), recognised so that it compiles like no ``fn``.
_SAVE_STATE = dfx.SaveAt(t1=True).subs.fn


def _save_fn(sub) -> Callable | None:
    """The ``fn`` of a ``SaveAt``'s times (None: the state itself)."""
    if sub is None or sub.fn is _SAVE_STATE:
        return None
    return sub.fn


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
    stepsize_controller: dfx.AbstractStepSizeController | None = None,
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
    _check_model(model)
    trace, v_stim = _checked_solve(
        _clamp_field(model.rates), params, ("V", v), ("x0", x0, (3,), check_gates), ts, t0, t1,
        solver, stepsize_controller, dt0, max_steps, adjoint,
    )  # fmt: skip
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
    if np.asarray(trace.max_steps_reached).any():
        raise RuntimeError(Status.MAX_STEPS.message(max_steps))
    raise RuntimeError(Status.NOT_FINITE.message(when=failure_window(trace.ts)))


def failure_window(ts) -> str | None:
    """Host-side: where a failed solve of one trace stopped, from its save times ``ts`` (T,) (the
    ones it never reached hold ``inf``): ``"between t = a and t = b"``, or None when unknown."""
    ts = np.asarray(ts, dtype=float)
    if ts.ndim != 1 or ts.size == 0:
        return None
    reached = np.isfinite(ts)
    k = int(np.argmin(reached)) if not reached.all() else ts.size
    if k == 0:
        return "before the first save time"
    if k == ts.size:
        return None
    return f"after t = {ts[k - 1]:.6g} (the last save time reached)"
