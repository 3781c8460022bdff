"""Exact non-negative least squares for small problems, and the sigmoid design matrix.

With n unknowns (7 sigmoid weights here) every one of the 2^n passive sets
can be tried: for each, the unconstrained least-squares solution on those
columns; the NNLS optimum is the feasible (non-negative) candidate with the
smallest residual. (The optimum is the least-squares solution on its own
passive set, so it is among the candidates, and every feasible candidate is
a point of the NNLS problem, so none beats it.) 128 small SVD solves, in one
``vmap``: exact, jit-able, and no iteration to converge.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._math import logistic

__all__ = ["nnls", "sigmoid_basis"]

#: Largest number of unknowns the exhaustive method accepts (2^n solves).
MAX_UNKNOWNS = 12


def _masks(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def nnls(a: ArrayLike, b: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Solve ``min ||a x - b||_2`` subject to ``x >= 0``, exactly.

    Args:
        a: (m, n) design matrix, ``n <= 12``.
        b: (m,) target.

    Returns:
        ``(x, residual_norm)``: (n,) non-negative solution and ``||a x - b||``.
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.ndim != 2 or b.shape != a.shape[:1]:
        raise ValueError(f"nnls needs a of shape (m, n) and b of shape (m,), got {a.shape} and {b.shape}")
    n = a.shape[1]
    if n > MAX_UNKNOWNS:
        raise ValueError(f"exhaustive nnls is for at most {MAX_UNKNOWNS} unknowns, got {n}")
    return _nnls(a, b, jnp.asarray(_masks(n), dtype=a.dtype))


@jax.jit
def _nnls(a, b, masks):
    scale = jnp.maximum(jnp.linalg.norm(a, axis=0), jnp.finfo(a.dtype).tiny)
    a_scaled = a / scale[None, :]  # equilibrate columns: the weights span orders of magnitude

    def candidate(mask):
        x = jnp.linalg.lstsq(a_scaled * mask[None, :], b)[0] * mask  # zero columns get zero weight
        return x, jnp.linalg.norm(a_scaled @ x - b)

    xs, res = jax.vmap(candidate)(masks)
    tol = 1e-12 * jnp.max(jnp.abs(xs))
    feasible = jnp.all(xs >= -tol, axis=1)
    best = jnp.argmin(jnp.where(feasible, res, jnp.inf))  # the empty set is always feasible
    x = jnp.maximum(xs[best], 0.0) / scale
    return x, jnp.linalg.norm(a @ x - b)


def sigmoid_basis(v: ArrayLike, centres: ArrayLike, sign: float, kappa: float, v_t: float) -> jax.Array:
    """(len(v), 7) columns ``1 / (1 + exp(sign kappa (V_b,j - V) / V_T))`` (SPEC 2)."""
    v, centres = jnp.asarray(v), jnp.asarray(centres)
    return logistic(-sign * kappa * (centres[None, :] - v[:, None]) / v_t)
