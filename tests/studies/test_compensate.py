"""Compensations: offset, rebalance, inverse words, the retune's loss and its gradient, the shared
(1 + lambda) evolution strategy, and the robust word set."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_grad_matches_fd

from ndjax import studies as S
from ndjax.fit import _search
from ndjax.fit._wordspace import flatten_words, unflatten_words
from ndjax.studies import RobustSettings, _retune, _robust
from studies.common import OFFSETS, STUDY


def test_inverse_words_undo_the_mismatch_factors():
    n = 2
    mm = S.chip_mismatch(STUDY, np.arange(n))
    w = S.broadcast_words(STUDY.words, n)
    inv = S.inverse_words(w, mm)
    np.testing.assert_array_equal(
        np.asarray(inv.g), np.clip(np.round(np.asarray(w.g) / np.asarray(mm.g)), 0, 1023)
    )
    ones = jax.tree.map(jnp.ones_like, mm)
    same = S.inverse_words(w, ones)
    for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(w), strict=True):
        np.testing.assert_array_equal(a, b)
    assert S.word_changes(same, w).tolist() == [0, 0]


def test_rebalance_candidates_ordered_by_change():
    c = S.rebalance_candidates(np.array([1023.0, 307.0, 3.0]), [0.9, 1.0, 1.1])
    np.testing.assert_array_equal(c[0], [1023, 307, 3])  # unchanged first
    changes = np.abs(c - [1023, 307, 3]).sum(axis=1)
    assert np.all(np.diff(changes) >= 0)
    assert c[:, 0].max() == 1023  # clipped at the top of the range
    assert len({tuple(x) for x in c}) == len(c)


def test_offset_compensation_picks_smallest_working_offset(ref):
    mm = S.chip_mismatch(STUDY, np.arange(6))
    off = S.compensate_offset(STUDY, mm, ref, OFFSETS)
    tried = [0.0, -1e-10, 1e-10, 2e-10]  # by |offset|, zero first
    grid = S.responses_grid(STUDY, S.broadcast_words(STUDY.words, 6), mm, tried)
    ok = S.behaves(grid.count, grid.rate, ref.count, ref.rate, 1, 0.05)  # (6, 4)
    np.testing.assert_array_equal(off.behaving, ok.any(axis=1))
    for i in range(6):
        if not ok[i].any():
            assert np.isnan(off.value[i])
        else:
            assert off.value[i] == tried[int(np.argmax(ok[i]))]
            np.testing.assert_array_equal(off.responses.count[i], grid.count[i, int(np.argmax(ok[i]))])


@pytest.mark.slow
def test_rebalance_compensation_picks_smallest_working_change(ref):
    mm = S.chip_mismatch(STUDY, np.arange(4))
    rb = S.compensate_rebalance(STUDY, mm, ref, [0.9, 1.1])
    cands = S.rebalance_candidates(np.asarray(STUDY.words.g), [0.9, 1.1])
    assert rb.value.shape == (4, 3) and rb.responses.count.shape == (4, 2)
    for i in range(4):
        words = dataclasses.replace(STUDY.words, g=jnp.asarray(rb.value[i]))
        one = jax.tree.map(lambda x, i=i: x[i : i + 1], mm)
        r = S.chip_responses(STUDY, S.broadcast_words(words, 1), one)
        np.testing.assert_array_equal(r.count[0], rb.responses.count[i])
        assert bool(S.behaves(r.count, r.rate, ref.count, ref.rate, 1, 0.05)[0]) == rb.behaving[i]
        if not rb.behaving[i]:
            np.testing.assert_array_equal(rb.value[i], cands[0])  # the nominal words where none works


# ---- the (1 + lambda) evolution strategy ---------------------------------------------------------


def test_es_draws_depend_only_on_their_key_path():
    """A run's candidates are the same drawn alone or vmapped with others (chip identity for the
    retune's search), and differ between generations and streams."""
    mean = jnp.arange(13.0) / 10

    @jax.jit
    def batch(chips, g):
        return jax.vmap(lambda c: _search.es_candidates(_search.es_key(5, 0x5EED, c, g), mean, 0.1, 4))(chips)

    many = batch(jnp.arange(6), 2)
    alone = jax.jit(lambda: _search.es_candidates(_search.es_key(5, 0x5EED, 4, 2), mean, 0.1, 4))()
    np.testing.assert_array_equal(many[4], alone)  # bit for bit, both compiled (eager may differ by 1 ulp)
    assert many.shape == (6, 4, 13)
    again = _search.es_candidates(_search.es_key(5, 0x5EED, 4, 3), mean, 0.1, 4)
    assert not np.allclose(alone, again)  # another generation
    assert not np.allclose(alone, _search.es_candidates(_search.es_key(5, 0xC0B, 4, 2), mean, 0.1, 4))
    z = (np.asarray(alone) - np.asarray(mean)) / 0.1  # the step is sigma N(0, 1)
    assert abs(np.mean(z)) < 0.5 and 0.6 < np.std(z) < 1.5  # 52 draws


