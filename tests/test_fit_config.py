"""``kind = "fit"``: config schema, words.json, and one tiny end-to-end ``ndjax run``."""

import contextlib
import copy
import inspect
import io
import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from ndjax import fit as _e2e
from ndjax import plot
from ndjax._words_io import WordsFileError, load_words, save_words, validate_words
from ndjax.cli import _config, _runner
from ndjax.cli._config import ConfigError, dump_toml, load_config, validate_config
from ndjax.fit._settings import FitSettings
from ndjax.models import _neurodyn as _quantize

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def fit_config(**tables):
    """A fit config: ``tables`` replace or add top-level keys."""
    return {"kind": "fit", **copy.deepcopy(tables)}


def errors_of(raw) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    return dict(info.value.errors)


# Each case: the raw config, the key path the error must name, words the message must hold.
BAD = {
    "unknown key, suggested": (
        fit_config(optimizer={"grad_stpes": 5}),
        "optimizer.grad_stpes",
        "did you mean 'grad_steps'",
    ),
    "unknown table, suggested": (fit_config(optimiser={}), "optimiser", "did you mean 'optimizer'"),
    "float where an int goes": (
        fit_config(optimizer={"es_population": 24.0}),
        "optimizer.es_population",
        "write 5, not 5.0",
    ),
    "string where a number goes": (fit_config(target={"gna": "120"}), "target.gna", "expected a number"),
    "bool where a number goes": (fit_config(span_ms=True), "span_ms", "expected a number"),
    "scalar where a list goes": (fit_config(currents={"fit": 5.0}), "currents.fit", "shape (n,)"),
    "string in a list": (fit_config(currents={"fit": [5.0, "x"]}), "currents.fit[1]", "got string 'x'"),
    "nested list": (fit_config(currents={"fit": [[5.0]]}), "currents.fit", "shape (n,), got shape (1, 1)"),
    "I_master above 400 nA": (fit_config(chip={"i_master": 500e-9}), "chip.i_master", "in 5e-08..4e-07"),
    "I_master below 50 nA": (fit_config(chip={"i_master": 10e-9}), "chip.i_master", "in 5e-08..4e-07"),
    "I_voltage out of range": (fit_config(chip={"i_voltage": 1e-6}), "chip.i_voltage", "in 5e-08..4e-07"),
    "I_voltage neither a current nor auto": (
        fit_config(chip={"i_voltage": "high"}),
        "chip.i_voltage",
        "expected a number in 5e-08..4e-07 or 'auto' or 'search', got string 'high'",
    ),
    "fit currents neither a list nor auto": (
        fit_config(currents={"fit": "onset"}),
        "currents.fit",
        "expected an array of shape (n,) or 'auto', got string 'onset'",
    ),
    "auto fit currents without a positive evaluate current": (
        fit_config(currents={"fit": "auto", "evaluate": [-5.0, 0.0]}),
        "currents.evaluate",
        "expected a positive current when currents.fit = 'auto'",
    ),
    "V_ref above 1.8 V": (fit_config(chip={"v_ref": 2.0}), "chip.v_ref", "in 0..1.8"),
    "zero capacitance_scaling": (
        fit_config(chip={"capacitance_scaling": 0.0}),
        "chip.capacitance_scaling",
        "> 0",
    ),
    "negative speedup": (fit_config(chip={"speedup": -1.0}), "chip.speedup", "> 0"),
    "negative conductance": (fit_config(target={"gk": -36.0}), "target.gk", "in 0..1000"),
    "E_K above E_Na/2": (fit_config(target={"ek": 70.0}), "target.ek", "ek < ena/2"),
    "zero scl_v": (fit_config(target={"scl_v": 0.0}), "target.scl_v", "> 0"),
    "two held-out currents": (
        fit_config(currents={"fit": [0.0, 5.0, 10.0], "evaluate": [0.0, 2.5, 5.0, 10.0, 12.5]}),
        "currents.evaluate",
        "at least 3 currents not in currents.fit (held out), got 2 (2.5, 12.5)",
    ),
    "no training current": (fit_config(currents={"fit": []}), "currents.fit", "at least 1"),
    "duplicate current": (
        fit_config(currents={"fit": [5.0, 10.0, 5]}),
        "currents.fit[2]",
        "duplicate current 5.0 (also fit[0])",
    ),
    "current out of range": (fit_config(currents={"fit": [5.0, 1e3]}), "currents.fit[1]", "in -100..200"),
    "zero span": (fit_config(span_ms=0.0), "span_ms", "> 0"),
    "too small population": (
        fit_config(optimizer={"es_population": 1}),
        "optimizer.es_population",
        "in 2..100000",
    ),
    "negative learning rate": (
        fit_config(optimizer={"learning_rate": -0.1}),
        "optimizer.learning_rate",
        "> 0",
    ),
    "onset resolution above the F-I grid": (
        fit_config(report={"fi_step": 0.25, "fi_refine": 0.5}),
        "report.fi_refine",
        "at most fi_step = 0.25",
    ),
    "F-I grid wider than the currents": (
        fit_config(currents={"fit": [5.0], "evaluate": [0.0, 2.5, 7.5, 10.0]}, report={"fi_step": 12.0}),
        "report.fi_step",
        "at most the largest evaluation current (10)",
    ),
    "trace current not evaluated": (
        fit_config(report={"trace_currents": [2.5, 3.0]}),
        "report.trace_currents[1]",
        "one of currents.evaluate",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_fit_config_names_the_key(case):
    raw, path, words = BAD[case]
    errors = errors_of(raw)
    assert path in errors, errors
    assert words in errors[path], errors[path]


def test_all_errors_reported_together():
    raw = fit_config(
        seed=-1,
        target={"gna": -1.0, "gNa": 120.0},
        chip={"i_master": 1e-6},
        currents={"fit": [0.0], "evaluate": [0.0, 5.0]},
        optimizer={"n_save": 5},
    )
    errors = errors_of(raw)
    assert set(errors) == {
        "seed",
        "target.gna",
        "target.gNa",
        "chip.i_master",
        "currents.evaluate",
        "optimizer.n_save",
    }
    assert "did you mean 'gna'" in errors["target.gNa"]


def test_config_errors_stop_before_anything_runs(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(
        'kind = "fit"\n[chip]\ni_master = 1e-6\n[currents]\nfit = [0.0]\nevaluate = [0.0, 2.5]\n'
    )
    out = tmp_path / "out"
    status, stdout, stderr = run_main(["run", config, "--out", out])
    assert status == 2 and not out.exists() and stdout == ""
    assert "chip.i_master" in stderr and "currents.evaluate" in stderr and "2 errors" in stderr


def test_defaults_filled():
    cfg = validate_config({"kind": "fit"}, source="dir/my_fit.toml")
    assert (cfg["name"], cfg["seed"], cfg["span_ms"]) == ("my_fit", 0, 100.0)
    assert cfg["target"] == {
        "gna": 120.0,
        "gk": 36.0,
        "gl": 0.3,
        "ena": 120.0,
        "ek": -12.0,
        "el": 10.6,
        "scl_v": 3.0,
    }
    assert cfg["chip"] == {
        "i_voltage": "search",
        "i_master": 150e-9,
        "v_ref": 0.9,
        "i_ref": 100e-9,
        "capacitance_scaling": 0.03,
        "speedup": "conductance",
    }
    # make_target's own defaults, so an empty [target]/[chip] is make_target()
    sig = inspect.signature(_e2e.make_target).parameters
    for key, value in {**cfg["target"], **cfg["chip"]}.items():
        if key not in ("i_ref", "i_voltage"):
            assert sig[key].default == (None if value == "conductance" else value), key
    # the runner builds the candidates with make_targets, whose I_voltage default is the search
    assert inspect.signature(_e2e.make_targets).parameters["i_voltage"].default == cfg["chip"]["i_voltage"]
    assert cfg["currents"] == {
        "fit": "auto",
        "evaluate": [0.0, 2.5, 5.0, 8.0, 10.0, 12.5, 17.5, 20.0],
    }
    # the optimizer follows FitSettings's defaults, with their types
    assert _config.fit_settings(cfg["optimizer"]) == FitSettings()
    for key, value in cfg["optimizer"].items():
        want = int if _config.FIT_OPTIMIZER.fields[key].type == "int" else float
        assert type(value) is want, key
    assert cfg["report"] == {
        "n_save": 6000,
        "trace_currents": [0.0, 5.0, 12.5, 20.0],
        "fi_step": 0.25,
        "fi_refine": 0.05,
        "dpi": 120,
    }
    # trace currents: four spread over the sorted evaluation currents, or all of fewer
    few = validate_config(fit_config(currents={"fit": [5.0], "evaluate": [9.0, 1.0, 3.0]}))
    assert few["report"]["trace_currents"] == [1.0, 3.0, 9.0]


def test_every_optimizer_key_is_a_fit_settings_field():
    assert set(_config.FIT_OPTIMIZER.fields) == set(_config.OPTIMIZER_FIELDS)
    for stage, field in _config.OPTIMIZER_FIELDS.values():
        assert hasattr(FitSettings() if stage is None else getattr(FitSettings(), stage), field)


def test_fit_hh_is_valid_explicit_and_round_trips():
    path = EXPERIMENTS / "fit_hh.toml"
    cfg = load_config(path)
    raw = tomllib.loads(path.read_text())
    assert raw == cfg  # every knob explicit
    assert cfg["kind"] == "fit" and cfg["span_ms"] == 100.0 and cfg["seed"] == 0
    assert cfg["target"]["scl_v"] == 3.0 and cfg["target"]["gna"] == 120.0
    assert (cfg["chip"]["i_voltage"], cfg["chip"]["i_master"], cfg["chip"]["v_ref"]) == (
        "search",
        150e-9,
        0.9,
    )
    assert (cfg["chip"]["capacitance_scaling"], cfg["chip"]["speedup"]) == (0.03, "conductance")
    assert cfg["currents"]["fit"] == "auto"
    assert cfg["currents"]["evaluate"] == [0.0, 2.5, 5.0, 8.0, 10.0, 12.5, 17.5, 20.0]
    text = dump_toml(cfg, header="as run")
    assert tomllib.loads(text) == cfg and validate_config(tomllib.loads(text)) == cfg


def test_fixed_shapes_keep_their_message():
    errors = errors_of({"kind": "simulate", "models": [{"type": "hh", "t1": 1.0, "x0": [0.0]}]})
    assert "expected an array of shape (4,), got shape (1,)" in errors["models[0].x0"]


# ---- words.json ------------------------------------------------------------------------------------

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


# ---- plots -----------------------------------------------------------------------------------------


def test_fit_plots_check_their_inputs():
    t = np.linspace(0.0, 10.0, 11)
    with pytest.raises(ValueError, match="v_hh and v_chip must have shape"):
        plot.plot_fit_traces(t, [1.0, 2.0], np.zeros((2, 11)), np.zeros((1, 11)))
    with pytest.raises(ValueError, match=r"rates\['chip'\] must have shape"):
        plot.plot_fi_curves([0.0, 1.0], {"chip": [1.0]})
    with pytest.raises(ValueError, match=r"onsets for unknown curves \['hh'\]"):
        plot.plot_fi_curves([0.0, 1.0], {"chip": [0.0, 1.0]}, onsets={"hh": 0.5})
    # a dense curve: markers only at the marked currents (open where held out), the onset a line
    grid = np.linspace(0.0, 2.0, 9)
    fig = plot.plot_fi_curves(grid, {"HH": grid, "chip": grid}, marks=[0.5, 1.0, 2.0], held_out=[1.0],
                              onsets={"HH": 0.75, "chip": np.nan})  # fmt: skip
    try:
        (ax,) = fig.axes
        filled = [ln for ln in ax.lines if ln.get_marker() == "o" and ln.get_mfc() != "white"]
        hollow = [ln for ln in ax.lines if ln.get_marker() == "o" and ln.get_mfc() == "white"]
        assert (
            sum(len(ln.get_xdata()) for ln in filled) == 4 and sum(len(ln.get_xdata()) for ln in hollow) == 2
        )
        vlines = [
            ln for ln in ax.lines if len(ln.get_xdata()) == 2 and ln.get_xdata()[0] == ln.get_xdata()[1]
        ]
        assert [float(ln.get_xdata()[0]) for ln in vlines] == [0.75]
    finally:
        plot.close(fig)
    fig = plot.plot_loss_history({"es": [3.0, 2.0], "grad": []}, seconds={"es": 1.5})
    try:
        left, right = fig.axes
        assert left.get_title(loc="left") == "es (1.5 s)"
        assert right.texts[0].get_text() == "skipped"
    finally:
        plot.close(fig)


# ---- one tiny end-to-end run -----------------------------------------------------------------------

# 20 ms of HH time, one training current and a single step of each stage: this checks the plumbing
# (files, formats, ranges), not the quality of the fit.
TINY = """
kind = "fit"
seed = 0
span_ms = 20.0

[chip]
capacitance_scaling = 0.1

[currents]
fit = [10.0]
evaluate = [0.0, 5.0, 10.0, 15.0]

[optimizer]
es_generations = 2
es_extend = 0
es_population = 4
es_restarts = 1
es_screen = 1
grad_steps = 1
polish_sweeps = 1
polish_combine = 1
retries = 0
n_save = 600

[report]
n_save = 600
trace_currents = [0.0, 15.0]
fi_step = 5.0   # the evaluation's 4 currents, and 4 more below an onset: no new compilation
fi_refine = 1.0
"""


def run_main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = _runner.main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def test_tiny_fit_run_writes_loadable_words(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "out"
    status, stdout, stderr = run_main(["run", config, "--out", out])
    assert status == 0, stderr
    assert "[calibrate]" in stdout and "[polish]" in stdout and "passed:" in stdout
    # I_voltage "search": 200 and 150 nA screened for one generation, the better one kept
    assert "screened after 1 generations: kept" in stdout and "I_voltage=150nA" in stdout
    for name in (
        "config.toml",
        "config.original.toml",
        "versions.json",
        "words.json",
        "metrics.json",
        "traces.npz",
    ):
        assert (out / name).stat().st_size > 0, name
    for name in ("traces.png", "fi_curve.png", "loss.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert load_config(out / "config.toml") == load_config(config)

    raw = json.loads((out / "words.json").read_text())
    for key in (
        "dg",
        "dErev",
        "dIb",
        "V_ref",
        "I_voltage",
        "I_master",
        "I_ref",
        "capacitance_scaling",
        "scl_t",
        "scl_v",
    ):
        assert key in raw, key
    words = load_words(out / "words.json")
    for name in ("dg", "dErev", "dIb"):
        lo, hi = _quantize.WORD_RANGES[name]
        assert np.shape(raw[name]) == _quantize.WORD_SHAPES[name]
        assert all(type(x) is int and lo <= x <= hi for x in np.ravel(raw[name]).tolist())
        assert words[name].shape == _quantize.WORD_SHAPES[name]
    assert (words["V_ref"], words["I_master"], words["I_ref"], words["capacitance_scaling"]) == (
        0.9,
        150e-9,
        100e-9,
        0.1,
    )
    target, _ = _e2e.make_target(capacitance_scaling=0.1)
    assert words["scl_t"] == pytest.approx(target.scl_t, rel=1e-12) and words["scl_v"] == 3.0

    metrics = json.loads((out / "metrics.json").read_text())
    screened = metrics["history"]["candidates"]  # (scl_t, I_voltage, score) of each candidate
    assert [c[1] for c in screened] == pytest.approx([200e-9, 150e-9])
    kept = min(screened, key=lambda c: c[2])
    assert words["I_voltage"] == pytest.approx(kept[1], rel=1e-12)
    rows = metrics["currents"]
    assert [r["current_ua_cm2"] for r in rows] == [0.0, 5.0, 10.0, 15.0]
    assert [r["used_by_fit"] for r in rows] == [False, False, True, False]
    for r in rows:
        assert r["hh_count"] >= 1  # HH from rest fires at least once at every one of these currents
        for which in ("nnls", "fitted"):
            assert set(r[which]) >= {"chip_count", "chip_rate_hz", "rate_error", "timing_error", "passed"}
    s = metrics["summary"]
    assert s["n_currents"] == 4 and s["n_held_out"] == 3
    assert set(s["passed"]) == {"nnls", "fitted"}
    assert {"calibrate", "gradient", "polish", "fit_total", "evaluate", "fi_curve", "total"} <= set(
        s["seconds"]
    )
    # the F-I curves: on the 5 grid up to 15, equal to the report at its currents
    fi = metrics["fi_curve"]
    assert fi["currents_ua_cm2"] == [0.0, 5.0, 10.0, 15.0] and fi["onset_resolution_ua_cm2"] == 1.0
    at = [fi["currents_ua_cm2"].index(r["current_ua_cm2"]) for r in rows]
    assert [fi["hh_rate_hz"][i] for i in at] == pytest.approx([r["hh_rate_hz"] for r in rows])
    for which in ("nnls", "fitted"):
        got = [fi[f"{which}_rate_hz"][i] for i in at]
        assert got == pytest.approx([r[which]["chip_rate_hz"] for r in rows]), which
        onset = fi["onset_ua_cm2"][which]
        assert (onset is None) == (fi[f"{which}_rate_hz"][-1] == 0.0)
    assert "onset of repetitive firing from rest: HH" in stdout
    assert all(math.isfinite(x) for x in metrics["history"]["es"])

    with np.load(out / "traces.npz") as npz:
        assert npz["v_hh"].shape == npz["v_chip_fitted"].shape == npz["v_chip_nnls"].shape == (4, 600)
        assert npz["ts_ms"][-1] == pytest.approx(20.0, rel=1e-12)


@pytest.mark.slow
def test_auto_fit_currents_are_resolved_and_keep_three_held_out():
    target, _ = _e2e.make_target()
    cfg = validate_config(fit_config())
    assert _runner.resolve_fit_currents(cfg, target) == [0.0, 5.0, 7.25, 7.75, 10.0, 15.0, 20.0]
    explicit = validate_config(fit_config(currents={"fit": [1.0, 2.0]}))
    assert _runner.resolve_fit_currents(explicit, target) == [1.0, 2.0]
    crowded = validate_config(
        fit_config(currents={"evaluate": [0.0, 2.5, 5.0, 7.25, 7.75, 10.0, 15.0, 20.0]})
    )
    with pytest.raises(ConfigError) as info:
        _runner.resolve_fit_currents(crowded, target)
    (path, message), *_ = info.value.errors
    assert path == "currents.evaluate"
    assert "at least 3 currents not among the automatic training currents 0, 5, 7.25" in message
    assert message.endswith("got 1")
