"""``kind = "mismatch"``: its schema (errors by key path, the ``[compensation.*]`` tables ->
CompensationSettings, moved keys), mismatch.toml, and runs: results, resuming, failed chips, a fitted
words file."""

import json
from pathlib import Path

import numpy as np
import pytest
from cli_support import NO_COMPENSATION, run_main
from helpers import assert_same_results

import ndjax
from ndjax import studies as M
from ndjax.cli._main import load_config, parse_config
from ndjax.cli._schema import ConfigError
from ndjax.cli.kinds import mismatch
from ndjax.studies._settings import (
    CompensationSettings,
    OffsetSettings,
    RebalanceSettings,
    RetuneSettings,
    RobustSettings,
)

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


# ---- the runner ----------------------------------------------------------------------------------

# The shapes and settings of tests/studies/common.py's STUDY and KW (2 currents, 401 samples, 3
# offsets: -0.1, 0.1, 0.2 nA as fractions of 0.5 nA, 3 factors, the same retune and robust
# searches): this file runs in the studies' worker (tests/conftest.py), so the run reuses their
# compiled kernels.
CONFIG = """
kind = "mismatch"
seed = 3
[currents]
values = [0.0, 0.5]
span_ms = 5.0
n_save = 401
[study]
n_chips = 4
chunk = 2
sigma = [0.05, 0.15]
[compensation.offset]
offsets = [-0.2, 0.2, 0.4]
[compensation.rebalance]
factors = [0.9, 1.0, 1.1]
[compensation.retune]
steps = 1
generations = 2
population = 2
learning_rate = 0.02
[compensation.robust]
train_chips = 3
generations = 1
population = 2
[report]
example_chips = 1
dpi = 40
"""


@pytest.mark.slow
def test_runner_writes_results_and_resumes(tmp_path):
    config = tmp_path / "mm.toml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    status, stdout, stderr = run_main(["run", config, "--out", out])
    assert status == 0, stderr
    for name in (
        "metrics.json",
        "results.npz",
        "rates_sigma0.png",
        "rates_sigma1.png",
        "restored_vs_sigma.png",
    ):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["sigma"] for s in metrics["sigmas"]] == [0.05, 0.15]
    s0 = metrics["sigmas"][0]
    assert s0["n_chips"] == 4 and s0["nominal_chip"]["behaves"] is True
    assert set(s0["methods"]) == {"offset", "rebalance", "retune", "robust"}
    assert "ETA" in stdout
    # 'auto' spike levels: halfway between the nominal chip's trough (~0.72 V) and peak (~0.92 V)
    assert 0.80 < metrics["spike_threshold_v"] < 0.84 and 0.03 < metrics["spike_hysteresis_v"] < 0.07
    with np.load(out / "results.npz") as f:
        first = {k: f[k] for k in f.files}
    # run again into the same folder: everything is loaded from the chunks, same results
    (out / "chunks" / "sigma_1" / "chunk_00001.npz").unlink()  # as if interrupted there
    status, stdout, stderr = run_main(["run", config, "--out", out])
    assert status == 0, stderr
    assert "resuming" in stdout
    with np.load(out / "results.npz") as f:
        again = {k: f[k] for k in f.files}
    assert_same_results(again, first)
    # another config into the same folder is refused, the key that differs named
    config.write_text(CONFIG.replace("n_chips = 4", "n_chips = 5"))
    status, _, stderr = run_main(["run", config, "--out", out])
    assert status == 2 and "study.n_chips: 4 in the folder's run, 5 now" in stderr


