"""words.json: what a chip is programmed with, written and read back with every problem named."""

import json

import numpy as np
import pytest

from ndjax._words_io import WordsFileError, load_words, save_words, validate_words
from ndjax.models import _neurodyn as _quantize

SETTINGS = dict(
    v_ref=0.9, i_voltage=200e-9, i_master=150e-9, i_ref=100e-9, capacitance_scaling=0.1, scl_t=13.1, scl_v=3.0
)


def some_words():
    rng = np.random.default_rng(0)
    return (rng.integers(0, 1024, 3), rng.integers(-1023, 1024, 3), rng.integers(0, 1024, (3, 2, 7)))


def test_words_round_trip(tmp_path):
    dg, de, dib = some_words()
    dib[0, 0, 0], de[1] = 1023, -1023  # the range ends are valid words
    hh = {"gna": 120.0, "gk": 36.0, "gl": 0.3, "ena": 120.0, "ek": -12.0, "el": 10.6}
    path = save_words(tmp_path / "words.json", dg=dg, dErev=de, dIb=dib, v_mean=0.162, hh=hh, **SETTINGS)
    data = json.loads(path.read_text())  # plain JSON: lists of ints, numbers
    assert list(data)[:4] == ["format", "dg", "dErev", "dIb"]
    assert data["dIb"] == dib.tolist() and all(type(x) is int for x in data["dg"])
    assert (data["V_ref"], data["I_master"], data["scl_t"]) == (0.9, 150e-9, 13.1)
    back = load_words(path)
    for name, arr in (("dg", dg), ("dErev", de), ("dIb", dib)):
        assert back[name].dtype == np.int64 and back[name].shape == _quantize.WORD_SHAPES[name]
        np.testing.assert_array_equal(back[name], arr)
    assert back["hh"] == hh and back["V_mean"] == 0.162 and back["capacitance_scaling"] == 0.1
    # the same ranges as the core (the module keeps its own copy to stay JAX-free)
    from ndjax import _words_io

    for name, (shape, lo, hi) in _words_io._WORDS.items():
        assert _quantize.WORD_SHAPES[name] == shape and _quantize.WORD_RANGES[name] == (lo, hi)


def valid_words_dict():
    dg, de, dib = some_words()
    return {
        "dg": dg.tolist(),
        "dErev": de.tolist(),
        "dIb": dib.tolist(),
        "V_ref": 0.9,
        "I_voltage": 2e-7,
        "I_master": 1.5e-7,
        "I_ref": 1e-7,
        "capacitance_scaling": 0.1,
        "scl_t": 13.1,
        "scl_v": 3.0,
    }


def _changed(**changes):
    d = valid_words_dict()
    for key, value in changes.items():
        if value is None:
            del d[key]
        else:
            d[key] = value
    return d


WORDS_BAD = {
    "missing key": (_changed(I_master=None), "I_master", "required key missing"),
    "unknown key": (_changed(Vref=0.9), "Vref", "did you mean 'V_ref'"),
    "wrong shape": (_changed(dg=[1, 2]), "dg", "expected an array of shape (3,), got shape (2,)"),
    "ragged dIb": (_changed(dIb=[[[0] * 7, [0] * 6]] * 3), "dIb", "ragged"),
    "word above range": (_changed(dIb=[[[0] * 7, [0] * 6 + [1024]]] * 3), "dIb[0][1][6]", "in 0..1023"),
    "negative dg": (_changed(dg=[1, -1, 3]), "dg[1]", "in 0..1023"),
    "dErev below range": (_changed(dErev=[0, -1024, 0]), "dErev[1]", "in -1023..1023"),
    "fractional word": (_changed(dg=[1, 2.5, 3]), "dg[1]", "expected an integer word"),
    "bool word": (_changed(dg=[1, True, 3]), "dg[1]", "expected an integer word"),
    "bad V_ref": (_changed(V_ref=2.5), "V_ref", "in 0..1.8"),
    "non-positive bias": (_changed(I_voltage=0.0), "I_voltage", "> 0"),
    "string setting": (_changed(scl_t="13"), "scl_t", "expected a finite number"),
    "wrong format": (_changed(format="v2"), "format", "'ndjax-words/1'"),
}


@pytest.mark.parametrize("case", list(WORDS_BAD), ids=list(WORDS_BAD))
def test_words_validation_names_the_key(case, tmp_path):
    data, path, words = WORDS_BAD[case]
    file = tmp_path / "words.json"
    file.write_text(json.dumps(data))
    with pytest.raises(WordsFileError) as info:
        load_words(file)
    errors = dict(info.value.errors)
    assert path in errors and words in errors[path], errors
    assert str(file) in str(info.value) and isinstance(info.value, ValueError)


def test_words_file_errors(tmp_path):
    validate_words(valid_words_dict())  # the base case is valid
    file = tmp_path / "words.json"
    file.write_text("{not json")
    with pytest.raises(WordsFileError, match="not valid JSON"):
        load_words(file)
    file.write_text("[1, 2]")
    with pytest.raises(WordsFileError, match="expected a JSON object"):
        load_words(file)
    with pytest.raises(WordsFileError, match="3 errors"):
        validate_words(_changed(dg=None, V_ref=-1.0, scl_v=0))
    dg, de, dib = some_words()
    dib[2, 1, 0] = 2000
    with pytest.raises(WordsFileError, match=r"dIb\[2\]\[1\]\[0\]"):
        save_words(tmp_path / "new.json", dg=dg, dErev=de, dIb=dib, **SETTINGS)
    assert not (tmp_path / "new.json").exists()  # nothing written
