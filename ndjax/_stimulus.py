"""Applied-current (and clamp-voltage) waveforms as pytrees.

A stimulus is a callable ``stim(t) -> scalar`` whose numbers are array
leaves, so it can be batched with ``jax.vmap`` and differentiated. Each one
declares its discontinuities in ``jump_ts`` (``None`` when it has none), which
:func:`ndjax.simulate` hands to the step-size controller so an adaptive solver
steps exactly onto every jump instead of stalling on it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = ["Stimulus", "Constant", "Step", "Pulses", "Sampled", "Function", "as_stimulus"]


class Stimulus:
    """Base class of every waveform: ``stim(t)`` returns a scalar."""

    def __call__(self, t: ArrayLike) -> jax.Array:
        raise NotImplementedError

    @property
    def jump_ts(self) -> jax.Array | None:
        """Times where the waveform is discontinuous (``None``: nowhere)."""
        return None


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Constant(Stimulus):
    """``amplitude`` at all times."""

    amplitude: jax.Array

    def __call__(self, t):
        return self.amplitude + jnp.zeros_like(t)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Step(Stimulus):
    """``baseline`` before ``t_on`` and from ``t_off`` on, ``amplitude`` between."""

    amplitude: jax.Array
    t_on: jax.Array
    t_off: jax.Array
    baseline: jax.Array

    def __call__(self, t):
        on = (t >= self.t_on) & (t < self.t_off)
        return jnp.where(on, self.amplitude, self.baseline)

    @property
    def jump_ts(self):
        return jnp.stack([self.t_on, self.t_off])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Pulses(Stimulus):
    """``n_pulses`` rectangular pulses of ``amplitude`` and ``width``, one every
    ``period`` from ``t_start``; ``baseline`` elsewhere."""

    amplitude: jax.Array
    t_start: jax.Array
    width: jax.Array
    period: jax.Array
    baseline: jax.Array
    n_pulses: int = dataclasses.field(metadata=dict(static=True))

    def __call__(self, t):
        s = t - self.t_start
        k = jnp.floor(s / self.period)
        on = (k >= 0) & (k < self.n_pulses) & (s - k * self.period < self.width)
        return jnp.where(on, self.amplitude, self.baseline)

    @property
    def jump_ts(self):
        starts = self.t_start + self.period * jnp.arange(self.n_pulses)
        return jnp.concatenate([starts, starts + self.width])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Sampled(Stimulus):
    """Piecewise-linear interpolation of ``values`` at increasing times ``ts``
    (held constant outside them)."""

    ts: jax.Array
    values: jax.Array

    def __call__(self, t):
        return jnp.interp(t, self.ts, self.values)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Function(Stimulus):
    """Any JAX-traceable ``fn(t) -> scalar``.

    ``fn`` is a static field: a new function object means a new compilation,
    and numbers captured in its closure get no gradient. Prefer the other
    stimuli (or pass numbers as their leaves) inside loops and fits.
    """

    fn: Callable = dataclasses.field(metadata=dict(static=True))
    jumps: jax.Array | None = None

    def __call__(self, t):
        return jnp.asarray(self.fn(t))

    @property
    def jump_ts(self):
        return self.jumps


def _scalar(name: str, value) -> jax.Array:
    if isinstance(value, jax.core.Tracer):  # traced (under an outer jit/vmap): shape only, no values
        if jnp.shape(value) != ():
            raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}")
        return jnp.asarray(value, dtype=float)
    arr = np.asarray(value)
    if arr.shape != ():
        raise ValueError(f"{name} must be a scalar, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return jnp.asarray(value, dtype=float)


def constant(amplitude: float) -> Constant:
    """A constant current."""
    return Constant(_scalar("amplitude", amplitude))


def step(amplitude: float, t_on: float, t_off: float = math.inf, baseline: float = 0.0) -> Step:
    """A step to ``amplitude`` at ``t_on`` (back to ``baseline`` at ``t_off``)."""
    t_off_arr = np.asarray(t_off, dtype=float)
    if t_off_arr.shape != () or not t_off_arr > np.asarray(t_on, dtype=float):
        raise ValueError(f"t_off must be a scalar greater than t_on={t_on}, got {t_off!r}")
    return Step(
        _scalar("amplitude", amplitude),
        _scalar("t_on", t_on),
        jnp.asarray(t_off, dtype=float),
        _scalar("baseline", baseline),
    )


def pulses(
    amplitude: float,
    t_start: float,
    width: float,
    period: float,
    n_pulses: int,
    baseline: float = 0.0,
) -> Pulses:
    """A train of ``n_pulses`` rectangular pulses (``0 < width < period``)."""
    if not isinstance(n_pulses, int | np.integer) or n_pulses < 1:
        raise ValueError(f"n_pulses must be a positive integer, got {n_pulses!r}")
    if not 0 < float(width) < float(period):
        raise ValueError(f"pulses need 0 < width < period, got width={width}, period={period}")
    return Pulses(
        _scalar("amplitude", amplitude),
        _scalar("t_start", t_start),
        _scalar("width", width),
        _scalar("period", period),
        _scalar("baseline", baseline),
        int(n_pulses),
    )


def sampled(ts: ArrayLike, values: ArrayLike) -> Sampled:
    """Linear interpolation of ``values`` sampled at strictly increasing ``ts``."""
    ts_np, values_np = np.asarray(ts, dtype=float), np.asarray(values, dtype=float)
    if ts_np.ndim != 1 or ts_np.shape != values_np.shape or ts_np.size < 2:
        raise ValueError(
            f"sampled needs 1-D ts and values of one length >= 2, got {ts_np.shape} and {values_np.shape}"
        )
    if not (np.all(np.isfinite(ts_np)) and np.all(np.isfinite(values_np))):
        raise ValueError("sampled ts and values must be finite")
    if not np.all(np.diff(ts_np) > 0):
        raise ValueError("sampled ts must be strictly increasing")
    return Sampled(jnp.asarray(ts_np), jnp.asarray(values_np))


def _ignores_t(fn: Callable) -> bool:
    """True when ``fn(t)``'s output provably does not depend on ``t`` (from its jaxpr)."""
    from jax.extend.core import Literal

    closed = jax.make_jaxpr(fn)(jnp.zeros((), jnp.result_type(float)))
    depends = set(closed.jaxpr.invars)
    for eqn in closed.jaxpr.eqns:
        if any(not isinstance(v, Literal) and v in depends for v in eqn.invars):
            depends.update(eqn.outvars)
    out = closed.jaxpr.outvars[0]
    return isinstance(out, Literal) or out not in depends


