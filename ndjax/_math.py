"""Numerically safe primitives shared by the model code.

Every function here is pure, works on any float dtype and has finite
gradients everywhere, including at the removable singularities.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

_EXPREL_SMALL = 1e-6


def exprel(x: ArrayLike) -> jax.Array:
    """(e^x - 1)/x, exactly 1 at x = 0, with a smooth gradient (1/2 at 0).

    Near zero the series 1 + x/2 + x^2/6 is used; its error below
    |x| = 1e-6 is under 1e-24, far below float64 resolution.
    """
    x = jnp.asarray(x)
    small = jnp.abs(x) < _EXPREL_SMALL
    safe = jnp.where(small, 1.0, x)  # keeps the unused branch NaN-free under grad
    series = 1.0 + x * (0.5 + x / 6.0)
    return jnp.where(small, series, jnp.expm1(safe) / safe)


def logistic(x: ArrayLike) -> jax.Array:
    """1/(1 + e^-x), overflow-free for any finite x."""
    return jax.nn.sigmoid(x)


def safe_pow(x: ArrayLike, p: ArrayLike) -> jax.Array:
    """x^p for x >= 0 and real p, with x <= 0 mapped to 0.

    Used for gate powers with non-integer (mismatched) exponents: the
    gradient with respect to both x and p stays finite at x = 0.
    """
    x = jnp.asarray(x)
    positive = x > 0
    safe = jnp.where(positive, x, 1.0)
    return jnp.where(positive, jnp.exp(p * jnp.log(safe)), 0.0)


def round_ste(x: jax.Array) -> jax.Array:
    """Round in the forward pass, identity gradient in the backward pass (straight-through)."""
    return x + jax.lax.stop_gradient(jnp.round(x) - x)


def clip_ste(x: jax.Array, lo: float, hi: float) -> jax.Array:
    """Clip in the forward pass, identity gradient in the backward pass.

    The identity gradient lets a word pushed past its range come back; the
    forward pass never leaves the range.
    """
    return x + jax.lax.stop_gradient(jnp.clip(x, lo, hi) - x)