def test_es_select_prefers_accepted_then_lower_scores():
    scores = np.array([[3.0, 1.0, 1.0], [5.0, 6.0, 7.0], [2.0, 0.5, 9.0]])
    best = np.array([2.0, 4.0, 1.0])
    pick, move = _search.es_select(scores, best)
    assert pick.tolist() == [1, 0, 1] and move.tolist() == [True, False, True]  # ties: the first
    accept = np.array([[False, False, True], [False, True, False], [False, False, False]])
    pick, move = _search.es_select(scores, best, accept)
    # an accepted candidate wins over a lower score, and moves even when it scores worse
    assert pick.tolist() == [2, 1, 1] and move.tolist() == [True, True, True]


# ---- retune ----------------------------------------------------------------------------------------

#: A tiny study for gradients: 2 ms, 41 save points (wide brackets: the crossing samples stay put
#: under a finite-difference step), tight tolerances so that finite differences see the solve's
#: own derivative, not its step-size control.
TINY = dataclasses.replace(STUDY, currents=np.array([5e-10]), ts=np.linspace(0.0, 4e-3, 41), rtol=1e-10,
                           atol=1e-12)  # fmt: skip


@pytest.mark.slow
def test_retune_loss_gradient_is_the_solves_and_straight_through(ref):
    """The straight-through retune loss at integer words (theta = 0) has the value of the unrounded
    loss in the log-factors, and its gradient is the unrounded loss's, through the solve (reverse
    mode), against central differences along a random direction."""
    ref_t = S.nominal_reference(TINY)
    mm = S.chip_mismatch(TINY, np.array([4]))  # chip 4 fires twice there: its rate is defined
    w0 = jax.vmap(flatten_words)(S.broadcast_words(TINY.words, 1))
    fx = _retune.RetuneFixed(w0, mm, jnp.asarray(TINY.currents), jnp.asarray(ref_t.count),
                             jnp.asarray(ref_t.rate), S.fixed(TINY))  # fmt: skip
    one = jax.tree.map(lambda x: x[0], mm)

    def unrounded(theta):
        words = unflatten_words(w0[0] * jnp.exp(theta))
        return _retune.words_loss(words, one, fx.currents, fx.ref_count, fx.ref_rate, fx.kernel)[0]

    theta = jnp.zeros(48)
    (loss, (count, rate)), g = jax.jit(jax.value_and_grad(_retune.retune_loss, has_aux=True))(theta[None], fx)
    assert count.tolist() == [[2]] and rate[0, 0] > 0 and np.abs(np.asarray(g)).max() > 1e-3
    np.testing.assert_allclose(loss, jax.jit(unrounded)(theta), rtol=1e-10)  # two programs: 1e-11 apart
    # central differences of step 1e-5 agree with the adjoint to 1e-6 here (measured 5e-7)
    assert_grad_matches_fd(unrounded, theta, g[0], eps=1e-5, rtol=1e-5, atol=1e-8)


@pytest.mark.slow
def test_retune_words_behave_as_reported(ref):
    """Every stage runs (inverse words, 2 generations, 1 Adam step); a chip reported as behaving
    behaves with the returned words (chunking: test_run.test_chunking_does_not_change_results)."""
    settings = S.RetuneSettings(generations=2, population=2, steps=1)
    index = np.arange(4)
    mm = S.chip_mismatch(STUDY, index)
    rt = S.retune(STUDY, mm, ref, index, settings)
    r = S.chip_responses(STUDY, rt.value, mm)
    np.testing.assert_array_equal(r.count, rt.responses.count)
    np.testing.assert_array_equal(rt.behaving, S.behaves(r.count, r.rate, ref.count, ref.rate, 1, 0.05))
    for leaf in jax.tree.leaves(rt.value):
        np.testing.assert_array_equal(leaf, np.round(leaf))  # integer words


