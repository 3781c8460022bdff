"""Digital word ranges and their host-side validation (SPEC section 2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["WORD_RANGES", "WORD_SHAPES", "check_words", "round_ste", "clip_ste", "quantize_ste"]

#: Inclusive integer range of each word kind.
WORD_RANGES = {"dg": (0, 1023), "dErev": (-1023, 1023), "dIb": (0, 1023)}
#: Shape of each word kind: dIb is [gate m,h,n][alpha,beta][sigmoid].
WORD_SHAPES = {"dg": (3,), "dErev": (3,), "dIb": (3, 2, 7)}


def check_words(name: str, value, digital: bool = True) -> np.ndarray:
    """Validate one word array; return it as float64 NumPy.

    Args:
        name: ``"dg"``, ``"dErev"`` or ``"dIb"`` (used in messages).
        value: array-like of the word's shape.
        digital: if True the entries must be integers within ``WORD_RANGES``;
            if False they are physical values and only need to be finite
            (and non-negative for ``dg`` and ``dIb``).

    Raises:
        ValueError: wrong shape, non-finite, non-integer or out-of-range entries.
        TypeError: non-numeric input.
    """
    shape = WORD_SHAPES[name]
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be numeric with shape {shape}, got {value!r}") from err
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} must be finite; entry {tuple(int(i) for i in bad)} is {arr[tuple(bad)]}")
    if digital:
        lo, hi = WORD_RANGES[name]
        if np.any(arr != np.round(arr)):
            bad = np.argwhere(arr != np.round(arr))[0]
            raise ValueError(
                f"{name} must hold integer words; entry {tuple(int(i) for i in bad)} is "
                f"{arr[tuple(bad)]} (pass digital_values=False for physical values)"
            )
        if np.any((arr < lo) | (arr > hi)):
            bad = np.argwhere((arr < lo) | (arr > hi))[0]
            raise ValueError(
                f"{name} words must lie in {lo}..{hi}; entry {tuple(int(i) for i in bad)} is "
                f"{int(arr[tuple(bad)])}"
            )
    elif name != "dErev" and np.any(arr < 0):
        bad = np.argwhere(arr < 0)[0]
        raise ValueError(
            f"{name} physical values must be non-negative; entry {tuple(int(i) for i in bad)} is "
            f"{arr[tuple(bad)]}"
        )
    return arr


def round_ste(x: jax.Array) -> jax.Array:
    """Round in the forward pass, identity gradient in the backward pass (straight-through)."""
    return x + jax.lax.stop_gradient(jnp.round(x) - x)


def clip_ste(x: jax.Array, lo: float, hi: float) -> jax.Array:
    """Clip in the forward pass, identity gradient in the backward pass.

    The identity gradient lets a word pushed past its range come back; the
    forward pass never leaves the range.
    """
    return x + jax.lax.stop_gradient(jnp.clip(x, lo, hi) - x)


def quantize_ste(x: jax.Array, name: str) -> jax.Array:
    """Relaxed words -> integer-valued words in range (forward), identity (backward)."""
    lo, hi = WORD_RANGES[name]
    return round_ste(clip_ste(x, lo, hi))
