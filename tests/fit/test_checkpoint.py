"""A fit with a checkpoint folder: what it saves, that a rerun resumes to the same words, and that
files of another fit are refused."""

import dataclasses

import numpy as np
import pytest

from ndjax import fit
from ndjax.fit import CalibrateSettings, FitSettings, GradientSettings, PolishSettings, _words
from ndjax.fit._checkpoint import fingerprint

# the problem shapes and batch sizes of tests/fit/test_stages.py (same xdist group): no new compile
CURRENTS, SPAN_MS = [0.0, 10.0], 10.0
SETTINGS = FitSettings(
    n_save=100, retries=0,
    calibrate=CalibrateSettings(generations=2, population=4, restarts=2, extend=0),
    gradient=GradientSettings(steps=3), polish=PolishSettings(sweeps=1),
)  # fmt: skip


def test_fingerprint_sees_every_bit_and_nothing_else():
    target, words = fit.make_target()
    a = fingerprint(target, words, [0.0, 10.0], SETTINGS)
    assert a == fingerprint(*fit.make_target(), [0.0, 10.0], SETTINGS)  # the same inputs, built again
    nudged = dataclasses.replace(target, v_ref=np.nextafter(target.v_ref, 1.0))
    assert fingerprint(nudged, words, [0.0, 10.0], SETTINGS) != a
    assert fingerprint(target, words, [0.0, 10.0], dataclasses.replace(SETTINGS, retries=1)) != a
    assert fingerprint(target, words, [0.0, 10.000000001], SETTINGS) != a


def _fit(folder, settings=SETTINGS, **kw):
    target, words0 = fit.make_target()
    return fit.fit_words(target, words0, CURRENTS, t_hh_ms=SPAN_MS, settings=settings, progress=None,
                         checkpoint=folder, **kw)  # fmt: skip


def _same(a, b):
    for x, y in zip(a.words, b.words, strict=True):
        np.testing.assert_array_equal(x, y)
    assert {k: v for k, v in a.history.items()} == {k: v for k, v in b.history.items()}


@pytest.mark.slow
def test_a_rerun_resumes_from_the_saved_calibration_and_ends_on_the_same_words(tmp_path, monkeypatch):
    saved = []
    first = _fit(tmp_path, on_save=saved.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attempt_seed0.json", "calibration_seed0.npz"]
    assert sorted(p.name for p in saved) == ["attempt_seed0.json", "calibration_seed0.npz"]

    def not_again(*args, **kwargs):
        raise AssertionError("a saved stage ran again")

    # interrupted after the calibration: it is loaded, the later stages run, the same words come out
    (tmp_path / "attempt_seed0.json").unlink()
    monkeypatch.setattr(_words, "calibrate", not_again)
    _same(_fit(tmp_path), first)
    # a finished attempt is loaded whole
    monkeypatch.setattr(_words, "gradient", not_again)
    monkeypatch.setattr(_words, "polish", not_again)
    _same(_fit(tmp_path), first)

    # a fit of other inputs refuses the folder's files, naming the file
    with pytest.raises(ValueError, match=r"attempt_seed0\.json was saved by a fit of other inputs"):
        _fit(tmp_path, dataclasses.replace(SETTINGS, polish=PolishSettings(sweeps=2)))
    # a damaged file is named, with what to do
    (tmp_path / "attempt_seed0.json").unlink()
    (tmp_path / "calibration_seed0.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"calibration_seed0\.npz cannot be read .*delete it"):
        _fit(tmp_path)
