"""Training currents from the target's HH F-I curve, and the onset flag."""

import numpy as np
import pytest

from ndjax import fit
from ndjax.fit import FitSettings


def test_onset_currents_flag_a_long_first_isi():
    times = np.array([[1.0, 31.0, 46.0, 61.0, 99.0], [1.0, 17.0, 32.0, 47.0, 99.0], [1.0, 99, 99, 99, 99]])
    flagged = fit.onset_currents([7.5, 7.75, 0.0], times, [4, 4, 1])
    assert [c for c, _ in flagged] == [7.5] and flagged[0][1] == pytest.approx(2.0)


@pytest.mark.slow
def test_auto_currents_follow_the_targets_onset():
    guide, words0 = fit.make_target()
    # onset 7.5 (first ISI 1.9x the later ones), clean from 7.75: the set measured on the guide
    assert fit.auto_currents(guide) == (0.0, 5.0, 7.25, 7.75, 10.0, 15.0, 20.0)
    leak, _ = fit.make_target(gl=0.45)
    # onset 9.75, first ISI over 1.3x the later ones up to 10.5: 10 (a knife edge) is left out,
    assert fit.auto_currents(leak) == (0.0, 5.0, 9.5, 10.75, 13.0, 15.0, 20.0)  # 13 replaces 10
    # the band reaching the top: the top stays, the skeleton below the onset too
    assert fit.auto_currents(leak, top=10.0) == (0.0, 2.5, 5.0, 7.5, 9.5, 10.0)
    # onset 2.25 (clean there), the next current 5 is more than top/8 above: their middle joins
    gk_low, _ = fit.make_target(gk=28.8)
    assert fit.auto_currents(gk_low) == (0.0, 2.0, 2.25, 3.5, 5.0, 10.0, 15.0, 20.0)
    # repetitive from 0: no onset in the range, so no middle in the wide gap 0 -> 5
    excitable, _ = fit.make_target(gna=144.0, gk=27.0)
    assert fit.auto_currents(excitable) == (0.0, 5.0, 10.0, 15.0, 20.0)
    silent, _ = fit.make_target(gna=96.0, gk=45.0)  # fires once at every current up to 20
    with pytest.warns(UserWarning, match="does not fire repetitively at 20 uA/cm"):
        assert fit.auto_currents(silent) == (0.0, 5.0, 10.0, 15.0, 20.0)
    with pytest.raises(ValueError, match="expected top > 0"):
        fit.auto_currents(guide, top=0.0)
    with pytest.raises(ValueError, match="fit_words: currents_ua must be a list of currents or 'auto'"):
        fit.fit_words(guide, words0, "some", progress=None)
    with pytest.raises(ValueError, match="retries must be >= 0"):
        fit.fit_words(guide, words0, [0.0], settings=FitSettings(retries=-1), progress=None)