@pytest.mark.parametrize(
    "text, path, message",
    [
        ("[study]\nsigmaa = 0.1", "study.sigmaa", "did you mean 'sigma'"),
        ("[study]\nsigma = [0.1, -0.1]", "study.sigma[1]", "in 0..1"),
        ("[study]\nreference = 'hh'", "study.reference", "expected one of"),
        ("[study]\ncentre_sigma = -0.015", "study.centre_sigma", "in 0..1.8"),
        ("[compensation.rebalance]\nfactors = [1.0]", "compensation.rebalance.factors", "other than 1"),
        ("[compensation.offset]\noffsets = []", "compensation.offset.offsets", "at least 1"),
        ("[compensation.retune]\ngenerations = -1", "compensation.retune.generations", "in 0..100000"),
        ("[compensation.retune]\nsigma = 0", "compensation.retune.sigma", "> 0"),
        ("[compensation.robust]\nenabled = 1", "compensation.robust.enabled", "true or false"),
        (
            "[compensation]\nretune_generations = 3",
            "compensation.retune_generations",
            "moved to compensation.retune.generations",
        ),
        ("[compensation]\noffset = true", "compensation.offset", "moved to compensation.offset.enabled"),
        ("[compensation]\nrobust = false", "compensation.robust", "moved to compensation.robust.enabled"),
        (
            "[compensation]\nrebalance_factors = [1.1]",
            "compensation.rebalance_factors",
            "moved to compensation.rebalance.factors",
        ),
        (
            "[compensation]\nrobust_serch = 'es'",
            "compensation.robust_serch",
            "(it moved to compensation.robust.search)",
        ),
        ("[currents]\nvalues = []", "currents.values", "at least 1 value(s), got an empty array"),
        ("[currents]\nvalues = [1.0, 1.0]", "currents.values[1]", "duplicate"),
        ("[currents]\nunit = 'pA'", "currents.unit", "expected one of"),
        ("[compensation.robust]\nsearch = 'cma'", "compensation.robust.search", "expected one of"),
    ],
)
def test_config_errors(text, path, message):
    with pytest.raises(ConfigError) as info:
        parse_config('kind = "mismatch"\n' + text)
    assert any(p == path and message in m for p, m in info.value.errors), info.value.errors


def test_target_reference_needs_a_words_file(tmp_path):
    config = tmp_path / "mm.toml"
    config.write_text('kind = "mismatch"\n[study]\nreference = "target"\n')
    status, _, stderr = run_main(["run", config, "--out", tmp_path / "o"])
    assert status == 2 and "study.reference" in stderr
    config.write_text('kind = "mismatch"\n[chip]\nwords = "missing.json"\n')
    status, _, stderr = run_main(["run", config, "--out", tmp_path / "o"])
    assert status == 2 and "chip.words" in stderr and "missing.json" in stderr


@pytest.mark.slow
def test_runner_reports_failed_chips_with_the_reason(tmp_path):
    """A step budget of 215: the nominal chip (the reference) solves, chips 0 and 1 (200 and 197
    accepted steps when allowed more) do not and are listed (a budget that fails the reference is
    refused: tests/test_faults_physics.py)."""
    config = tmp_path / "mm.toml"
    config.write_text(
        'kind = "mismatch"\n[currents]\nvalues = [0.5]\nspan_ms = 5.0\nn_save = 101\n'
        "[spikes]\nthreshold = 0.82\nhysteresis = 0.05\n[study]\nn_chips = 3\nchunk = 3\n"
        + NO_COMPENSATION
        + "[solver]\nmax_steps = 215\n[report]\nexample_chips = 0\n"
    )
    status, stdout, stderr = run_main(["run", config, "--out", tmp_path / "out"])
    assert status == 0, stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    s0 = metrics["sigmas"][0]
    assert [f["chip"] for f in s0["failed_solves"]] == [0, 1]
    assert all(f["reasons"] == ["step limit reached"] for f in s0["failed_solves"])
    assert s0["behaving_uncompensated"] <= 1 / 3
    assert "2 failed solves" in stdout


