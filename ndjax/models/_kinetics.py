"""Gate kinetics shared by every membrane model: the gate ODE and the chip's sigmoid rates.

    dx/dt          = alpha(V) (1 - x) - beta(V) x                       (SPEC 1, 2)
    x_inf          = alpha / (alpha + beta),   tau = 1 / (alpha + beta)
    sigmoid_j(V)   = 1 / (1 + exp(s kappa (V_b,j - V) / V_T))            (SPEC 2)
    I_rate(V)      = sum_j I_b,j sigmoid_j(V)

``s = +1`` gives a sigmoid that rises with V, ``s = -1`` one that falls.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._math import logistic

__all__ = [
    "gate_derivative",
    "steady_state",
    "time_constant",
    "sigmoid_ladder",
    "sigmoid_basis",
    "sigmoid_sum",
    "ladder_centres",
    "check_gates",
    "check_neuron_state",
]


def gate_derivative(x: jax.Array, alpha: jax.Array, beta: jax.Array) -> jax.Array:
    """dx/dt = alpha (1 - x) - beta x, elementwise (any matching shapes)."""
    return alpha * (1 - x) - beta * x


def steady_state(alpha, beta):
    """A gate's steady state ``x_inf = alpha / (alpha + beta)`` (any matching shapes)."""
    return alpha / (alpha + beta)


def time_constant(alpha, beta):
    """A gate's time constant ``tau = 1 / (alpha + beta)`` (in the rates' inverse time unit)."""
    return 1.0 / (alpha + beta)


def sigmoid_ladder(
    v: ArrayLike, centres: ArrayLike, sign: float, kappa: ArrayLike, v_t: ArrayLike
) -> jax.Array:
    """``1 / (1 + exp(sign kappa (V_b - V) / V_T))``: each sigmoid of the chip at voltage ``v``.

    Args:
        v: voltage(s), V; broadcasts against ``centres``.
        centres: sigmoid centres ``V_b`` (the chip's (7,) ladder, or one per sigmoid), V.
        sign: ``+1`` (rising with V) or ``-1`` (falling).
        kappa, v_t: subthreshold slope (scalar, or one per sigmoid) and thermal voltage (V).
    """
    return logistic(-sign * kappa * (jnp.asarray(centres) - v) / v_t)


def sigmoid_basis(
    v: ArrayLike, centres: ArrayLike, sign: float, kappa: ArrayLike, v_t: ArrayLike
) -> jax.Array:
    """The NNLS design matrix of a sigmoid-sum rate: (T, 7) columns :func:`sigmoid_ladder` at
    voltages ``v`` (T,) and centres (7,)."""
    v, centres = jnp.asarray(v), jnp.asarray(centres)
    return sigmoid_ladder(v[:, None], centres[None, :], sign, kappa, v_t)


def ladder_centres(v_centre, i_voltage, r_centre, xp=jnp):
    """The chip's seven sigmoid centres around ``v_centre`` (V), shape (7,) (SPEC 2):

        V_b,j = v_centre + (j - 3) 2 R_centre I_voltage / 7,   j = 0..6

    On the chip ``v_centre`` is ``V_ref``; the classical fit places them around ``V_mean``.
    ``xp`` is ``jax.numpy`` (traceable) or ``numpy`` (host-side, float64).
    """
    return v_centre + (xp.arange(7) - 3) * 2 * r_centre * i_voltage / 7


def sigmoid_sum(
    v: ArrayLike, weights: ArrayLike, centres: ArrayLike, sign: float, kappa: ArrayLike, v_t: ArrayLike
) -> jax.Array:
    """``sum_j w_j / (1 + exp(sign kappa (V_b,j - V)/V_T))`` at voltages ``v`` (any shape).

    The rate of one chip gate (weights in 1/s) or one sigmoid current (weights in A).
    """
    v = jnp.asarray(v)
    return (sigmoid_basis(v.ravel(), centres, sign, kappa, v_t) @ jnp.asarray(weights)).reshape(v.shape)


#: The gates of a neuron's state, in SPEC order.
GATE_NAMES = ("m", "h", "n")


def check_gates(name: str, x) -> None:
    """Host-side (NumPy): gates ``[m, h, n]`` (shape (..., 3)) must be open fractions, in [0, 1].

    A gate outside [0, 1] is no state of the membrane (``m^3 h`` can turn a sodium current
    negative), so the initial state of a solve is checked before it runs.

    Raises:
        ValueError: naming the first entry outside [0, 1], e.g. ``y0[2] (gate h) must lie in [0, 1]``
            (indices counted in ``x`` itself; :func:`check_neuron_state` counts from ``V``).
    """
    _check_gate_block(name, np.asarray(x, dtype=float), offset=0)


def check_neuron_state(name: str, y) -> None:
    """Host-side (NumPy): one neuron's state ``[V, m, h, n]`` (shape (..., 4)) has its gates in
    [0, 1] (``V`` is free). The state check of :data:`ndjax.HH` and :data:`ndjax.NEURODYN`.

    Raises:
        ValueError: naming the entry, e.g. ``y0[1] (gate m) must lie in [0, 1], got 1.5``.
    """
    y = np.asarray(y, dtype=float)
    if y.shape[-1:] != (4,):
        raise ValueError(f"{name} must end in the 4 entries [V, m, h, n], got shape {y.shape}")
    _check_gate_block(name, y[..., 1:], offset=1)


def _check_gate_block(name: str, x: np.ndarray, offset: int) -> None:
    bad = np.argwhere(~((x >= 0.0) & (x <= 1.0)))  # NaN is outside too
    if bad.size:
        idx = tuple(int(i) for i in bad[0])
        entry = (*idx[:-1], idx[-1] + offset)
        where = "".join(f"[{i}]" for i in entry)
        raise ValueError(
            f"{name}{where} (gate {GATE_NAMES[idx[-1]]}) must lie in [0, 1] (an open fraction), "
            f"got {float(x[idx]):g}"
        )
