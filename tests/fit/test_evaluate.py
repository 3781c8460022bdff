"""Evaluation of a word set: F-I curves and their onsets."""

import numpy as np
import pytest

from ndjax import fit
from ndjax.fit import _evaluate


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

    monkeypatch.setattr(_evaluate, "hh_spikes_from_rest", hh)
    monkeypatch.setattr(_evaluate, "chip_spikes_from_rest", chip)
    fi = fit.fi_curve(None, 12.12, top=20.0, step=0.25, refine=0.05)
    assert (fi.hh_onset, fi.chip_onset) == (pytest.approx(7.3), pytest.approx(12.15))
    assert fi.currents.shape == fi.hh_rate.shape == (81,)
    assert fi.hh_rate[12] == 100.0 and fi.hh_rate[11] == 0.0  # the island at 3: 4 ISIs of 10 ms
    assert np.isnan(fit.fi_curve(None, 25.0, top=20.0).chip_onset)
    # several word sets: HH solved once on the grid and once below the onsets found
    calls.clear()
    both = fit.fi_curves(None, {"a": 12.12, "b": 25.0}, top=20.0)
    assert (
        calls == [81, 8] and both["a"].chip_onset == pytest.approx(12.15) and np.isnan(both["b"].chip_onset)
    )
    np.testing.assert_array_equal(both["a"].hh_rate, both["b"].hh_rate)
    with pytest.raises(ValueError, match="refine <= step <= top"):
        fit.fi_curve(None, None, step=0.25, refine=0.5)
    with pytest.raises(ValueError, match="step must be > 0"):
        fit.fi_curve(None, None, step=float("nan"))


@pytest.mark.slow
def test_fi_curve_finds_the_guide_models_onset():
    # from rest the guide's HH fires repetitively from 7.4-7.5 uA/cm^2 (auto_currents: 7.5 on its
    # 0.25 grid, a first ISI of 44 ms at 7.4); the NNLS-rounded chip's rates are the chip's
    target, words0 = fit.make_target()
    fi = fit.fi_curve(target, words0, top=10.0, step=2.5, refine=0.125, n_save=1500)
    assert 7.375 - 1e-9 <= fi.hh_onset <= 7.5 + 1e-9
    assert list(fi.hh_rate > 0) == [False, False, False, True, True]
    assert np.isnan(fi.chip_onset) == (fi.chip_rate[-1] == 0)
