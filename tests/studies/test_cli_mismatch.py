"""The ``kind = "mismatch"`` runner end to end: results, resume, config errors, failed chips, an HH target."""

import contextlib
import io
import json

import numpy as np
import pytest

import ndjax
from ndjax.cli import _runner
from ndjax.cli._config import ConfigError, parse_config
from studies.test_run import assert_same

# ---- the runner ----------------------------------------------------------------------------------

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
[compensation]
offsets = [-0.2, 0.2]
rebalance_factors = [0.9, 1.1]
retune_steps = 1
retune_generations = 1
retune_population = 2
robust_train_chips = 2
robust_generations = 1
robust_population = 2
[report]
example_chips = 1
dpi = 40
"""


def run_main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = _runner.main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


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
    assert_same(again, first)
    # another config into the same folder is refused
    config.write_text(CONFIG.replace("n_chips = 4", "n_chips = 5"))
    status, _, stderr = run_main(["run", config, "--out", out])
    assert status == 2 and "different config" in stderr


@pytest.mark.parametrize(
    "text, path, message",
    [
        ("[study]\nsigmaa = 0.1", "study.sigmaa", "did you mean 'sigma'"),
        ("[study]\nsigma = [0.1, -0.1]", "study.sigma[1]", "in 0..1"),
        ("[study]\nreference = 'hh'", "study.reference", "expected one of"),
        ("[study]\ncentre_sigma = -0.015", "study.centre_sigma", "in 0..1.8"),
        ("[compensation]\nrebalance_factors = [1.0]", "compensation.rebalance_factors", "other than 1"),
        ("[currents]\nvalues = []", "currents.values", "at least 1 current"),
        ("[currents]\nvalues = [1.0, 1.0]", "currents.values[1]", "duplicate"),
        ("[currents]\nunit = 'pA'", "currents.unit", "expected one of"),
        ("[compensation]\nrobust_search = 'cma'", "compensation.robust_search", "expected one of"),
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


def test_runner_reports_failed_chips_with_the_reason(tmp_path):
    config = tmp_path / "mm.toml"
    config.write_text(
        'kind = "mismatch"\n[currents]\nvalues = [0.5]\nspan_ms = 5.0\nn_save = 101\n'
        "[spikes]\nthreshold = 0.82\nhysteresis = 0.05\n[study]\nn_chips = 3\nchunk = 3\n"
        "[compensation]\noffset = false\nrebalance = false\nretune = false\nrobust = false\n"
        "[solver]\nmax_steps = 20\n[report]\nexample_chips = 0\n"
    )
    status, stdout, stderr = run_main(["run", config, "--out", tmp_path / "out"])
    assert status == 0, stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    s0 = metrics["sigmas"][0]
    assert [f["chip"] for f in s0["failed_solves"]] == [0, 1, 2]
    assert all(f["reasons"] == ["step limit reached"] for f in s0["failed_solves"])
    assert s0["behaving_uncompensated"] == 0.0
    assert "3 failed solves" in stdout


def test_runner_with_a_fitted_words_file_uses_the_hh_target(tmp_path):
    """A words.json with an HH target: currents in uA/cm^2, the HH model is the reference, and its
    spike counts are those of ndjax.evaluate_words (an independent path to the same HH traces)."""
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
        "span_ms = 30.0\nn_save = 3001\n[study]\nn_chips = 2\nchunk = 2\n"
        "[compensation]\noffset = false\nrebalance = false\nretune = false\nrobust = false\n"
        "[report]\nexample_chips = 0\n"
    )
    status, stdout, stderr = run_main(["run", config, "--out", tmp_path / "out"])
    assert status == 0, stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["reference"] == "HH target"
    assert metrics["currents"] == ["0 uA/cm2", "10 uA/cm2"]
    np.testing.assert_allclose(metrics["spike_threshold_v"], target.threshold + target.v_shift)
    hh = ndjax.evaluate_words(target, words, [0.0, 10.0], t_hh_ms=30.0, n_save=3001)
    assert metrics["sigmas"][0]["reference"]["count"] == [m.hh_count for m in hh]
    assert metrics["sigmas"][0]["reference"]["count"][1] >= 2  # HH fires repetitively at 10 uA/cm^2


def test_sigma_takes_one_value_or_a_list():
    assert parse_config('kind = "mismatch"\n[study]\nsigma = 0.1\n')["study"]["sigma"] == [0.1]
    assert parse_config('kind = "mismatch"\n[study]\nsigma = [0.1, 0.2]\n')["study"]["sigma"] == [0.1, 0.2]
    with pytest.raises(ConfigError, match="study.sigma"):
        parse_config('kind = "mismatch"\n[study]\nsigma = "0.1"\n')
