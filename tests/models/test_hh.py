"""Hodgkin-Huxley: vector field, kinetics, scaling, SI units, SPEC reference figures."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import crossings
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import hh_rates_ref, hh_reference_params, hh_rhs_ref, solve_reference

import ndjax as nd
from ndjax._math import exprel
from ndjax.models._hh import HH_KINETICS


def test_exprel_exact_at_zero_and_smooth():
    assert float(exprel(0.0)) == 1.0
    assert float(jax.grad(exprel)(0.0)) == 0.5
    for x in (1e-7, 9.99e-7, 1.01e-6, 1e-3, -1e-3, 2.0, -30.0):
        np.testing.assert_allclose(float(exprel(x)), np.expm1(x) / x, rtol=1e-14)
        np.testing.assert_allclose(
            float(jax.grad(exprel)(x)), (np.exp(x) * x - np.expm1(x)) / x**2, rtol=1e-7
        )


def _random_hh(rng):
    kw = dict(
        gna=120 * rng.uniform(0.5, 1.5),
        gk=36 * rng.uniform(0.5, 1.5),
        gl=0.3 * rng.uniform(0.5, 1.5),
        ena=120 + rng.normal(0, 5),
        ek=-12 + rng.normal(0, 2),
        el=10.6 + rng.normal(0, 2),
        c=rng.uniform(0.5, 2.0),
    )
    sv, stt = rng.uniform(0.5, 4.0), rng.uniform(0.3, 3.0)
    return kw, sv, stt


def test_vector_field_matches_independent_numpy():
    rng = np.random.default_rng(1)
    for _ in range(50):
        kw, sv, stt = _random_hh(rng)
        params = nd.hh_params(**kw, scl_v=sv, scl_t=stt)
        ref = hh_reference_params(**kw, sv=sv, st=stt)
        y = np.array([rng.uniform(-40, 140) * sv, *rng.uniform(0, 1, 3)])
        iapp = rng.uniform(-5, 20)
        got = np.asarray(nd.hh_vector_field(0.0, jnp.asarray(y), (params, nd.constant(iapp))))
        want = hh_rhs_ref(0.0, y, ref, lambda t, i=iapp: i)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("gate,index", [("m", 0), ("n", 2)])
def test_activation_singularity_exact_with_finite_gradient(gate, index):
    sv, stt = 3.0, 2.0
    params = nd.hh_params(scl_v=sv, scl_t=stt)
    avh, aa, ak = HH_KINETICS[gate][:3]
    vh = avh * sv
    alpha = lambda v: nd.hh_rates(v, params.gates)[0][index]  # noqa: E731
    assert float(alpha(vh)) == pytest.approx(aa * stt / sv * ak * sv, rel=1e-15)  # limit A K
    g0 = float(jax.grad(alpha)(vh))
    assert np.isfinite(g0)
    # the derivative of A K u/(e^u - 1) at u = 0 is -A K / 2 per unit u, u = (Vh - V)/K
    assert g0 == pytest.approx(aa * stt / sv * 0.5, rel=1e-12)
    ref = hh_reference_params(sv=sv, st=stt)
    for dv in (1e-9, 1e-6, 1e-3, 0.5):
        np.testing.assert_allclose(float(alpha(vh + dv)), hh_rates_ref(vh + dv, ref)[gate][0], rtol=1e-9)


def test_si_units_are_exact_conversions():
    a, b = nd.hh_params(scl_v=3, scl_t=2), nd.hh_params(scl_v=3, scl_t=2, si_units=True)
    np.testing.assert_allclose(b.g, a.g * 1e-3, rtol=1e-15)
    np.testing.assert_allclose(b.e_rev, a.e_rev * 1e-3, rtol=1e-15)
    np.testing.assert_allclose(b.c_m, a.c_m * 1e-6, rtol=1e-15)
    for name in ("a_vh", "a_k", "b_vh", "b_k"):
        np.testing.assert_allclose(getattr(b.gates, name), getattr(a.gates, name) * 1e-3, rtol=1e-15)
    np.testing.assert_allclose(b.gates.b_a, a.gates.b_a * 1e3, rtol=1e-15)
    np.testing.assert_allclose(b.gates.a_a, a.gates.a_a * np.array([1e6, 1e3, 1e6]), rtol=1e-15)
    # rates in 1/s are 1e3 times those in 1/ms at the same voltage
    for v_mv in (-20.0, 0.0, 37.5, 75.0, 140.0):
        ra, rb = nd.hh_rates(v_mv, a.gates), nd.hh_rates(v_mv * 1e-3, b.gates)
        np.testing.assert_allclose(np.asarray(rb), np.asarray(ra) * 1e3, rtol=1e-12)


TS_100 = np.linspace(0.0, 100.0, 20001)


@pytest.fixture(scope="module")
def default_hh_trace():
    tr = nd.simulate(nd.HH, nd.hh_params(), 10.0, jnp.zeros(4), TS_100)
    assert bool(tr.ok)
    return np.asarray(tr.ys)


def test_spec_reference_default_hh(default_hh_trace):
    """SPEC 1: 7 spikes, first at 2.46 ms, later within 0.05 ms of a tight scipy solution."""
    spikes = crossings(TS_100, default_hh_trace[:, 0], 60.0)
    assert len(spikes) == 7
    assert spikes[0] == pytest.approx(2.46, abs=0.02)
    ref = solve_reference(hh_rhs_ref, hh_reference_params(), lambda t: 10.0, np.zeros(4), TS_100)
    ref_spikes = crossings(TS_100, ref[:, 0], 60.0)
    assert len(ref_spikes) == 7
    np.testing.assert_allclose(spikes, ref_spikes, atol=0.05)
    isi = np.diff(spikes)[1:]  # SPEC: then every 14.2 to 14.4 ms (to its rounding)
    assert np.all((isi > 14.15) & (isi < 14.45)), isi


def test_spec_reference_scaled_hh():
    tr = nd.simulate(nd.HH, nd.hh_params(scl_v=3, scl_t=2), 10.0, jnp.zeros(4), TS_100)
    spikes = crossings(TS_100, np.asarray(tr.ys[:, 0]), 180.0)
    assert len(spikes) == 14
    assert spikes[0] == pytest.approx(1.23, abs=0.01)


TS_SCALE = np.linspace(0.0, 20.0, 801)


@settings(max_examples=6, deadline=None)
@given(sv=st.floats(0.5, 4.0), stt=st.floats(0.5, 4.0), i0=st.floats(5.0, 20.0))
def test_scaling_invariance(sv, stt, i0):
    """V_scaled(t / scl_t) = scl_v V(t) for the same applied current I0."""
    tight = dict(stepsize_controller=nd.default_controller(1e-10, 1e-10))
    base = nd.simulate(nd.HH, nd.hh_params(), i0, jnp.zeros(4), TS_SCALE, **tight)
    scaled = nd.simulate(nd.HH, nd.hh_params(scl_v=sv, scl_t=stt), i0, jnp.zeros(4), TS_SCALE / stt, **tight)
    assert bool(base.ok) and bool(scaled.ok)
    np.testing.assert_allclose(np.asarray(scaled.ys[:, 0]) / sv, np.asarray(base.ys[:, 0]), atol=1e-4)
    np.testing.assert_allclose(np.asarray(scaled.ys[:, 1:]), np.asarray(base.ys[:, 1:]), atol=1e-6)


def test_si_trace_equals_classic_trace():
    ts = np.linspace(0.0, 20.0, 401)
    pid, pid_si = nd.default_controller(1e-10, 1e-10), nd.default_controller(1e-10, 1e-13)
    classic = nd.simulate(nd.HH, nd.hh_params(scl_v=3), 10.0, jnp.zeros(4), ts, stepsize_controller=pid)
    si_params = nd.hh_params(scl_v=3, si_units=True)
    si = nd.simulate(nd.HH, si_params, 10e-6, jnp.zeros(4), ts * 1e-3, stepsize_controller=pid_si)
    np.testing.assert_allclose(np.asarray(si.ys[:, 0]) * 1e3, np.asarray(classic.ys[:, 0]), atol=1e-4)
