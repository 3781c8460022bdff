"""Gate kinetics shared by every membrane model: the gate ODE and the chip's sigmoid rates.

    dx/dt          = alpha(V) (1 - x) - beta(V) x                       (SPEC 1, 2)
    sigmoid_j(V)   = 1 / (1 + exp(s kappa (V_b,j - V) / V_T))            (SPEC 2)
    I_rate(V)      = sum_j I_b,j sigmoid_j(V)

``s = +1`` gives a sigmoid that rises with V, ``s = -1`` one that falls.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from .._math import logistic

__all__ = ["gate_derivative", "sigmoid_basis", "sigmoid_sum"]


def gate_derivative(x: jax.Array, alpha: jax.Array, beta: jax.Array) -> jax.Array:
    """dx/dt = alpha (1 - x) - beta x, elementwise (any matching shapes)."""
    return alpha * (1 - x) - beta * x


def sigmoid_basis(
    v: ArrayLike, centres: ArrayLike, sign: float, kappa: ArrayLike, v_t: ArrayLike
) -> jax.Array:
    """The sigmoid ladder at voltages ``v``: the NNLS design matrix of a sigmoid-sum rate.

    Args:
        v: (T,) voltages, V.
        centres: (7,) sigmoid centres ``V_b,j``, V.
        sign: ``+1`` (rising with V) or ``-1`` (falling).
        kappa, v_t: subthreshold slope and thermal voltage (V).

    Returns:
        (T, 7) columns ``1 / (1 + exp(sign kappa (V_b,j - V) / V_T))``.
    """
    v, centres = jnp.asarray(v), jnp.asarray(centres)
    return logistic(-sign * kappa * (centres[None, :] - v[:, None]) / v_t)


def sigmoid_sum(
    v: ArrayLike, weights: ArrayLike, centres: ArrayLike, sign: float, kappa: ArrayLike, v_t: ArrayLike
) -> jax.Array:
    """``sum_j w_j / (1 + exp(sign kappa (V_b,j - V)/V_T))`` at voltages ``v`` (any shape).

    The rate of one chip gate (weights in 1/s) or one sigmoid current (weights in A).
    """
    v = jnp.asarray(v)
    return (sigmoid_basis(v.ravel(), centres, sign, kappa, v_t) @ jnp.asarray(weights)).reshape(v.shape)
