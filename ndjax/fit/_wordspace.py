"""The spaces a search moves in: the 48 words as one vector, and 13 global factors of them.

Every search over a chip's words (the fit's calibration and polish, a study's retune and robust
words) uses these, so the order of the flattened words and the meaning of each factor are
defined once:

- **48 words**, flattened in the order ``dg`` (3), ``dErev`` (3), ``dIb`` (3 x 2 x 7);
- **13 factors** ``theta`` on words ``w0``: a log-factor per conductance (3), a shift per
  reversal in units of 40 LSB (3), a log-factor per alpha/beta rate of each gate (6) and one on
  every rate (1)::

      dg   = dg0 exp(theta[0:3])
      dE   = dE0 + 40 theta[3:6]
      dIb  = dIb0 exp(theta[6:12][gate, rate] + theta[12])
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..models._neurodyn import WORD_RANGES, WORD_SHAPES, NDWords, quantize_ste

__all__ = [
    "N_WORDS",
    "N_FACTORS",
    "WORD_LO",
    "WORD_HI",
    "flatten_words",
    "unflatten_words",
    "quantize_words",
    "integer_words",
    "apply_factors",
]

_ORDER = ("dg", "dErev", "dIb")
_SIZES = {name: int(np.prod(shape)) for name, shape in WORD_SHAPES.items()}
#: Length of the flattened words.
N_WORDS = sum(_SIZES.values())
#: Number of global factors.
N_FACTORS = 13
#: (48,) lowest and highest value of each flattened word.
WORD_LO = np.concatenate([np.full(_SIZES[n], WORD_RANGES[n][0], float) for n in _ORDER])
WORD_HI = np.concatenate([np.full(_SIZES[n], WORD_RANGES[n][1], float) for n in _ORDER])


def flatten_words(words: NDWords) -> jax.Array:
    """(48,) words in the order dg, dErev, dIb."""
    return jnp.concatenate([words.g, words.e_rev, jnp.ravel(words.i_b)])


def unflatten_words(x) -> NDWords:
    """The inverse of :func:`flatten_words`."""
    return NDWords(x[0:3], x[3:6], x[6:].reshape(3, 2, 7))


def quantize_words(words: NDWords) -> NDWords:
    """Integer words in range in the forward pass, identity gradient (straight-through)."""
    return NDWords(
        quantize_ste(words.g, "dg"), quantize_ste(words.e_rev, "dErev"), quantize_ste(words.i_b, "dIb")
    )


def integer_words(words: NDWords) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dg, dErev, dIb)`` as NumPy integer arrays: the words rounded and clipped to range."""
    q = quantize_words(words)
    return tuple(np.asarray(x).round().astype(int) for x in (q.g, q.e_rev, q.i_b))


def apply_factors(w0: NDWords, theta) -> NDWords:
    """Words ``w0`` moved by the 13 factors ``theta`` (module docstring); not rounded."""
    g = w0.g * jnp.exp(theta[0:3])
    e = w0.e_rev + 40.0 * theta[3:6]
    rate = jnp.exp(theta[6:12].reshape(3, 2, 1) + theta[12])
    return NDWords(g, e, w0.i_b * rate)