def as_stimulus(value, name: str = "Iapp", t0: float = 0.0) -> Stimulus:
    """Turn a number, a :class:`Stimulus` or a callable of ``t`` into a stimulus.

    A callable whose result does not depend on ``t`` (``lambda t: I0``) becomes
    a :class:`Constant`, so it neither recompiles nor loses its gradient.

    Raises:
        TypeError: ``value`` is none of these.
        ValueError: a number is not finite, or a callable does not return a
            finite scalar at ``t0``.
    """
    if isinstance(value, Stimulus):
        return value
    if isinstance(value, int | float | np.number) or (
        isinstance(value, np.ndarray | jax.Array) and np.ndim(value) == 0
    ):
        return Constant(_scalar(name, value))
    if callable(value):
        try:
            out = jax.eval_shape(value, jax.ShapeDtypeStruct((), jnp.result_type(float)))
        except Exception as err:  # noqa: BLE001 - report any tracing failure as the input's fault
            raise TypeError(
                f"{name} must be a JAX-traceable function of t returning a scalar; "
                f"calling it on a traced t failed with {type(err).__name__}: {err}"
            ) from err
        shape = getattr(out, "shape", None)
        if shape != ():
            raise ValueError(f"{name}(t) must return a scalar, got shape {shape}")
        probe = np.asarray(value(float(t0)))
        if not np.all(np.isfinite(probe)):
            raise ValueError(f"{name}(t) returned a non-finite value at t={t0}: {probe}")
        if _ignores_t(value):
            # e.g. the guide's `lambda t: I0`: a Constant leaf, so no recompilation per lambda
            return Constant(jnp.asarray(probe, dtype=float))
        return Function(value)
    raise TypeError(
        f"{name} must be a number, an ndjax stimulus or a callable of t, got {type(value).__name__}"
    )
