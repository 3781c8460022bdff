"""The study kernel: the study's checks, chip identity, the kernel against direct solves, segments,
failed solves, and one compilation per block shape."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ndjax
from ndjax import Status
from ndjax import studies as S
from ndjax.studies import _kernel
from studies.common import CHIP, STUDY


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(currents=np.array([0.0, np.nan])), "currents"),
        (dict(ts=np.linspace(0.0, 1e-3, 5)[::-1]), "ts"),
        (dict(sigma=-0.1), "sigma"),
        (dict(words=ndjax.NDWords(jnp.array([1024.0, 307.0, 3.0]), CHIP.words.e_rev, CHIP.words.i_b)), "dg"),
        (dict(words=ndjax.NDWords(CHIP.words.g, CHIP.words.e_rev, CHIP.words.i_b[0])), "dIb"),
        (dict(y0=np.array([0.7, 0.0, 0.0])), "y0"),
        (dict(segments=0), "segments"),
        (dict(threshold=np.inf), "threshold"),
        (dict(centre_sigma=-0.01), "centre_sigma"),
        (dict(kappa_sigma=np.nan), "kappa_sigma"),
    ],
)
def test_study_rejects_bad_input(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(STUDY, **change)


def test_chip_identity_does_not_depend_on_batch():
    one = S.chip_mismatch(STUDY, np.array([7]))
    many = S.chip_mismatch(STUDY, np.arange(10))
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(many), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[0], np.asarray(b)[7])
    other_seed = S.chip_mismatch(dataclasses.replace(STUDY, seed=4), np.array([7]))
    assert not np.allclose(np.asarray(other_seed.g), np.asarray(one.g))


def test_optional_mismatch_sources_add_to_the_same_chips():
    """Centre and kappa mismatch (off by default) keep each chip's SPEC draws and change how it
    fires; the kernel runs either pytree."""
    more = dataclasses.replace(STUDY, centre_sigma=0.015, kappa_sigma=0.05)
    base, extra = S.chip_mismatch(STUDY, np.arange(6)), S.chip_mismatch(more, np.arange(6))
    assert base.centres is None and extra.centres.shape == (6, 3, 2, 7)
    np.testing.assert_array_equal(np.asarray(base.i_b), np.asarray(extra.i_b))
    cur = np.full(6, STUDY.currents[0])
    r0 = S.run_jobs(STUDY, S.broadcast_words(STUDY.words, 6), base, cur)
    r1 = S.run_jobs(more, S.broadcast_words(STUDY.words, 6), extra, cur)
    assert np.all(r0.status == Status.OK) and np.all(r1.status == Status.OK)
    assert not np.allclose(r0.rate, r1.rate)


@pytest.mark.slow
def test_kernel_matches_direct_solves(ref):
    """Counts and rates of the study kernel equal a plain simulate + spike_times per chip."""
    idx = np.arange(4)
    mm = S.chip_mismatch(STUDY, idx)
    r = S.chip_responses(STUDY, S.broadcast_words(STUDY.words, 4), mm)
    grid = S.responses_grid(STUDY, S.broadcast_words(STUDY.words, 4), mm)
    for a, b in zip(r, grid, strict=True):
        np.testing.assert_array_equal(a, b[:, 0])  # the grid with no offset is the same jobs
    for i in idx:
        chip = dataclasses.replace(CHIP, mismatch=jax.tree.map(lambda x, i=i: x[i], mm))
        for j, cur in enumerate(STUDY.currents):
            pid = ndjax.default_controller(STUDY.rtol, STUDY.atol)
            tr = ndjax.simulate(ndjax.NEURODYN, ndjax.chip_params(chip), float(cur), STUDY.y0, STUDY.ts,
                                stepsize_controller=pid)  # fmt: skip
            t = ndjax.spike_times(STUDY.ts, np.asarray(tr.ys[:, 0]), 0.9, 0.05)
            assert r.count[i, j] == len(t)
            want = (len(t) - 1) / (t[-1] - t[0]) if len(t) >= 2 else 0.0
            np.testing.assert_allclose(r.rate[i, j], want, rtol=1e-9)  # interpolation in both
    assert np.all(r.status == Status.OK)
    # the nominal reference is the unperturbed chip: 2 spikes at 0 nA in 5 ms
    assert ref.count[0] == 2


@pytest.mark.slow
def test_segmented_runs_agree_with_one_solve():
    """Segments (regrouped by cost between them) restart the step control from the saved state:
    same spike counts, rates within the tolerance's reach, and the same failure reporting."""
    mm = S.repeat_tree(S.chip_mismatch(STUDY, np.arange(6)), 2)
    words = S.repeat_tree(S.broadcast_words(STUDY.words, 6), 2)
    cur = np.tile(STUDY.currents, 6)
    one = S.run_jobs(STUDY, words, mm, cur, block=4)
    seg = S.run_jobs(dataclasses.replace(STUDY, segments=3), words, mm, cur, block=4)
    np.testing.assert_array_equal(seg.count, one.count)
    np.testing.assert_allclose(seg.rate, one.rate, rtol=1e-3)  # rtol 1e-4 solves, restarted twice
    assert np.all(seg.status == Status.OK) and np.all(seg.steps > 0)
    capped = S.run_jobs(dataclasses.replace(STUDY, segments=3, max_steps=5), words, mm, cur, block=4)
    assert np.all(capped.status == Status.MAX_STEPS) and np.all(capped.count == -1)


