"""Gate kinetics and vector fields: gradients against finite differences, golden traces, the ladder."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import ndjax as nd
from ndjax.fit._classical import fit_centres, host_constants
from ndjax.models._kinetics import (
    gate_derivative,
    ladder_centres,
    sigmoid_basis,
    sigmoid_ladder,
    sigmoid_sum,
    steady_state,
    time_constant,
)

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"


# ---- gradients (jax.test_util.check_grads: forward and reverse mode against finite differences) ---


@pytest.mark.parametrize("v", [-5.0, 0.0, 10.0, 25.0, 60.0])  # 10 and 25: the activation alphas' 0/0
def test_hh_rates_have_the_gradient_of_their_values(v):
    gates = nd.hh_gate_kinetics()
    with jax.numpy_dtype_promotion("strict"):
        check_grads(lambda x: jnp.concatenate(nd.hh_rates(x, gates)), (jnp.asarray(v),), order=1,
                    modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)  # fmt: skip


@pytest.mark.parametrize("v", [0.6, 0.8, 0.95, 1.1])
def test_nd_rates_have_the_gradient_of_their_values(v):
    params = nd.chip_params(nd.nd_chip())
    # rates ~1e5-1e6 1/s varying on V_T = 26 mV: a 1e-7 V step keeps both the truncation and the
    # rounding error of the central difference below 1e-8 relative
    check_grads(lambda x: jnp.concatenate(nd.nd_rates(x, params)), (jnp.asarray(v),), order=1,
                modes=("fwd", "rev"), atol=1e-6, rtol=1e-6, eps=1e-7)  # fmt: skip


@pytest.mark.slow
def test_vector_fields_have_the_gradient_of_their_values_in_state_and_parameters():
    hh = nd.hh_params()
    y_hh = jnp.array([12.0, 0.3, 0.5, 0.4])

    def f_hh(y, g):
        return nd.hh_vector_field(0.0, y, (_with_g(hh, g), nd.constant(5.0)))

    check_grads(f_hh, (y_hh, hh.g), order=1, modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)
    chip = nd.nd_chip()
    y_nd = jnp.array([0.85, 0.2, 0.6, 0.3])

    def f_nd(y, g_words):
        c = _with_words(chip, g_words)
        return nd.nd_vector_field(0.0, y, (nd.chip_params(c), nd.constant(1e-10)))

    # the chip's dV/dt is ~1e4 V/s: compare relative to it
    check_grads(f_nd, (y_nd, chip.words.g), order=1, modes=("fwd", "rev"), atol=1e-3, rtol=1e-5)


def _with_g(params, g):
    import dataclasses

    return dataclasses.replace(params, g=g)


def _with_words(chip, g_words):
    import dataclasses

    return dataclasses.replace(chip, words=dataclasses.replace(chip.words, g=g_words))


# ---- golden traces (tests/data/make_golden.py: Dopri8 at rtol 1e-12) ---------------------------


@pytest.mark.parametrize(
    "name, model, params, stim",
    [
        ("hh_default_10uA", nd.HH, lambda: nd.hh_params(), 10.0),
        ("nd_default_0nA", nd.NEURODYN, lambda: nd.chip_params(nd.nd_chip()), 0.0),
    ],
)
def test_default_solver_reproduces_the_golden_traces(name, model, params, stim):
    with np.load(DATA / f"{name}.npz") as f:
        ts, ys = f["ts"], f["ys"]
    tr = nd.simulate(model, params(), stim, jnp.asarray(ys[0]), jnp.asarray(ts))
    assert bool(tr.ok)
    # the default rtol is 1e-6: allow ten times that of the voltage's range (measured: HH 9e-5 mV of
    # a 93 mV range, the chip 2e-7 V of 0.24 V) and ten times it on the gates (measured 1e-6)
    rtol = 1e-6
    np.testing.assert_allclose(np.asarray(tr.ys[:, 0]), ys[:, 0], rtol=0, atol=10 * rtol * np.ptp(ys[:, 0]))
    np.testing.assert_allclose(np.asarray(tr.ys[:, 1:]), ys[:, 1:], rtol=0, atol=10 * rtol)


# ---- the sigmoid ladder ---------------------------------------------------------------------------


def test_ladder_is_the_chips_and_the_fits_centres():
    chip = nd.nd_chip()
    c = host_constants()
    np.testing.assert_array_equal(
        np.asarray(nd.sigmoid_centres(chip.biases, chip.consts)),
        np.asarray(ladder_centres(0.9, 150e-9, 1.85e6)),
    )
    # the classical fit's centres: the same ladder around V_mean, on the host in float64
    want = 0.2 + (np.arange(7) - 3) * 2 * 1.85e6 * 200e-9 / 7
    np.testing.assert_allclose(fit_centres(0.2, 200e-9, c), want, rtol=0, atol=1e-15)
    assert fit_centres(0.2, 200e-9, c)[3] == 0.2  # centred exactly


def test_ladder_limits_and_symmetry():
    v = jnp.linspace(-0.5, 1.5, 9)
    up = sigmoid_ladder(v[:, None], jnp.array([[0.5]]), 1.0, 0.7, 0.026)
    down = sigmoid_ladder(v[:, None], jnp.array([[0.5]]), -1.0, 0.7, 0.026)
    np.testing.assert_allclose(np.asarray(up + down), 1.0, rtol=1e-15)  # s and -s sum to one
    assert float(up[0, 0]) < 1e-10 and float(up[-1, 0]) > 1 - 1e-10
    assert float(sigmoid_ladder(0.5, 0.5, 1.0, 0.7, 0.026)) == 0.5  # half at its centre


def test_sigmoid_sum_is_the_basis_times_the_weights_and_matches_the_chip_rates():
    chip = nd.nd_chip()
    p = nd.chip_params(chip)
    v = jnp.linspace(0.5, 1.3, 17)
    alpha, _ = jax.vmap(nd.nd_rates, in_axes=(0, None))(v, p)
    # the chip's m-alpha: sigmoid currents (A) over C_g V_T, rising with V
    want = sigmoid_sum(v, p.i_b[0, 0], p.v_b, 1.0, p.kappa, p.v_t) / (p.c_g * p.v_t)
    np.testing.assert_allclose(np.asarray(alpha[:, 0]), np.asarray(want), rtol=1e-13)
    basis = sigmoid_basis(v, p.v_b, 1.0, p.kappa, p.v_t)
    assert basis.shape == (17, 7)
    via_basis = np.asarray(basis @ p.i_b[0, 0])
    np.testing.assert_allclose(via_basis, np.asarray(want) * p.c_g * p.v_t, rtol=1e-13)


def test_steady_state_and_time_constant():
    a, b = jnp.array([1.0, 3.0]), jnp.array([3.0, 1.0])
    np.testing.assert_allclose(np.asarray(steady_state(a, b)), [0.25, 0.75])
    np.testing.assert_allclose(np.asarray(time_constant(a, b)), [0.25, 0.25])
    x_inf = steady_state(a, b)  # the gate ODE is at rest there
    np.testing.assert_allclose(np.asarray(gate_derivative(x_inf, a, b)), 0.0, atol=1e-15)
