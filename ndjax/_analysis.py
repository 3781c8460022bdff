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

__all__ = ["spike_mask", "count_spikes", "spike_times"]


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
