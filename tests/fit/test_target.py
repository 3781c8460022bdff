"""The HH -> chip mapping: SPEC 3's conversions, time scales, I_voltage, and words files."""

import numpy as np
import pytest

import ndjax as nd
from ndjax import fit


def test_target_mapping_is_the_spec_one():
    target, words = fit.make_target(capacitance_scaling=1.0)
    fnd = nd.FitND(nd.HHModel(scl_v=3, SI_units=True))
    w = fnd.fitHH()
    assert target.scl_t == pytest.approx(fnd.get_scl_t(), rel=1e-12)
    np.testing.assert_allclose(np.round(words.e_rev), fnd.get_digital_E([0.12, -0.012, 0.0106]))
    np.testing.assert_allclose(np.round(words.g), fnd.get_digital_g([0.12, 0.036, 0.0003]))
    np.testing.assert_allclose(
        words.i_b, np.minimum(fnd.get_analog_Ib(w) / (150e-9 / 1024), 1023), rtol=1e-12
    )
    assert target.chip_current(8e-6) == pytest.approx(fnd.convert_I(8e-6), rel=1e-12)


def test_auto_i_voltage_follows_scl_v_within_the_chip_range():
    assert fit.auto_i_voltage(3.0) == pytest.approx(200e-9, rel=1e-12)  # the guide's value at its scale
    assert fit.auto_i_voltage(2.0) == pytest.approx(200e-9 * 2 / 3, rel=1e-12)
    assert fit.auto_i_voltage(0.5) == 50e-9 and fit.auto_i_voltage(9.0) == 400e-9  # the chip's range
    auto, words = fit.make_target(scl_v=2.0)
    fixed, words200 = fit.make_target(scl_v=2.0, i_voltage=200e-9)
    assert auto.i_voltage == pytest.approx(200e-9 * 2 / 3, rel=1e-12) and fixed.i_voltage == 200e-9
    # a smaller reversal LSB: the same voltages take 1.5x the words
    np.testing.assert_allclose(words.e_rev, 1.5 * words200.e_rev, rtol=1e-12)
    with pytest.raises(ValueError, match="i_voltage must be a current in A or 'auto', got 'fast'"):
        fit.make_target(i_voltage="fast")
    with pytest.raises(ValueError, match="'search' gives several targets: make_targets"):
        fit.make_target(i_voltage="search")
    # the search: the scl_v rule and 3/4 of it (within 50-400 nA), for each time scale
    pairs = fit.make_targets(scl_v=2.0)
    assert [t.i_voltage for t, _ in pairs] == pytest.approx([200e-9 * 2 / 3, 100e-9], rel=1e-12)
    np.testing.assert_allclose(pairs[0][1].e_rev, words.e_rev, rtol=1e-12)  # the first is the rule's
    assert [t.i_voltage for t, _ in fit.make_targets(scl_v=1.0)] == pytest.approx([200e-9 / 3, 50e-9])
    assert [t.i_voltage for t, _ in fit.make_targets(i_voltage="auto")] == pytest.approx([200e-9])


def test_conductance_speedup_puts_the_largest_conductance_word_at_full_scale():
    ((target, words),) = fit.make_targets(speedup="conductance", capacitance_scaling=0.03, i_voltage="auto")
    assert float(words.g.max()) == pytest.approx(1023.0, rel=1e-12)
    both = fit.make_targets(speedup="auto", capacitance_scaling=0.03, i_voltage="auto")
    assert len(both) == 2 and both[1][0].scl_t == pytest.approx(target.scl_t, rel=1e-12)
    # a smaller capacitor: the same conductance words on a proportionally faster chip
    ((slower, words_slow),) = fit.make_targets(
        speedup="conductance", capacitance_scaling=0.06, i_voltage="auto"
    )
    assert target.scl_t / slower.scl_t == pytest.approx(2.0, rel=1e-9)
    np.testing.assert_allclose(words.g, words_slow.g, rtol=1e-9)


def test_a_target_saved_in_a_words_file_reads_back_equal(tmp_path):
    target, words = fit.make_target(gk=30.0, scl_v=2.5)
    dg, de, dib = (np.round(np.asarray(w)).astype(int) for w in (words.g, words.e_rev, words.i_b))
    path = tmp_path / "words.json"
    nd.save_words(
        path, dg=dg, dErev=de, dIb=dib, v_ref=target.v_ref, i_voltage=target.i_voltage,
        i_master=target.i_master, i_ref=100e-9, capacitance_scaling=target.capacitance_scaling,
        scl_t=target.scl_t, scl_v=target.scl_v, v_mean=target.v_mean, hh=target.hh,
    )  # fmt: skip
    back = fit.target_from_words(nd.load_words(path))
    assert back == target  # every field, floats through JSON exactly
    assert back.chip_current(1e-6) == target.chip_current(1e-6)
    with pytest.raises(KeyError, match="no hh, V_mean"):
        fit.target_from_words({k: v for k, v in nd.load_words(path).items() if k not in ("hh", "V_mean")})
