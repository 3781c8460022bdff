"""The fit's word space: straight-through quantisation, flattening, integer words."""

import jax
import jax.numpy as jnp
import numpy as np

from ndjax._math import clip_ste, round_ste
from ndjax.fit import _wordspace as W
from ndjax.models._neurodyn import NDWords, quantize_ste


def test_round_ste_forward_rounds_backward_identity():
    x = jnp.asarray([-1.6, -0.4, 0.49, 0.51, 2.5, 1022.7])
    np.testing.assert_array_equal(round_ste(x), jnp.round(x))
    np.testing.assert_array_equal(
        jax.grad(lambda x: jnp.sum(round_ste(x) * jnp.arange(6.0)))(x), np.arange(6.0)
    )


def test_clip_ste_and_quantize_ste_stay_in_range_with_identity_gradient():
    x = jnp.asarray([-5.0, 0.2, 700.6, 1500.0])
    np.testing.assert_array_equal(clip_ste(x, 0.0, 1023.0), [0.0, 0.2, 700.6, 1023.0])
    np.testing.assert_array_equal(quantize_ste(x, "dIb"), [0.0, 0.0, 701.0, 1023.0])
    np.testing.assert_array_equal(quantize_ste(jnp.asarray([-2000.0, 3.4]), "dErev"), [-1023.0, 3.0])
    np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(quantize_ste(x, "dg")))(x), np.ones(4))


def test_flattening_round_trips_and_integer_words_are_in_range():
    words = NDWords(jnp.asarray([1.4, 1030.0, -2.0]), jnp.asarray([-1100.0, 0.6, 3.0]),
                    jnp.arange(42.0).reshape(3, 2, 7) * 30.0)  # fmt: skip
    flat = W.flatten_words(words)
    assert flat.shape == (W.N_WORDS,) == (48,)
    back = W.unflatten_words(flat)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(words), strict=True):
        np.testing.assert_array_equal(a, b)
    dg, de, dib = W.integer_words(words)
    assert dg.tolist() == [1, 1023, 0] and de.tolist() == [-1023, 1, 3] and dib.dtype.kind == "i"
    assert dib.max() == 1023 and np.all((W.WORD_LO <= np.concatenate([dg, de, dib.ravel()]))
                                        & (np.concatenate([dg, de, dib.ravel()]) <= W.WORD_HI))  # fmt: skip
