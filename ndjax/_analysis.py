"""Spike detection on voltage traces: the one home of ndjax's spike maths.

Spike masks and counts, threshold-crossing times (interpolated between samples, differentiable in
the voltage), the firing rate from the first to the last spike, and the verdict "behaves like the
reference" that studies judge chips by.

A spike is an upward crossing of ``threshold``; the detector re-arms only
after the voltage falls below ``threshold - hysteresis``, so a trace hovering
at the threshold (a damped oscillation, solver noise) is not counted twice.

NeuroDyn spikes are small (the default words peak near 0.95 V, 50 mV above
``V_ref``), so thresholds must come from the model at hand: for a chip
fitted to an HH model, ``V_ref + (60 mV - Vmean) scl_v`` corresponds to HH's
60 mV; for the default words ``V_ref`` itself works.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = [
    "spike_mask",
    "count_spikes",
    "spike_times",
    "crossing_time",
    "crossing_times",
    "first_last_crossings",
    "firing_rate",
    "count_and_rate",
    "within_rate",
    "behaves",
]


def spike_mask(v: ArrayLike, threshold: ArrayLike, hysteresis: ArrayLike = 0.0) -> jax.Array:
    """(T,) boolean: True at the first sample of each spike (jit/vmap safe).

    Args:
        v: (T,) voltage samples.
        threshold: crossing level.
        hysteresis: the detector re-arms below ``threshold - hysteresis``.
    """
    v = jnp.asarray(v)
    above = v >= threshold
    below = v < threshold - hysteresis

    def step(armed, inputs):
        is_above, is_below = inputs
        fire = armed & is_above
        armed = jnp.where(fire, False, armed | is_below)
        return armed, fire

    # a trace that starts above threshold is not a spike until it has come down
    _, fired = jax.lax.scan(step, ~above[0], (above, below))
    return fired


def count_spikes(v: ArrayLike, threshold: ArrayLike, hysteresis: ArrayLike = 0.0) -> jax.Array:
    """Number of spikes in a (T,) trace (jit/vmap safe)."""
    return jnp.sum(spike_mask(v, threshold, hysteresis))


def spike_times(ts: ArrayLike, v: ArrayLike, threshold: float, hysteresis: float = 0.0) -> np.ndarray:
    """Host-side (NumPy): spike times, each linearly interpolated between the
    two samples around its threshold crossing."""
    ts, v = np.asarray(ts, dtype=float), np.asarray(v, dtype=float)
    if ts.ndim != 1 or ts.shape != v.shape:
        raise ValueError(f"ts and v must be 1-D of one length, got {ts.shape} and {v.shape}")
    idx = np.flatnonzero(np.asarray(spike_mask(v, threshold, hysteresis)))
    return crossing_time(ts, v, idx[idx > 0], threshold, xp=np)


def crossing_times(
    ts: ArrayLike, v: ArrayLike, threshold: ArrayLike, hysteresis: ArrayLike, max_spikes: int
) -> tuple[jax.Array, jax.Array]:
    """The first ``max_spikes`` spike times of a sampled trace, differentiable in ``v``.

    Which samples bracket a crossing is decided on ``stop_gradient(v)``; the
    time inside the bracket is interpolated linearly, so it moves smoothly
    with the voltage samples (and, through an ODE solve, with parameters).

    Returns:
        ``(times, count)``: (max_spikes,) times, entries from ``count`` on are
        ``ts[-1]`` (padding), and the () number of spikes in the whole trace.
    """
    ts, v = jnp.asarray(ts), jnp.asarray(v)
    mask = spike_mask(jax.lax.stop_gradient(v), threshold, hysteresis)
    count = jnp.sum(mask)
    idx = jnp.nonzero(mask, size=max_spikes, fill_value=1)[0]
    t = crossing_time(ts, v, idx, threshold)
    return jnp.where(jnp.arange(max_spikes) < count, t, ts[-1]), count


def crossing_time(ts: ArrayLike, v: ArrayLike, idx: ArrayLike, threshold: ArrayLike, xp=jnp) -> jax.Array:
    """Time of the upward crossing of ``threshold`` that the sample ``idx`` (a spike's first sample,
    see :func:`spike_mask`) ends, linear between the samples ``idx - 1`` and ``idx``.

    ``t = ts[i-1] + clip((threshold - v[i-1]) / (v[i] - v[i-1]), 0, 1) (ts[i] - ts[i-1])`` with
    ``i = max(idx, 1)``; where ``v`` does not rise over the bracket the gap is taken as 1 (a finite
    time and gradient instead of a division by zero). The bracket is fixed, so the time is
    differentiable in the two voltage samples (and through a solve, in parameters).

    Args:
        ts: (T,) sample times.
        v: (T,) voltage samples.
        idx: sample indices, any shape (jit/vmap safe).
        threshold: the crossing level, in the units of ``v``.
        xp: ``jax.numpy`` (traceable, the default) or ``numpy`` (host-side, float64).

    Returns:
        Crossing times of ``idx``'s shape, in the units of ``ts``.
    """
    ts, v = xp.asarray(ts), xp.asarray(v)
    i = xp.maximum(idx, 1)
    v0, v1 = v[i - 1], v[i]
    gap = xp.where(v1 > v0, v1 - v0, 1.0)
    frac = xp.clip((threshold - v0) / gap, 0.0, 1.0)
    return ts[i - 1] + frac * (ts[i] - ts[i - 1])


def first_last_crossings(
    ts: ArrayLike, v: ArrayLike, mask: ArrayLike, threshold: ArrayLike
) -> tuple[jax.Array, jax.Array]:
    """Interpolated times of the first and the last spike of a trace (:func:`crossing_time`).

    Args:
        ts: (T,) sample times.
        v: (T,) voltage samples.
        mask: (T,) spike mask of ``v`` (:func:`spike_mask`).
        threshold: the level the mask was computed at.

    Returns:
        ``(t_first, t_last)``, () each; meaningless where the mask has no spike (then both are the
        time of a crossing at sample 0 or 1), so callers weigh them by the count (:func:`firing_rate`).
    """
    mask = jnp.asarray(mask)
    n = mask.shape[0]
    first = jnp.argmax(mask)
    last = n - 1 - jnp.argmax(mask[::-1])
    return crossing_time(ts, v, first, threshold), crossing_time(ts, v, last, threshold)


def firing_rate(count: ArrayLike, t_first: ArrayLike, t_last: ArrayLike, floor: float = 1e-300) -> jax.Array:
    """Mean firing rate from the first to the last spike: ``(count - 1) / (t_last - t_first)``.

    The rate of a regular train, independent of where the window starts and ends (a count over the
    window would jump by one spike as the phase moves). 0 below two spikes, with a zero gradient
    there (the denominator is made safe, so a silent chip of a batch does not put NaN into an
    optimiser's state).

    Args:
        count: spike counts, any shape.
        t_first, t_last: times of the first and last spike, same shape (e.g. s).
        floor: the smallest span divided by (a guard; spans of real trains are far larger).

    Returns:
        Rates of ``count``'s shape, in 1 / the unit of the times (Hz for s).
    """
    span = jnp.where(count >= 2, t_last - t_first, 1.0)
    return jnp.where(count >= 2, (count - 1) / jnp.maximum(span, floor), 0.0)


def train_rate(times: np.ndarray, per: float = 1.0) -> float:
    """:func:`firing_rate` of one spike train on the host: ``per (n - 1) / (t_last - t_first)``.

    Args:
        times: (n,) spike times, increasing (NumPy).
        per: unit factor (1e3 for times in ms and a rate in Hz).

    Returns:
        The rate (1 / the unit of ``times``, times ``per``); 0.0 below two spikes.
    """
    n = len(times)
    return 0.0 if n < 2 else per * (n - 1) / (times[n - 1] - times[0])


def count_and_rate(
    ts: ArrayLike, v: ArrayLike, threshold: ArrayLike, hysteresis: ArrayLike
) -> tuple[jax.Array, jax.Array]:
    """Spike count and first-to-last firing rate of one sampled trace (jit/vmap safe).

    The rate is differentiable in ``v`` through the interpolated first and last crossing times
    (which samples bracket them is fixed).

    Args:
        ts: (T,) sample times, s.
        v: (T,) voltage samples.
        threshold, hysteresis: spike detection (:func:`spike_mask`), in the units of ``v``.

    Returns:
        ``(count, rate)``: () int spike count and () rate in Hz (0 below two spikes).
    """
    mask = spike_mask(v, threshold, hysteresis)
    count = jnp.sum(mask)
    t_first, t_last = first_last_crossings(ts, v, mask, threshold)
    return count, firing_rate(count, t_first, t_last)


def _rate_ok(rate: np.ndarray, ref_rate: np.ndarray, rate_tol: float) -> np.ndarray:
    """Per entry: the rate within ``rate_tol`` (relative) of a repetitive reference, or 0 where the
    reference fires fewer than two spikes (rate 0)."""
    repetitive = ref_rate > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(rate - ref_rate) / np.where(repetitive, ref_rate, 1.0)
    return np.where(repetitive, rel <= rate_tol, rate == 0)


def within_rate(count: ArrayLike, rate: ArrayLike, ref_rate: ArrayLike, rate_tol: float) -> np.ndarray:
    """Host-side (NumPy): True where, at every current (the last axis), the rate is within
    ``rate_tol`` of the reference's (relative), or 0 where the reference fires fewer than two
    spikes; a failed solve (count -1) never is.

    Args:
        count, rate: (..., C) spike counts (-1: failed solve) and rates (Hz).
        ref_rate: (C,) the reference's rates (Hz).
        rate_tol: relative tolerance (0.1: 10%).

    Returns:
        (...) bool.
    """
    count, rate, ref_rate = np.asarray(count), np.asarray(rate), np.asarray(ref_rate)
    return np.all(_rate_ok(rate, ref_rate, rate_tol) & (count >= 0), axis=-1)


def behaves(
    count: ArrayLike,
    rate: ArrayLike,
    ref_count: ArrayLike,
    ref_rate: ArrayLike,
    count_tol: int,
    rate_tol: float,
) -> np.ndarray:
    """Host-side (NumPy): True where, at every current (the last axis), a response behaves like the
    reference: ``|count - ref_count| <= count_tol`` and the rate as in :func:`within_rate`.

    Where the reference fires fewer than two spikes (rate 0) the response must too, so a second
    spike where the reference fires once (repetitive firing) does not behave, whatever
    ``count_tol``. A failed solve (count -1) never behaves.

    Args:
        count, rate: (..., C) spike counts (-1: failed solve) and rates (Hz).
        ref_count, ref_rate: (C,) the reference's counts and rates.
        count_tol: spikes of difference allowed.
        rate_tol: relative rate difference allowed (0.05: 5%).

    Returns:
        (...) bool.
    """
    count, rate = np.asarray(count), np.asarray(rate)
    ref_count, ref_rate = np.asarray(ref_count), np.asarray(ref_rate)
    ok_count = (count >= 0) & (np.abs(count - ref_count) <= count_tol)
    return np.all(ok_count & _rate_ok(rate, ref_rate, rate_tol), axis=-1)
