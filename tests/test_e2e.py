"""End-to-end fit: straight-through quantisation, differentiable spike times, the fit itself."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import central_difference

import ndjax as nd
from ndjax._analysis import crossing_times
from ndjax._math import clip_ste, round_ste
from ndjax.fit import _e2e as E
from ndjax.fit import _wordspace as W
from ndjax.fit._settings import CalibrateSettings, FitSettings, GradientSettings, PolishSettings
from ndjax.models._neurodyn import quantize_ste


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
    same = E.compare_spikes(hh, hh, [10.0, 0.0])
    assert all(m.passed and m.rate_error == 0 and m.timing_error == 0 for m in same)
    late = E.compare_spikes(hh, [np.array([1.5, 11.5, 21.5]), np.array([2.0, 30.0])], [10.0, 0.0])
    assert late[0].timing_error == pytest.approx(0.05) and late[0].rate_error == 0
    assert not late[0].passed  # 5% of the ISI is not under 5%
    assert late[1].rate_error == np.inf and not late[1].passed  # repetitive where HH fires once


def test_target_mapping_is_the_spec_one():
    target, words = E.make_target(capacitance_scaling=1.0)
    fit = nd.FitND(nd.HHModel(scl_v=3, SI_units=True))
    w = fit.fitHH()
    assert target.scl_t == pytest.approx(fit.get_scl_t(), rel=1e-12)
    np.testing.assert_allclose(np.round(words.e_rev), fit.get_digital_E([0.12, -0.012, 0.0106]))
    np.testing.assert_allclose(np.round(words.g), fit.get_digital_g([0.12, 0.036, 0.0003]))
    np.testing.assert_allclose(
        words.i_b, np.minimum(fit.get_analog_Ib(w) / (150e-9 / 1024), 1023), rtol=1e-12
    )
    assert target.chip_current(8e-6) == pytest.approx(fit.convert_I(8e-6), rel=1e-12)


@pytest.mark.slow
def test_short_fit_lowers_its_objective_and_returns_words_in_range():
    target, words0 = E.make_target()
    # retry_above 0: the whole fit runs again with the next seed and the better one is kept
    # es_extend_above 0: the calibration goes on by 2 generations while that gains 5%, to 8 at most
    settings = FitSettings(
        n_save=800, retry_above=0.0, retries=1,
        calibrate=CalibrateSettings(generations=4, population=8, extend=2, extend_above=0.0, extend_max=1.0),
        gradient=GradientSettings(steps=3), polish=PolishSettings(sweeps=2),
    )  # fmt: skip
    out = E.fit_words(target, words0, [0.0, 10.0, 20.0], t_hh_ms=40.0, settings=settings, progress=None)
    es = out.history["es"]
    assert len(es) - 1 in (6, 8)
    assert (es[6] > 0.95 * es[4]) == (len(es) - 1 == 6)  # stopped after an extension that gained < 5%
    (seed0, score0), (seed1, score1) = out.history["attempts"]
    assert (seed0, seed1) == (0, 1) and score0 != score1  # another seed, another fit
    assert out.history["polish"][-1] == min(score0, score1)
    assert out.history["es"][-1] < out.history["es"][0]
    assert out.history["polish"][-1] <= out.history["es"][-1]
    assert all(np.isfinite(out.history["grad"]))
    dg, de, dib = out.words
    assert dg.shape == (3,) and de.shape == (3,) and dib.shape == (3, 2, 7)
    assert dg.dtype.kind == "i" and dg.min() >= 0 and dg.max() <= 1023
    assert de.min() >= -1023 and de.max() <= 1023 and dib.min() >= 0 and dib.max() <= 1023
    # the returned words are a chip ndjax accepts, and the NNLS-rounded words are kept beside them
    nd.NeuroDynModel(dg, de, dib, 0.9, target.i_voltage, target.i_master,
                     capacitance_scaling=target.capacitance_scaling)  # fmt: skip
    assert len(out.nnls_words) == 3


def test_compat_fit_end_to_end_maps_the_guides_objects_onto_the_fit():
    from ndjax.compat import FitND, HHModel

    # a model that is not the default, on its own time scale: the fit's target is the same model in
    # classic units at scl_t 1, with FitND's biases; no stage runs, so the NNLS words come back rounded
    hh = HHModel(gna=132, scl_v=2.5, scl_t=2.0, SI_units=True)
    out = FitND(hh, I_voltage=150e-9).fit_end_to_end(
        [0.0, 10.0, 20.0], t_hh_ms=40.0, progress=None,
        settings=FitSettings(n_save=800, retries=0, calibrate=CalibrateSettings(generations=0),
                             gradient=GradientSettings(steps=0), polish=PolishSettings(sweeps=0)),
    )  # fmt: skip
    fit = out["outcome"]
    target = fit.target
    assert target.hh == pytest.approx(dict(gna=132.0, gk=36.0, gl=0.3, ena=120.0, ek=-12.0, el=10.6))
    assert (target.scl_v, target.i_voltage, target.i_master, target.v_ref) == (2.5, 150e-9, 150e-9, 0.9)
    assert out["capacitance_scaling"] == target.capacitance_scaling == 0.03
    assert (out["scl_t"], out["scl_v"], out["I_voltage"], out["V_ref"]) == (target.scl_t, 2.5, 150e-9, 0.9)
    for key, word in zip(("dg", "dErev", "dIb"), fit.words, strict=True):
        np.testing.assert_array_equal(out[key], word)
        assert out[key].dtype.kind == "i"
    for word, nnls in zip(fit.words, fit.nnls_words, strict=True):
        np.testing.assert_array_equal(word, np.round(nnls))
    # the largest conductance word at full scale ("conductance" speed), the documented current mapping
    assert out["dg"].max() == 1023
    assert target.chip_current(1e-6) == pytest.approx(2.5 * target.scl_t * 4e-12 * 0.03)


def test_polish_moves_are_distinct_in_range_single_word_steps():
    flat = np.zeros(48)
    flat[0], flat[1], flat[3], flat[6], flat[7] = 1023, 500, -1023, 20, 1  # dg, dErev, dIb
    steps, word = E._polish_moves(flat)
    moved = flat[None] + steps
    assert np.all(np.count_nonzero(steps, axis=1) == 1)
    np.testing.assert_array_equal(word, np.argmax(steps != 0, axis=1))
    assert np.all(moved >= W.WORD_LO) and np.all(moved <= W.WORD_HI)
    assert len(np.unique(steps, axis=0)) == len(steps)  # no duplicates, and no no-op
    # 1023: only down (-1, -31); 500: +-1 and +-15; 20 and 1: +-1 only; 0 (dIb): +1 only
    assert sorted(steps[word == 0, 0]) == [-31.0, -1.0]
    assert sorted(steps[word == 1, 1]) == [-15.0, -1.0, 1.0, 15.0]
    assert sorted(steps[word == 6, 6]) == [-1.0, 1.0] and sorted(steps[word == 7, 7]) == [-1.0, 1.0]
    assert sorted(steps[word == 3, 3]) == [1.0, 31.0]  # dErev at -1023
    assert sorted(steps[word == 8, 8]) == [1.0]
    # dErev words at 0 can move both ways
    assert sorted(steps[word == 4, 4]) == [-1.0, 1.0]


def test_onset_currents_flag_a_long_first_isi():
    times = np.array([[1.0, 31.0, 46.0, 61.0, 99.0], [1.0, 17.0, 32.0, 47.0, 99.0], [1.0, 99, 99, 99, 99]])
    flagged = E.onset_currents([7.5, 7.75, 0.0], times, [4, 4, 1])
    assert [c for c, _ in flagged] == [7.5] and flagged[0][1] == pytest.approx(2.0)


@pytest.mark.slow
def test_training_at_the_guide_models_onset_warns():
    target, _ = E.make_target()
    with pytest.warns(UserWarning, match=r"7\.5 uA/cm\^2 \(first ISI 1\.9x") as caught:
        E._prepare(target, [7.5, 7.75], 100.0, 1500)
    assert len(caught) == 1 and "7.75" not in str(caught[0].message)  # 7.75 is past the onset


@pytest.mark.slow
def test_subthreshold_term_adds_the_weighted_rms_voltage_difference_where_hh_rests():
    target, words = E.make_target()
    currents = [0.0, 5.0, 10.0]  # the guide's model: one spike, one spike, repetitive
    d0 = E._prepare(target, currents, 30.0, 600)
    d7 = E._prepare(target, currents, 30.0, 600, sub_weight=7.0)
    ts, nh, th, quiet = (np.asarray(x) for x in (d7.ts, d7.nh, d7.th, d7.quiet))
    assert nh.tolist()[:2] == [1, 1] and nh[2] >= 2
    assert not quiet[2].any()  # repetitive: no subthreshold term
    for row in (0, 1):  # from a quarter of the reference ISI after HH's spike to the end
        on = np.flatnonzero(quiet[row])
        assert on[-1] == len(ts) - 1 and np.all(np.diff(on) == 1)
        assert ts[on[0] - 1] <= th[row, 0] + 0.25 * float(d7.isi[2]) < ts[on[0]]
    chip = target.chip(W.quantize_words(words))
    v = np.asarray(E._chip_spikes(chip, d7)[0])
    dv = (v - float(d7.shift) - np.asarray(d7.vh)) / float(d7.threshold)
    expected = sum(np.sqrt(np.mean(dv[r, quiet[r] > 0] ** 2)) for r in (0, 1))
    gained = float(E._score(chip, d7) - E._score(chip, d0))
    assert expected > 1e-3
    assert gained == pytest.approx(7.0 * expected, rel=1e-9)


def test_fi_curve_locates_each_onset_on_the_refined_grid(monkeypatch):
    # spikes from known thresholds: HH repetitive on an island at 3 and from 7.3 up; a chip from
    # 12.12 up, another not repetitive at the top (the word set stands for its threshold)
    def trains(currents, repetitive):
        return None, None, [np.arange(5.0 if repetitive(c) else 1.0) * 10.0 for c in np.asarray(currents)]

    calls = []

    def hh(target, currents, t_hh_ms, n_save):
        calls.append(len(currents))
        return trains(currents, lambda c: c >= 7.3 - 1e-9 or abs(c - 3.0) < 1e-9)

    def chip(target, chip_from, currents, t_hh_ms, n_save):
        return trains(currents, lambda c: c >= chip_from - 1e-9)

    monkeypatch.setattr(E, "_hh_spikes_from_rest", hh)
    monkeypatch.setattr(E, "_chip_spikes_from_rest", chip)
    fi = E.fi_curve(None, 12.12, top=20.0, step=0.25, refine=0.05)
    assert (fi.hh_onset, fi.chip_onset) == (pytest.approx(7.3), pytest.approx(12.15))
    assert fi.currents.shape == fi.hh_rate.shape == (81,)
    assert fi.hh_rate[12] == 100.0 and fi.hh_rate[11] == 0.0  # the island at 3: 4 ISIs of 10 ms
    assert np.isnan(E.fi_curve(None, 25.0, top=20.0).chip_onset)
    # several word sets: HH solved once on the grid and once below the onsets found
    calls.clear()
    both = E.fi_curves(None, {"a": 12.12, "b": 25.0}, top=20.0)
    assert (
        calls == [81, 8] and both["a"].chip_onset == pytest.approx(12.15) and np.isnan(both["b"].chip_onset)
    )
    np.testing.assert_array_equal(both["a"].hh_rate, both["b"].hh_rate)
    with pytest.raises(ValueError, match="refine <= step <= top"):
        E.fi_curve(None, None, step=0.25, refine=0.5)
    with pytest.raises(ValueError, match="step must be > 0"):
        E.fi_curve(None, None, step=float("nan"))


def test_fi_curve_finds_the_guide_models_onset():
    # from rest the guide's HH fires repetitively from 7.4-7.5 uA/cm^2 (auto_currents: 7.5 on its
    # 0.25 grid, a first ISI of 44 ms at 7.4); the NNLS-rounded chip's rates are the chip's
    target, words0 = E.make_target()
    fi = E.fi_curve(target, words0, top=10.0, step=2.5, refine=0.125, n_save=1500)
    assert 7.375 - 1e-9 <= fi.hh_onset <= 7.5 + 1e-9
    assert list(fi.hh_rate > 0) == [False, False, False, True, True]
    assert np.isnan(fi.chip_onset) == (fi.chip_rate[-1] == 0)


def test_auto_i_voltage_follows_scl_v_within_the_chip_range():
    assert E.auto_i_voltage(3.0) == pytest.approx(200e-9, rel=1e-12)  # the guide's value at its scale
    assert E.auto_i_voltage(2.0) == pytest.approx(200e-9 * 2 / 3, rel=1e-12)
    assert E.auto_i_voltage(0.5) == 50e-9 and E.auto_i_voltage(9.0) == 400e-9  # the chip's range
    auto, words = E.make_target(scl_v=2.0)
    fixed, words200 = E.make_target(scl_v=2.0, i_voltage=200e-9)
    assert auto.i_voltage == pytest.approx(200e-9 * 2 / 3, rel=1e-12) and fixed.i_voltage == 200e-9
    # a smaller reversal LSB: the same voltages take 1.5x the words
    np.testing.assert_allclose(words.e_rev, 1.5 * words200.e_rev, rtol=1e-12)
    with pytest.raises(ValueError, match="i_voltage must be a current in A or 'auto', got 'fast'"):
        E.make_target(i_voltage="fast")
    with pytest.raises(ValueError, match="'search' gives several targets: make_targets"):
        E.make_target(i_voltage="search")
    # the search: the scl_v rule and 3/4 of it (within 50-400 nA), for each time scale
    pairs = E.make_targets(scl_v=2.0)
    assert [t.i_voltage for t, _ in pairs] == pytest.approx([200e-9 * 2 / 3, 100e-9], rel=1e-12)
    np.testing.assert_allclose(pairs[0][1].e_rev, words.e_rev, rtol=1e-12)  # the first is the rule's
    assert [t.i_voltage for t, _ in E.make_targets(scl_v=1.0)] == pytest.approx([200e-9 / 3, 50e-9])
    assert [t.i_voltage for t, _ in E.make_targets(i_voltage="auto")] == pytest.approx([200e-9])


@pytest.mark.slow
def test_auto_currents_follow_the_targets_onset():
    from ndjax.cli._config import FIT_CURRENTS_DEFAULT

    guide, _ = E.make_target()
    # onset 7.5 (first ISI 1.9x the later ones), clean from 7.75: the set measured on the guide
    assert E.auto_currents(guide) == FIT_CURRENTS_DEFAULT == (0.0, 5.0, 7.25, 7.75, 10.0, 15.0, 20.0)
    leak, _ = E.make_target(gl=0.45)
    # onset 9.75, first ISI over 1.3x the later ones up to 10.5: 10 (a knife edge) is left out,
    assert E.auto_currents(leak) == (0.0, 5.0, 9.5, 10.75, 13.0, 15.0, 20.0)  # 13 replaces 10
    # the band reaching the top: the top stays, the skeleton below the onset too
    assert E.auto_currents(leak, top=10.0) == (0.0, 2.5, 5.0, 7.5, 9.5, 10.0)
    # onset 2.25 (clean there), the next current 5 is more than top/8 above: their middle joins
    gk_low, _ = E.make_target(gk=28.8)
    assert E.auto_currents(gk_low) == (0.0, 2.0, 2.25, 3.5, 5.0, 10.0, 15.0, 20.0)
    # repetitive from 0: no onset in the range, so no middle in the wide gap 0 -> 5
    excitable, _ = E.make_target(gna=144.0, gk=27.0)
    assert E.auto_currents(excitable) == (0.0, 5.0, 10.0, 15.0, 20.0)
    silent, _ = E.make_target(gna=96.0, gk=45.0)  # fires once at every current up to 20
    with pytest.warns(UserWarning, match="does not fire repetitively at 20 uA/cm"):
        assert E.auto_currents(silent) == (0.0, 5.0, 10.0, 15.0, 20.0)
    with pytest.raises(ValueError, match="expected top > 0"):
        E.auto_currents(guide, top=0.0)
    with pytest.raises(ValueError, match="fit_words: currents_ua must be a list of currents or 'auto'"):
        E.fit_words(guide, _, "some", progress=None)
    with pytest.raises(ValueError, match="retries must be >= 0"):
        E.fit_words(guide, _, [0.0], settings=FitSettings(retries=-1), progress=None)