# ---- robust --------------------------------------------------------------------------------------


def test_robust_words_start_from_the_nominal_words(ref):
    """With no generation the robust words are the nominal ones, and the recorded objective is
    minus the fraction of training chips (never study chips) within 10%, plus the capped error term."""
    words, history = S.robust_words(STUDY, ref, RobustSettings(train_chips=3, generations=0))
    for a, b in zip(jax.tree.leaves(words), jax.tree.leaves(STUDY.words), strict=True):
        np.testing.assert_array_equal(a, b)
    mm = S.chip_mismatch(STUDY, S.TRAIN_OFFSET + np.arange(3))
    r = S.chip_responses(STUDY, S.broadcast_words(STUDY.words, 3), mm)
    frac = S.within_rate(r.count, r.rate, ref.rate, 0.1).mean()
    err = np.minimum(np.abs(r.rate - ref.rate) / ref.rate, 1.0).mean()  # the reference fires at both currents
    np.testing.assert_allclose(history, [-frac + 0.1 * err])


def test_robust_word_search_moves_every_kind_of_word(ref):
    """space="words": CMA-ES over all 48 words; candidates are integer words in range, a zero
    weight can grow, and the search is reproducible."""
    thetas = np.zeros((2, 48))
    thetas[1] = 0.5
    cands = _robust.robust_candidates(STUDY.words, thetas, "words")
    for a, b in zip(
        jax.tree.leaves(jax.tree.map(lambda x: x[0], cands)), jax.tree.leaves(STUDY.words), strict=True
    ):
        np.testing.assert_array_equal(a, b)  # theta 0: the nominal words
    moved = jax.tree.map(lambda x: np.asarray(x[1]), cands)
    i_b0 = np.asarray(STUDY.words.i_b)
    assert np.all(moved.i_b[i_b0 == 0] == 6)  # (0 + 10) e^0.5 - 10 = 6.49, rounded
    assert np.all(moved.i_b <= 1023) and moved.g[0] == 1023  # clipped to the range
    np.testing.assert_array_equal(moved.e_rev, np.asarray(STUDY.words.e_rev) + 20)
    settings = RobustSettings(train_chips=2, generations=2, population=3, space="words")
    w1, h1 = S.robust_words(STUDY, ref, settings)
    w2, h2 = S.robust_words(STUDY, ref, settings)
    np.testing.assert_array_equal(h1, h2)
    assert np.all(np.diff(h1) <= 0) and len(h1) == 3
    for a, b in zip(jax.tree.leaves(w1), jax.tree.leaves(w2), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="space"):
        S.robust_words(STUDY, ref, dataclasses.replace(settings, space="word"))


def test_robust_factor_search_can_use_cmaes(ref, monkeypatch):
    """search="cmaes" runs CMA-ES over the 13 factors (search="auto" keeps the (1 + P) strategy
    there); reproducible, progress reported per generation, and an unknown search is refused."""
    made = []

    class Spy(_robust.CMAES):
        def __init__(self, dim, *args, **kwargs):
            made.append(dim)
            super().__init__(dim, *args, **kwargs)

    monkeypatch.setattr(_robust, "CMAES", Spy)
    settings = RobustSettings(train_chips=2, generations=2, population=3)
    seen = []
    w0, h0 = S.robust_words(STUDY, ref, settings, progress=lambda *a: seen.append(a))
    assert made == []  # factors, "auto": the (1 + P) evolution strategy
    assert [s[:2] for s in seen] == [(1, 2), (2, 2)] and [s[2] for s in seen] == list(h0[1:])
    cma = dataclasses.replace(settings, search="cmaes")
    w1, h1 = S.robust_words(STUDY, ref, cma)
    w2, h2 = S.robust_words(STUDY, ref, cma)
    assert made == [13, 13]
    np.testing.assert_array_equal(h1, h2)
    assert np.all(np.diff(h1) <= 0) and len(h1) == 3 and h1[0] == h0[0]
    for a, b in zip(jax.tree.leaves(w1), jax.tree.leaves(w2), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="search"):
        S.robust_words(STUDY, ref, dataclasses.replace(settings, search="cma"))