def test_failed_solve_is_reported_not_counted():
    mm = S.chip_mismatch(STUDY, np.arange(2))
    short = dataclasses.replace(STUDY, max_steps=5)
    r = S.chip_responses(short, S.broadcast_words(STUDY.words, 2), mm)
    assert np.all(r.status == Status.MAX_STEPS)
    assert np.all(r.count == -1) and np.all(np.isnan(r.rate))
    assert not S.behaves(r.count, r.rate, [3, 3], [1.0, 1.0], 1, 0.05).any()


@pytest.mark.slow
def test_kernel_compiles_once_per_block_shape(monkeypatch):
    """Two blocks of the same shape, with other chips, currents, spike levels and tolerances, trace
    the per-job function once: the shared values are traced leaves of one ``Fixed`` pytree, not
    static arguments (only ``max_steps`` is)."""
    traces = []
    real = _kernel._one_response

    def counted(*args):
        traces.append(1)
        return real(*args)

    monkeypatch.setattr(_kernel, "_one_response", counted)
    other = dataclasses.replace(STUDY, threshold=0.88, hysteresis=0.04, rtol=2e-4, atol=2e-7)
    words = S.broadcast_words(STUDY.words, 3)  # 3 jobs, block 3: a shape no other test uses
    first = S.run_jobs(STUDY, words, S.chip_mismatch(STUDY, np.arange(3)), [0.0, 1e-10, 2e-10], block=3)
    second = S.run_jobs(other, words, S.chip_mismatch(STUDY, np.arange(3, 6)), [5e-10, 0.0, 0.0], block=3)
    assert len(traces) == 1
    assert not np.array_equal(first.rate, second.rate)  # the second call did compute other jobs
    S.run_jobs(dataclasses.replace(STUDY, max_steps=123), words, S.chip_mismatch(STUDY, np.arange(3)),
               [0.0, 0.0, 0.0], block=3)  # fmt: skip
    assert len(traces) == 2  # max_steps is static: a new value is a new compilation


def test_cost_sorted_map_returns_input_order():
    xs = (jnp.arange(7.0), jnp.arange(7.0) * 10)
    out = S.cost_sorted_map(_add, xs, cost=np.array([5, 1, 4, 1, 0, 9, 2]), batch_size=3)
    np.testing.assert_array_equal(out, np.arange(7.0) * 11)


def _add(x):
    return x[0] + x[1]


def test_a_chip_with_a_factor_below_zero_is_flagged_not_judged():
    """At sigma 0.5 most chips draw a factor <= 0: they come back Status.UNPHYSICAL with count -1
    and rate NaN, the others as their solve gave (the STUDY's shapes: compiled once)."""
    from ndjax.models import physical_mismatch

    wide = dataclasses.replace(STUDY, sigma=0.5)
    mm = S.chip_mismatch(wide, np.array([1, 2]))
    physical = np.asarray(physical_mismatch(jax.tree.map(np.asarray, mm)))
    assert physical.tolist() == [False, True]  # seed 3: chip 1 unphysical, chip 2 not
    r = S.chip_responses(wide, S.broadcast_words(STUDY.words, 2), mm)
    assert (
        np.all(r.status[0] == Status.UNPHYSICAL) and np.all(r.count[0] == -1) and np.all(np.isnan(r.rate[0]))
    )
    assert np.all(r.status[1] != Status.UNPHYSICAL)
    assert not S.behaves(r.count, r.rate, [2, 5], [549.3, 1043.5], 1, 0.05)[0]
