"""Spike maths (ndjax._analysis): crossing interpolation, first/last crossings, the firing rate and
its gradient, and the verdicts "within rate" and "behaves"."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ndjax import _analysis as A


def test_crossing_time_is_exact_on_a_linear_ramp():
    """On v = 2 t - 1 sampled every 0.1, the crossing of 0.37 is at t = 0.685 exactly (to rounding)."""
    ts = jnp.linspace(0.0, 1.0, 11)
    v = 2.0 * ts - 1.0
    idx = int(np.argmax(np.asarray(v) >= 0.37))  # the first sample at or above: 7 (v = 0.4)
    assert idx == 7
    np.testing.assert_allclose(A.crossing_time(ts, v, idx, 0.37), 0.685, rtol=1e-14)
    # vectorised over indices, and the same formula inside crossing_times
    np.testing.assert_allclose(A.crossing_time(ts, v, jnp.array([7, 7]), 0.37), [0.685, 0.685], rtol=1e-14)
    times, count = A.crossing_times(ts, v, 0.37, 0.1, 3)
    assert int(count) == 1 and float(times[0]) == pytest.approx(0.685, rel=1e-14)
    assert np.all(np.asarray(times[1:]) == 1.0)  # padding: ts[-1]


def test_crossing_time_guards_a_flat_bracket():
    """Where v does not rise over the bracket the time stays inside it, finite, with a finite gradient."""
    ts, v = jnp.array([0.0, 1.0, 2.0]), jnp.array([0.0, 1.0, 1.0])
    assert float(A.crossing_time(ts, v, 2, 0.5)) == 1.0  # gap taken as 1, fraction clipped to 0
    g = jax.grad(lambda v: A.crossing_time(ts, v, 2, 0.5))(v)
    assert np.all(np.isfinite(np.asarray(g)))


def _train(n_spikes, period=20, length=120, start=10):
    """A hand-made trace: 0 V at rest, one-sample spikes of 1 V every ``period`` samples."""
    v = np.zeros(length)
    for k in range(n_spikes):
        v[start + k * period] = 1.0
    return v


def test_firing_rate_of_a_hand_made_train():
    """Spikes at samples 10, 30, 50, 70 of a 1 ms grid, crossing 0.5 halfway up: crossings at 9.5, 29.5,
    49.5, 69.5 ms; 3 intervals over 60 ms is 50 Hz, whatever the window around them."""
    ts = jnp.arange(120) * 1e-3
    v = jnp.asarray(_train(4))
    mask = A.spike_mask(v, 0.5, 0.2)
    t0, t1 = A.first_last_crossings(ts, v, mask, 0.5)
    np.testing.assert_allclose([t0, t1], [9.5e-3, 69.5e-3], rtol=1e-12)
    count, rate = A.count_and_rate(ts, v, 0.5, 0.2)
    assert int(count) == 4
    np.testing.assert_allclose(rate, 50.0, rtol=1e-12)
    np.testing.assert_allclose(A.firing_rate(4, t0, t1), 50.0, rtol=1e-12)
    # below two spikes there is no rate: 0, not inf or NaN
    for n in (0, 1):
        assert float(A.count_and_rate(ts, jnp.asarray(_train(n)), 0.5, 0.2)[1]) == 0.0
    rates = A.firing_rate(jnp.array([0, 1, 2]), jnp.zeros(3), jnp.array([0.0, 0.0, 0.5]))
    np.testing.assert_array_equal(rates, [0.0, 0.0, 2.0])


def test_rate_gradient_is_finite_without_spikes_and_right_with_them():
    """The rate is differentiable in the sampled voltage; below two spikes it is 0 with a zero
    gradient (not NaN, which would poison an optimiser's state for every chip of a batch)."""
    ts = jnp.linspace(0.0, 1e-3, 101)

    @jax.jit
    def rate(v):
        return A.count_and_rate(ts, v, 0.9, 0.05)[1]

    flat = jnp.full(101, 0.7)
    one = flat.at[40].set(1.0)
    two = one.at[60].set(0.95).at[61].set(0.95)
    for v in (flat, one):
        g = jax.grad(rate)(v)
        assert float(rate(v)) == 0.0 and np.all(np.asarray(g) == 0.0)
    g = np.asarray(jax.grad(rate)(two))
    assert np.all(np.isfinite(g)) and np.count_nonzero(g) > 0
    # the samples bracketing the crossings move the rate; central differences agree (a smooth
    # rational function of the samples there)
    check_grads(rate, (two,), order=1, modes=("fwd", "rev"), eps=1e-6, atol=1e-6, rtol=1e-6)


REF_COUNT, REF_RATE = np.array([0, 1, 10]), np.array([0.0, 0.0, 100.0])


@pytest.mark.parametrize(
    "count, rate, want",
    [
        ([0, 1, 10], [0.0, 0.0, 104.9], True),  # within 5% and 1 spike
        ([1, 0, 11], [0.0, 0.0, 95.1], True),  # one spike more or less, still not repetitive
        ([0, 1, 10], [0.0, 0.0, 105.1], False),  # rate 5.1% too high
        ([0, 1, 10], [0.0, 0.0, 94.0], False),
        ([0, 2, 10], [0.0, 50.0, 100.0], False),  # a second spike where the reference fires once
        ([0, 1, 12], [0.0, 0.0, 100.0], False),  # two spikes too many
        ([-1, 1, 10], [np.nan, 0.0, 100.0], False),  # a failed solve never behaves
    ],
)
def test_behaves_edge_cases(count, rate, want):
    assert bool(A.behaves(np.array(count), np.array(rate), REF_COUNT, REF_RATE, 1, 0.05)) is want


def test_behaves_and_within_rate_reduce_the_last_axis():
    count = np.array([[[0, 1, 10], [0, 1, 13]], [[0, 2, 10], [-1, 1, 10]]])  # (2, 2, 3)
    rate = np.array([[[0, 0, 100.0], [0, 0, 108.0]], [[0, 40.0, 100], [np.nan, 0, 100]]])
    assert A.behaves(count, rate, REF_COUNT, REF_RATE, 1, 0.05).tolist() == [[True, False], [False, False]]
    # within 10%, any count: the 13-spike train at 108 Hz is; repetitive firing and a failed solve are not
    assert A.within_rate(count, rate, REF_RATE, 0.10).tolist() == [[True, True], [False, False]]
