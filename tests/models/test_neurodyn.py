"""NeuroDyn: conversions, vector field, SPEC reference spikes, mismatch."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import nd_rates_ref, nd_reference_params, nd_rhs_ref

import ndjax as nd
from ndjax.models._neurodyn import DEFAULT_DEREV, DEFAULT_DG, DEFAULT_DIB, RATE_SIGNS


def test_word_conversions_exact():
    chip = nd.nd_chip(
        [1023, 512, 1],
        [1023, -1023, 0],
        np.full((3, 2, 7), 7),
        i_voltage=200e-9,
        i_master=150e-9,
        v_ref=0.8,
        capacitance_scaling=0.5,
    )
    p = nd.chip_params(chip)
    np.testing.assert_allclose(p.g, np.array([1023, 512, 1]) * (0.2 / 0.026) * (150e-9 / 1024), rtol=1e-15)
    np.testing.assert_allclose(
        p.e_rev, np.array([1023, -1023, 0]) * (200e-9 / 1024) * 1.63e6 + 0.8, rtol=1e-15
    )
    np.testing.assert_allclose(p.i_b, np.full((3, 2, 7), 7 * 150e-9 / 1024), rtol=1e-15)
    assert float(p.c_m) == pytest.approx(2e-12, rel=1e-15)
    np.testing.assert_array_equal(np.asarray(p.exponents), [3.0, 1.0, 4.0])


def test_sigmoid_centres():
    chip = nd.nd_chip()
    vb = np.asarray(nd.sigmoid_centres(chip.biases, chip.consts))
    assert vb[3] == pytest.approx(0.9, abs=1e-15)
    np.testing.assert_allclose(np.diff(vb), 2 * 1.85e6 * 150e-9 / 7, rtol=1e-12)
    assert np.diff(vb)[0] == pytest.approx(0.0793, abs=5e-5)  # SPEC: 79.3 mV apart


def test_analog_values_equal_the_digital_chip():
    """digital_values=False takes physical values; the same values give the same params."""
    dig = nd.chip_params(nd.nd_chip())
    ana = nd.chip_params(
        nd.nd_chip(np.asarray(dig.g), np.asarray(dig.e_rev) - 0.9, np.asarray(dig.i_b), digital=False)
    )
    for a, b in zip(jax.tree.leaves(dig), jax.tree.leaves(ana), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-15)


def _random_mismatch(rng):
    return {
        "g": rng.uniform(0.7, 1.3, 3),
        "e": rng.uniform(0.7, 1.3, 3),
        "ib": rng.uniform(0.7, 1.3, (3, 2, 7)),
        "x": rng.normal(0, 0.2, 3),
    }


def test_vector_field_matches_independent_numpy():
    rng = np.random.default_rng(2)
    for _ in range(40):
        dg, de = rng.integers(0, 1024, 3), rng.integers(-1023, 1024, 3)
        dib = rng.integers(0, 1024, (3, 2, 7))
        bias = dict(
            v_ref=rng.uniform(0.5, 1.3),
            i_voltage=rng.uniform(50e-9, 400e-9),
            i_master=rng.uniform(50e-9, 400e-9),
            capacitance_scaling=rng.uniform(0.1, 2),
        )
        mm = _random_mismatch(rng)
        mismatch = nd.Mismatch(
            jnp.asarray(mm["g"]), jnp.asarray(mm["e"]), jnp.asarray(mm["ib"]), jnp.asarray(mm["x"])
        )
        chip = nd.nd_chip(dg, de, dib, **bias, mismatch=mismatch)
        ref = nd_reference_params(
            dg, de, dib, bias["v_ref"], bias["i_voltage"], bias["i_master"], bias["capacitance_scaling"], mm
        )
        y = np.array([bias["v_ref"] + rng.uniform(-0.4, 0.4), *rng.uniform(0, 1, 3)])
        iapp = rng.uniform(-1e-9, 1e-9)
        got = np.asarray(nd.nd_vector_field(0.0, jnp.asarray(y), (nd.chip_params(chip), nd.constant(iapp))))
        want = nd_rhs_ref(0.0, y, ref, lambda t, i=iapp: i)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
        alpha, beta = nd.nd_rates(y[0], nd.chip_params(chip))
        np.testing.assert_allclose(np.stack([alpha, beta], 1), nd_rates_ref(y[0], ref), rtol=1e-12)


TS_20 = np.linspace(0.0, 0.02, 8001)
Y0_ND = np.array([0.7, 0.0, 0.0, 0.0])


def test_spec_reference_default_words():
    """SPEC 2: 11 small spikes, peaks near 0.95 V (never 1.0 V), first at 1.65 ms, then every 1.82 ms."""
    tr = nd.simulate(nd.NEURODYN, nd.chip_params(nd.nd_chip()), 0.0, Y0_ND, TS_20)
    assert bool(tr.ok)
    v = np.asarray(tr.ys[:, 0])
    peaks = np.flatnonzero((v[1:-1] > v[:-2]) & (v[1:-1] >= v[2:]) & (v[1:-1] > 0.9)) + 1
    assert len(peaks) == 11
    assert int(nd.count_spikes(v, 0.9, 0.05)) == 11
    assert v.max() < 1.0
    np.testing.assert_allclose(v[peaks], 0.95, atol=0.02)
    t_peaks = TS_20[peaks] * 1e3
    assert t_peaks[0] == pytest.approx(1.65, abs=0.01)
    np.testing.assert_allclose(np.diff(t_peaks), 1.82, atol=0.01)


def test_mismatch_same_key_same_chip_and_statistics():
    a, b = nd.sample_mismatch(jax.random.key(7)), nd.sample_mismatch(jax.random.key(7))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    c = nd.sample_mismatch(jax.random.key(8))
    assert not np.allclose(a.i_b, c.i_b)
    many = jax.vmap(lambda k: nd.sample_mismatch(k, 0.15))(jax.random.split(jax.random.key(0), 4000))
    assert float(jnp.std(many.i_b)) == pytest.approx(0.15, rel=0.02)
    assert float(jnp.mean(many.g)) == pytest.approx(1.0, abs=0.01)
    np.testing.assert_allclose(jnp.std(many.exponents, axis=0), [0.2, 0.1, 0.2], rtol=0.05)
    zero = nd.sample_mismatch(jax.random.key(1), 0.0, exponent_sigma=0.0)
    for x, y in zip(jax.tree.leaves(zero), jax.tree.leaves(nd.nominal_mismatch()), strict=True):
        np.testing.assert_array_equal(x, y)


def test_new_words_keep_the_mismatch():
    mm = nd.sample_mismatch(jax.random.key(3))
    chip = nd.nd_chip(mismatch=mm)
    new = dataclasses.replace(
        chip, words=dataclasses.replace(chip.words, g=jnp.asarray([1000.0, 300.0, 5.0]))
    )
    p = nd.chip_params(new)
    ref = nd.chip_params(nd.nd_chip(dg=[1000, 300, 5]))
    np.testing.assert_allclose(p.g, ref.g * mm.g, rtol=1e-15)
    np.testing.assert_allclose(p.i_b, ref.i_b * mm.i_b, rtol=1e-15)
    np.testing.assert_allclose(p.e_rev - 0.9, (ref.e_rev - 0.9) * mm.e_rev, rtol=1e-14)


def test_default_words_are_spec():
    chip = nd.nd_chip()
    np.testing.assert_array_equal(chip.words.g, DEFAULT_DG)
    np.testing.assert_array_equal(chip.words.e_rev, DEFAULT_DEREV)
    np.testing.assert_array_equal(chip.words.i_b, DEFAULT_DIB)


def test_optional_centre_and_kappa_mismatch():
    """Beyond SPEC 2 (off by default): per-sigmoid centre offsets and kappa factors. Turning them on
    keeps the key's SPEC draws; the rates equal an independent per-sigmoid NumPy sum; zero offsets
    and unit factors give the shared-ladder rates exactly."""
    key = jax.random.key(11)
    base = nd.sample_mismatch(key)
    assert base.centres is None and base.kappa is None
    more = nd.sample_mismatch(key, centre_sigma=0.015, kappa_sigma=0.05)
    for name in ("g", "e_rev", "i_b", "exponents"):
        np.testing.assert_array_equal(getattr(more, name), getattr(base, name))
    assert more.centres.shape == more.kappa.shape == (3, 2, 7)
    many = jax.vmap(lambda k: nd.sample_mismatch(k, centre_sigma=0.015, kappa_sigma=0.05))(
        jax.random.split(jax.random.key(0), 2000)
    )
    assert float(jnp.std(many.centres)) == pytest.approx(0.015, rel=0.03)
    assert float(jnp.std(many.kappa)) == pytest.approx(0.05, rel=0.03)
    assert float(jnp.mean(many.kappa)) == pytest.approx(1.0, abs=0.002)
    with pytest.raises(ValueError, match="centre_sigma"):
        nd.sample_mismatch(key, centre_sigma=-0.01)

    chip = nd.nd_chip(mismatch=more)
    p = nd.chip_params(chip)
    v = 0.93
    centres = np.asarray(nd.sigmoid_centres(chip.biases, chip.consts))[None, None, :] + np.asarray(
        more.centres
    )
    kappa = 0.7 * np.asarray(more.kappa)
    signs = np.asarray(RATE_SIGNS)[:, :, None]
    i_b = np.asarray(p.i_b)
    want = np.sum(i_b / (1 + np.exp(signs * kappa * (centres - v) / 0.026)), axis=-1) / (5e-12 * 0.026)
    alpha, beta = nd.nd_rates(v, p)
    np.testing.assert_allclose(np.stack([alpha, beta], 1), want, rtol=1e-12)

    flat = dataclasses.replace(base, centres=jnp.zeros((3, 2, 7)), kappa=jnp.ones((3, 2, 7)))
    got = nd.nd_rates(v, nd.chip_params(nd.nd_chip(mismatch=flat)))
    ref = nd.nd_rates(v, nd.chip_params(nd.nd_chip(mismatch=base)))
    np.testing.assert_allclose(np.stack(got), np.stack(ref), rtol=1e-13)
