"""The fit's objectives: spike times, the verdict, the training problem, score and loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_grad_matches_fd, central_difference
from jax.test_util import check_grads

from ndjax import fit
from ndjax._analysis import crossing_times
from ndjax.fit import _objectives as O
from ndjax.fit import _wordspace as W
from ndjax.fit._simulate_pair import MAX_SPIKES


def test_crossing_times_interpolate_and_differentiate():
    ts = jnp.linspace(0.0, 1.0, 101)
    v = jnp.sin(2 * jnp.pi * 3 * ts)  # upward crossings of 0.5 at 1/36 + k/3
    t, n = crossing_times(ts, v, 0.5, 0.2, 5)
    assert int(n) == 3
    np.testing.assert_allclose(np.asarray(t[:3]), 1 / 36 + np.arange(3) / 3, atol=2e-4)
    np.testing.assert_array_equal(np.asarray(t[3:]), 1.0)  # padding

    def first(shift):
        return crossing_times(ts, v + shift[0], 0.5, 0.2, 5)[0][0]

    g = float(jax.grad(first)(jnp.zeros(1))[0])
    fd = central_difference(lambda s: first(jnp.asarray(s)), [0.0], 0, 1e-4)
    assert g == pytest.approx(fd, rel=1e-6)
    assert g < 0  # raising the voltage brings the crossing earlier


def test_compare_spikes_metrics():
    hh = [np.array([1.0, 11.0, 21.0]), np.array([2.0])]
    same = fit.compare_spikes(hh, hh, [10.0, 0.0])
    assert all(m.passed and m.rate_error == 0 and m.timing_error == 0 for m in same)
    late = fit.compare_spikes(hh, [np.array([1.5, 11.5, 21.5]), np.array([2.0, 30.0])], [10.0, 0.0])
    assert late[0].timing_error == pytest.approx(0.05) and late[0].rate_error == 0
    assert not late[0].passed  # 5% of the ISI is not under 5%
    assert late[1].rate_error == np.inf and not late[1].passed  # repetitive where HH fires once


def _synthetic_data():
    """A problem without solves: "HH" and "chip" are sines on 401 samples of 1 s; the chip matches
    HH's three spikes at the first current, misses one at the second and adds one at the third."""
    ts = jnp.linspace(0.0, 1.0, 401)
    shift, thr, hyst = 0.3, 0.5, 0.2

    def wave(f, phase, amp=1.0):
        return amp * jnp.sin(2 * jnp.pi * f * ts + phase)

    hh = jnp.stack([wave(3.0, 0.0), wave(3.0, 0.0), wave(3.0, 0.0)])
    chip = jnp.stack([wave(3.05, 0.02), wave(3.0, 0.1) * jnp.where(ts > 0.6, 0.45, 1.0),
                      wave(3.9, -0.1)]) + shift  # fmt: skip
    th, nh = jax.vmap(lambda v: crossing_times(ts, v, thr, hyst, MAX_SPIKES))(hh)
    isi = jnp.full(3, 1 / 3.0)
    rh = (nh - 1) / (th[:, 2] - th[:, 0])
    data = O.TrainingData(
        ts, jnp.zeros(3), th, nh, isi, rh, jnp.zeros(4), jnp.asarray(shift), jnp.asarray(thr),
        jnp.asarray(hyst), jnp.asarray(1e-4), jnp.asarray(1e-7), hh, jnp.zeros((3, 401)), jnp.asarray(0.0),
    )  # fmt: skip
    return data, chip


@pytest.mark.slow
def test_trace_loss_gradients_match_finite_differences():
    data, v = _synthetic_data()
    ok = jnp.ones(3, bool)
    tc, nc = O._spikes(v, data)
    assert np.asarray(data.nh).tolist() == [3, 3, 3] and np.asarray(nc).tolist() == [3, 2, 4]
    # matched, missing and extra spikes all contribute; the sines keep every sample away from the
    # threshold by more than check_grads' step (1e-4 V), so no spike appears or vanishes in it
    check_grads(lambda v: O.trace_loss(v, ok, data), (v,), order=1, modes=("fwd", "rev"))


@pytest.fixture(scope="module")
def guide():
    return fit.make_target()


@pytest.mark.slow
def test_loss_gradient_through_the_chip_solve_matches_finite_differences(guide):
    # reverse mode only: diffrax's checkpointed adjoint is a custom_vjp (no JVP); the fit uses
    # reverse mode. Solver rtol 1e-10: its error over check_grads' step (1e-4 LSB) stays far
    # below check_grads' float64 tolerance (1e-5)
    target, words0 = guide
    problem = fit.prepare_problem(target, [10.0], 10.0, 100, rtol=1e-10, atol=1e-13)
    assert int(problem.data.nh[0]) == 1

    def f(w):
        return O.loss(O.with_words(problem.template, w), problem.data)

    assert float(f(words0)) > 0
    # what check_grads does in reverse mode (step 1e-4, tolerance 1e-5), f compiled once
    assert_grad_matches_fd(f, words0, jax.jit(jax.grad(f))(words0), eps=1e-4, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_training_at_the_guide_models_onset_warns(guide):
    target, _ = guide
    with pytest.warns(UserWarning, match=r"7\.5 uA/cm\^2 \(first ISI 1\.9x") as caught:
        fit.prepare_problem(target, [7.5, 7.75], 100.0, 1500)
    assert len(caught) == 1 and "7.75" not in str(caught[0].message)  # 7.75 is past the onset


@pytest.mark.slow
def test_subthreshold_term_adds_the_weighted_rms_voltage_difference_where_hh_rests(guide):
    target, words = guide
    currents = [0.0, 5.0, 10.0]  # the guide's model: one spike, one spike, repetitive
    d0 = fit.prepare_problem(target, currents, 30.0, 600).data
    d7 = fit.prepare_problem(target, currents, 30.0, 600, sub_weight=7.0).data
    ts, nh, th, quiet = (np.asarray(x) for x in (d7.ts, d7.nh, d7.th, d7.quiet))
    assert nh.tolist()[:2] == [1, 1] and nh[2] >= 2
    assert not quiet[2].any()  # repetitive: no subthreshold term
    for row in (0, 1):  # from a quarter of the reference ISI after HH's spike to the end
        on = np.flatnonzero(quiet[row])
        assert on[-1] == len(ts) - 1 and np.all(np.diff(on) == 1)
        assert ts[on[0] - 1] <= th[row, 0] + 0.25 * float(d7.isi[2]) < ts[on[0]]
    chip = target.chip(W.quantize_words(words))
    v = np.asarray(O.chip_spikes(chip, d7)[0])
    dv = (v - float(d7.shift) - np.asarray(d7.vh)) / float(d7.threshold)
    expected = sum(np.sqrt(np.mean(dv[r, quiet[r] > 0] ** 2)) for r in (0, 1))
    gained = float(fit.score(chip, d7) - fit.score(chip, d0))
    assert expected > 1e-3
    assert gained == pytest.approx(7.0 * expected, rel=1e-9)