@pytest.mark.slow
def test_runner_with_a_fitted_words_file_uses_the_hh_target(tmp_path):
    """A words.json with an HH target: currents in uA/cm^2, the HH model is the reference, and its
    spike counts are those of ndjax.evaluate_words (an independent path to the same HH traces).
    401 samples and 2 currents: the shapes of the studies' tests, whose kernels this run reuses."""
    target, words = ndjax.make_target()
    ints = [np.asarray(x).round().astype(int) for x in (words.g, words.e_rev, words.i_b)]
    ndjax.save_words(
        tmp_path / "words.json", dg=ints[0], dErev=ints[1], dIb=ints[2], v_ref=target.v_ref,
        i_voltage=target.i_voltage, i_master=target.i_master, i_ref=100e-9,
        capacitance_scaling=target.capacitance_scaling, scl_t=target.scl_t, scl_v=target.scl_v,
        v_mean=target.v_mean, hh=target.hh,
    )  # fmt: skip
    config = tmp_path / "mm.toml"
    config.write_text(
        'kind = "mismatch"\n[chip]\nwords = "words.json"\n[currents]\nvalues = [0.0, 10.0]\n'
        "span_ms = 30.0\nn_save = 401\n[study]\nn_chips = 2\nchunk = 2\n"
        + NO_COMPENSATION
        + "[report]\nexample_chips = 0\n"
    )
    status, stdout, stderr = run_main(["run", config, "--out", tmp_path / "out"])
    assert status == 0, stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["reference"] == "HH target"
    assert metrics["currents"] == ["0 uA/cm2", "10 uA/cm2"]
    np.testing.assert_allclose(metrics["spike_threshold_v"], target.threshold + target.v_shift)
    hh = ndjax.evaluate_words(target, words, [0.0, 10.0], t_hh_ms=30.0, n_save=401)
    assert metrics["sigmas"][0]["reference"]["count"] == [m.hh_count for m in hh]
    assert metrics["sigmas"][0]["reference"]["count"][1] >= 2  # HH fires repetitively at 10 uA/cm^2


def test_sigma_takes_one_value_or_a_list():
    assert parse_config('kind = "mismatch"\n[study]\nsigma = 0.1\n')["study"]["sigma"] == [0.1]
    assert parse_config('kind = "mismatch"\n[study]\nsigma = [0.1, 0.2]\n')["study"]["sigma"] == [0.1, 0.2]
    with pytest.raises(ConfigError, match="study.sigma"):
        parse_config('kind = "mismatch"\n[study]\nsigma = "0.1"\n')


def test_mismatch_toml_gives_the_compensation_settings_it_gave_before():
    cfg = load_config(EXPERIMENTS / "mismatch.toml")
    expected = CompensationSettings(
        offset=OffsetSettings(True, (-0.4, -0.2, -0.1, -0.05, 0.05, 0.1, 0.2, 0.4)),
        rebalance=RebalanceSettings(True, (0.8, 0.9, 1.0, 1.12, 1.25)),
        retune=RetuneSettings(True, generations=30, population=8, sigma=0.1, steps=0, learning_rate=0.02),
        robust=RobustSettings(),  # mismatch.toml leaves it at its defaults
    )
    assert mismatch.compensation_settings(cfg["compensation"]) == expected
    assert mismatch.compensation_settings(parse_config('kind = "mismatch"')["compensation"]) == (
        CompensationSettings()
    )
    off = parse_config('kind = "mismatch"\n[compensation.robust]\nenabled = false\n')
    assert mismatch.compensation_settings(off["compensation"]).robust == RobustSettings(enabled=False)


def test_mismatch_fit_1000_keeps_its_robust_search():
    cfg = load_config(EXPERIMENTS / "mismatch_fit_1000.toml")
    robust = mismatch.compensation_settings(cfg["compensation"]).robust
    assert robust == RobustSettings(True, train_chips=128, space="factors", search="cmaes", generations=150,
                                    population=16, sigma=0.1)  # fmt: skip


def test_study_defaults_are_the_studys():
    cfg = parse_config('kind = "mismatch"')
    for key in ("rtol", "atol", "max_steps", "segments"):
        assert cfg["solver"][key] == M.Study.__dataclass_fields__[key].default, key
    study = {k: f.default for k, f in M.Study.__dataclass_fields__.items()}
    assert (cfg["study"]["count_tol"], cfg["study"]["rate_tol"]) == (study["count_tol"], study["rate_tol"])
    assert cfg["study"]["exponent_sigma"] == list(study["exponent_sigma"])
    assert cfg["study"]["sigma"] == [study["sigma"]]


def test_a_misspelt_method_table_is_suggested_without_a_moved_note():
    with pytest.raises(ConfigError) as info:
        parse_config('kind = "mismatch"\n[compensation.ofset]\nenabled = false\n')
    (path, message), *_ = info.value.errors
    assert path == "compensation.ofset" and "did you mean 'offset'?" in message and "moved" not in message
