"""Spike detection on voltage traces.

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

__all__ = ["spike_mask", "count_spikes", "spike_times", "crossing_times"]


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
    idx = idx[idx > 0]
    v0, v1 = v[idx - 1], v[idx]
    frac = (threshold - v0) / (v1 - v0)
    return ts[idx - 1] + frac * (ts[idx] - ts[idx - 1])


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
    idx = jnp.maximum(idx, 1)
    v0, v1 = v[idx - 1], v[idx]
    gap = jnp.where(v1 > v0, v1 - v0, 1.0)
    frac = jnp.clip((threshold - v0) / gap, 0.0, 1.0)
    t = ts[idx - 1] + frac * (ts[idx] - ts[idx - 1])
    return jnp.where(jnp.arange(max_spikes) < count, t, ts[-1]), count
