"""``kind = "fit"``: its schema (errors by key path, defaults from the code, moved keys), the
``[optimizer]`` tables -> FitSettings, fit_hh.toml, and one tiny end-to-end ``ndjax run``."""

import copy
import inspect
import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from cli_support import run_main

from ndjax import fit as _e2e
from ndjax._words_io import load_words
from ndjax.cli._main import ROOT, load_config, validate_config
from ndjax.cli._schema import ConfigError, Key, Table
from ndjax.cli._toml import dump_toml
from ndjax.cli.kinds import fit
from ndjax.fit._settings import CalibrateSettings, FitSettings, GradientSettings, PolishSettings
from ndjax.models import _neurodyn as _quantize

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


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
        "did you mean 'grad_steps'? (it moved to optimizer.gradient.steps)",
    ),
    "unknown stage key, suggested": (
        fit_config(optimizer={"gradient": {"stpes": 5}}),
        "optimizer.gradient.stpes",
        "did you mean 'steps'",
    ),
    "a flat key that moved": (
        fit_config(optimizer={"es_generations": 5}),
        "optimizer.es_generations",
        "moved to optimizer.calibrate.generations",
    ),
    "a bound from the settings": (
        fit_config(optimizer={"polish": {"combine": 49}}),
        "optimizer.polish.combine",
        "in 1..48",
    ),
    "unknown table, suggested": (fit_config(optimiser={}), "optimiser", "did you mean 'optimizer'"),
    "float where an int goes": (
        fit_config(optimizer={"calibrate": {"population": 24.0}}),
        "optimizer.calibrate.population",
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
        fit_config(optimizer={"calibrate": {"population": 1}}),
        "optimizer.calibrate.population",
        "in 2..100000",
    ),
    "negative learning rate": (
        fit_config(optimizer={"gradient": {"learning_rate": -0.1}}),
        "optimizer.gradient.learning_rate",
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


def test_target_and_chip_defaults_are_make_targets():
    cfg = validate_config({"kind": "fit"})
    for key, field in fit.TARGET.fields.items():
        assert field.default == inspect.signature(_e2e.make_target).parameters[key].default, key
    assert isinstance(fit.CURRENTS.fields["fit"], Key)
    assert cfg["currents"]["fit"] == inspect.signature(_e2e.fit_words).parameters["currents_ua"].default
    assert cfg["span_ms"] == inspect.signature(_e2e.fit_words).parameters["t_hh_ms"].default


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
    assert fit.fit_settings(cfg["optimizer"]) == FitSettings()

    def check_types(table: Table, values: dict):
        for key, field in table.fields.items():
            if isinstance(field, Table):
                check_types(field, values[key])
            else:
                assert type(values[key]) is {"int": int, "float": float}[field.type], key

    check_types(fit.OPTIMIZER, cfg["optimizer"])
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


def test_every_moved_optimizer_key_names_a_fit_settings_field():
    for old, new in fit.OPTIMIZER_MOVED.items():
        _, stage, name = new.split(".")
        assert hasattr(getattr(FitSettings(), stage), name), old
    errors = errors_of(fit_config(optimizer={old: 1 for old in fit.OPTIMIZER_MOVED}))
    assert errors == {f"optimizer.{old}": f"moved to {new}" for old, new in fit.OPTIMIZER_MOVED.items()}
    with pytest.raises(
        ConfigError, match="optimizer.es_generations: moved to optimizer.calibrate.generations"
    ):
        validate_config(fit_config(optimizer={"es_generations": 5}))


#: fit_hh.toml's [optimizer] before it had a sub-table per stage (the config the guide's fit ran with).
FIT_HH_FLAT = dict(
    es_generations=100, es_population=24, es_sigma=0.12, es_restarts=3, es_screen=10, es_extend=50,
    es_extend_above=1.5, es_extend_max=2.0, grad_steps=30, learning_rate=1.0, grad_min_word=8.0,
    polish_sweeps=40, polish_combine=8, polish_starts=1, retry_above=2.0, retries=1, sub_weight=0.0,
    n_save=1500,
)  # fmt: skip


def test_fit_hh_gives_the_fit_settings_it_gave_before():
    settings = fit.fit_settings(load_config(EXPERIMENTS / "fit_hh.toml")["optimizer"])
    expected = FitSettings(
        n_save=1500, sub_weight=0.0, retry_above=2.0, retries=1,
        calibrate=CalibrateSettings(generations=100, population=24, sigma=0.12, restarts=3, screen=10,
                                    extend=50, extend_above=1.5, extend_max=2.0),
        gradient=GradientSettings(steps=30, learning_rate=1.0, min_word=8.0),
        polish=PolishSettings(sweeps=40, combine=8, starts=1),
    )  # fmt: skip
    assert settings == expected
    # the old flat keys, each moved where OPTIMIZER_MOVED says, give the same settings
    nested: dict = {}
    for key, value in FIT_HH_FLAT.items():
        *stage, name = fit.OPTIMIZER_MOVED.get(key, f"optimizer.{key}").split(".")[1:]
        node = nested
        for s in stage:
            node = node.setdefault(s, {})
        node[name] = value
    assert fit.fit_settings(validate_config(fit_config(optimizer=nested))["optimizer"]) == expected


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
    text = dump_toml(cfg, ROOT, header="as run")
    assert tomllib.loads(text) == cfg and validate_config(tomllib.loads(text)) == cfg


def test_fixed_shapes_keep_their_message():
    errors = errors_of({"kind": "simulate", "models": [{"type": "hh", "t1": 1.0, "x0": [0.0]}]})
    assert "expected an array of shape (4,), got shape (1,)" in errors["models[0].x0"]


# ---- one tiny end-to-end run -----------------------------------------------------------------------

# 20 ms of HH time, two training currents and a step or two of each stage: this checks the plumbing
# (files, formats, ranges), not the quality of the fit. The fit's shapes (2 currents, 100 samples,
# 2 CMA-ES runs of 4) are those of tests/fit/test_stages.py, which runs in the same worker
# (tests/conftest.py), so the two share their compiled programs.
TINY = """
kind = "fit"
seed = 0
span_ms = 20.0

[chip]
capacitance_scaling = 0.1

[currents]
fit = [10.0, 20.0]
evaluate = [0.0, 5.0, 10.0, 15.0]

[optimizer]
retries = 0
n_save = 100

[optimizer.calibrate]
generations = 2
extend = 0
population = 4
restarts = 2
screen = 1

[optimizer.gradient]
steps = 1

[optimizer.polish]
sweeps = 1
combine = 1

[report]
n_save = 100
trace_currents = [0.0, 15.0]
fi_step = 5.0   # the evaluation's 4 currents, and 4 more below an onset: no new compilation
fi_refine = 1.0
"""


@pytest.mark.slow
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
        assert npz["v_hh"].shape == npz["v_chip_fitted"].shape == npz["v_chip_nnls"].shape == (4, 100)
        assert npz["ts_ms"][-1] == pytest.approx(20.0, rel=1e-12)

    # the calibration and the attempt were saved as they ended; interrupted after the calibration
    # (its attempt file gone), the same command resumes there and ends on the same words
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == ["attempt_seed0.json",
                                                                     "calibration_seed0.npz"]  # fmt: skip
    words_text = (out / "words.json").read_text()
    (out / "checkpoint" / "attempt_seed0.json").unlink()
    status, stdout, stderr = run_main(["run", config, "--out", out])
    assert status == 0, stderr
    assert "resuming" in stdout and "[resume] calibration with seed 0 loaded" in stdout
    assert "[calibrate]" not in stdout.split("[resume]")[1]  # nothing calibrated after the resume
    assert (out / "words.json").read_text() == words_text


@pytest.mark.slow
def test_auto_fit_currents_are_resolved_and_keep_three_held_out():
    target, _ = _e2e.make_target()
    cfg = validate_config(fit_config())
    assert fit.resolve_fit_currents(cfg, target) == [0.0, 5.0, 7.25, 7.75, 10.0, 15.0, 20.0]
    explicit = validate_config(fit_config(currents={"fit": [1.0, 2.0]}))
    assert fit.resolve_fit_currents(explicit, target) == [1.0, 2.0]
    crowded = validate_config(
        fit_config(currents={"evaluate": [0.0, 2.5, 5.0, 7.25, 7.75, 10.0, 15.0, 20.0]})
    )
    with pytest.raises(ConfigError) as info:
        fit.resolve_fit_currents(crowded, target)
    (path, message), *_ = info.value.errors
    assert path == "currents.evaluate"
    assert "at least 3 currents not among the automatic training currents 0, 5, 7.25" in message
    assert message.endswith("got 1")
