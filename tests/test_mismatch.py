"""Mismatch studies: the kernel against direct solves, chip identity, 'behaves', compensations,
resuming an interrupted study, sharding over 4 host devices, and the ``kind = "mismatch"`` runner."""

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ndjax
from ndjax.cli import _runner
from ndjax.cli._config import ConfigError, parse_config
from ndjax.studies import _mismatch as M
from ndjax.studies._settings import (
    CompensationSettings,
    OffsetSettings,
    RebalanceSettings,
    RetuneSettings,
    RobustSettings,
)

# 5 ms of chip time from [0.7, 0, 0, 0]: the default chip peaks at 1.65 ms and 1.82 ms later (SPEC 2),
# so it fires 2 spikes at 0 nA
CHIP = ndjax.nd_chip()
STUDY = M.Study(
    words=CHIP.words,
    biases=CHIP.biases,
    currents=np.array([0.0, 5e-10]),
    ts=np.linspace(0.0, 5e-3, 401),
    y0=np.array([0.7, 0.0, 0.0, 0.0]),
    threshold=0.9,
    hysteresis=0.05,
    sigma=0.15,
    seed=3,
)
OFFSETS = [-1e-10, 1e-10, 2e-10]  # A
KW = dict(
    # offsets as fractions of offset_unit = 1 A: the absolute currents above
    compensation=CompensationSettings(
        offset=OffsetSettings(offsets=tuple(OFFSETS)),
        rebalance=RebalanceSettings(factors=(0.9, 1.0, 1.1)),
        retune=RetuneSettings(generations=2, population=2, steps=1, learning_rate=0.02),
        robust=RobustSettings(train_chips=3, generations=1, population=2),
    ),
    offset_unit=1.0,
)


@pytest.fixture(scope="module")
def ref():
    return M.nominal_reference(STUDY)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(currents=np.array([0.0, np.nan])), "currents"),
        (dict(ts=np.linspace(0.0, 1e-3, 5)[::-1]), "ts"),
        (dict(sigma=-0.1), "sigma"),
        (dict(words=ndjax.NDWords(jnp.array([1024.0, 307.0, 3.0]), CHIP.words.e_rev, CHIP.words.i_b)), "dg"),
        (dict(words=ndjax.NDWords(CHIP.words.g, CHIP.words.e_rev, CHIP.words.i_b[0])), "dIb"),
        (dict(y0=np.array([0.7, 0.0, 0.0])), "y0"),
        (dict(segments=0), "segments"),
        (dict(threshold=np.inf), "threshold"),
        (dict(centre_sigma=-0.01), "centre_sigma"),
        (dict(kappa_sigma=np.nan), "kappa_sigma"),
    ],
)
def test_study_rejects_bad_input(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(STUDY, **change)


def test_chip_identity_does_not_depend_on_batch():
    one = M.chip_mismatch(STUDY, np.array([7]))
    many = M.chip_mismatch(STUDY, np.arange(10))
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(many), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[0], np.asarray(b)[7])
    other_seed = M.chip_mismatch(dataclasses.replace(STUDY, seed=4), np.array([7]))
    assert not np.allclose(np.asarray(other_seed.g), np.asarray(one.g))


def test_optional_mismatch_sources_add_to_the_same_chips(ref):
    """Centre and kappa mismatch (off by default) keep each chip's SPEC draws and change how it
    fires; the kernel runs either pytree."""
    more = dataclasses.replace(STUDY, centre_sigma=0.015, kappa_sigma=0.05)
    base, extra = M.chip_mismatch(STUDY, np.arange(6)), M.chip_mismatch(more, np.arange(6))
    assert base.centres is None and extra.centres.shape == (6, 3, 2, 7)
    np.testing.assert_array_equal(np.asarray(base.i_b), np.asarray(extra.i_b))
    cur = np.full(6, STUDY.currents[0])
    r0 = M.run_jobs(STUDY, M.broadcast_words(STUDY.words, 6), base, cur)
    r1 = M.run_jobs(more, M.broadcast_words(STUDY.words, 6), extra, cur)
    assert np.all(r0.status == M.OK) and np.all(r1.status == M.OK)
    assert not np.allclose(r0.rate, r1.rate)


def test_rate_gradient_is_finite_without_spikes_and_right_with_them():
    """The rate is differentiable in the sampled voltage; below two spikes it is 0 with a zero
    gradient (not NaN, which would poison an optimiser's state for every chip of a batch)."""
    ts = jnp.linspace(0.0, 1e-3, 101)

    @jax.jit
    def rate(v):
        return M._spike_stats(ts, v, 0.9, 0.05)[1]

    flat = jnp.full(101, 0.7)
    one = flat.at[40].set(1.0)
    two = one.at[60].set(0.95).at[61].set(0.95)
    for v in (flat, one):
        g = jax.grad(rate)(v)
        assert float(rate(v)) == 0.0 and np.all(np.asarray(g) == 0.0)
    g = np.asarray(jax.grad(rate)(two))
    assert np.all(np.isfinite(g)) and np.count_nonzero(g) > 0
    for i in np.flatnonzero(g):  # the samples bracketing the crossings: central differences
        h = 1e-6
        fd = (float(rate(two.at[i].add(h))) - float(rate(two.at[i].add(-h)))) / (2 * h)
        assert g[i] == pytest.approx(fd, rel=1e-5)


def test_kernel_matches_direct_solves(ref):
    """Counts and rates of the study kernel equal a plain simulate + spike_times per chip."""
    idx = np.arange(4)
    mm = M.chip_mismatch(STUDY, idx)
    r = M.responses_grid(STUDY, M.broadcast_words(STUDY.words, 4), mm)
    for i in idx:
        chip = dataclasses.replace(CHIP, mismatch=jax.tree.map(lambda x, i=i: x[i], mm))
        for j, cur in enumerate(STUDY.currents):
            tr = ndjax.simulate(ndjax.NEURODYN, ndjax.chip_params(chip), float(cur), STUDY.y0, STUDY.ts,
                                rtol=STUDY.rtol, atol=STUDY.atol)  # fmt: skip
            t = ndjax.spike_times(STUDY.ts, np.asarray(tr.ys[:, 0]), 0.9, 0.05)
            assert r.count[i, 0, j] == len(t)
            want = (len(t) - 1) / (t[-1] - t[0]) if len(t) >= 2 else 0.0
            np.testing.assert_allclose(r.rate[i, 0, j], want, rtol=1e-9)
    assert np.all(r.status == M.OK)
    # the nominal reference is the unperturbed chip: 2 spikes at 0 nA in 5 ms
    assert ref.count[0] == 2


def test_segmented_runs_agree_with_one_solve():
    """Segments (regrouped by cost between them) restart the step control from the saved state:
    same spike counts, rates within the tolerance's reach, and the same failure reporting."""
    idx = np.arange(6)
    mm = M.chip_mismatch(STUDY, idx)
    words = M.repeat_tree(M.broadcast_words(STUDY.words, 6), 2)
    mm2 = M.repeat_tree(mm, 2)
    cur = np.tile(STUDY.currents, 6)
    one = M.run_jobs(STUDY, words, mm2, cur, block=4)
    seg = M.run_jobs(dataclasses.replace(STUDY, segments=3), words, mm2, cur, block=4)
    np.testing.assert_array_equal(seg.count, one.count)
    np.testing.assert_allclose(seg.rate, one.rate, rtol=1e-3)
    assert np.all(seg.status == M.OK) and np.all(seg.steps > 0)
    capped = M.run_jobs(dataclasses.replace(STUDY, segments=3, max_steps=5), words, mm2, cur, block=4)
    assert np.all(capped.status == M.MAX_STEPS) and np.all(capped.count == -1)


def test_behaves_rules():
    ref_c, ref_r = np.array([0, 1, 10]), np.array([0.0, 0.0, 100.0])
    ok = M.behaves(
        np.array([[0, 2, 10], [1, 1, 11], [0, 1, 10], [0, 1, 10], [-1, 1, 10]]),
        np.array(
            [[0.0, 50.0, 104.9], [0.0, 0.0, 95.1], [0.0, 0.0, 105.1], [0.0, 0.0, 94.0], [np.nan, 0, 100]]
        ),
        ref_c, ref_r, 1, 0.05,
    )  # fmt: skip
    # a second spike where the reference fires once is repetitive firing: not behaving
    assert ok.tolist() == [False, True, False, False, False]


def test_failed_solve_is_reported_not_counted():
    mm = M.chip_mismatch(STUDY, np.arange(2))
    short = dataclasses.replace(STUDY, max_steps=5)
    r = M.responses_grid(short, M.broadcast_words(STUDY.words, 2), mm)
    assert np.all(r.status == M.MAX_STEPS)
    assert np.all(r.count == -1) and np.all(np.isnan(r.rate))
    assert not M.behaves(r.count[:, 0], r.rate[:, 0], [3, 3], [1.0, 1.0], 1, 0.05).any()


def test_inverse_words_undo_the_mismatch_factors():
    n = 2
    mm = M.chip_mismatch(STUDY, np.arange(n))
    w = M.broadcast_words(STUDY.words, n)
    inv = M.inverse_words(w, mm)
    np.testing.assert_array_equal(
        np.asarray(inv.g), np.clip(np.round(np.asarray(w.g) / np.asarray(mm.g)), 0, 1023)
    )
    ones = jax.tree.map(jnp.ones_like, mm)
    same = M.inverse_words(w, ones)
    for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(w), strict=True):
        np.testing.assert_array_equal(a, b)
    assert M.word_changes(same, w).tolist() == [0, 0]


def test_robust_words_start_from_the_nominal_words(ref):
    """With no generation the robust words are the nominal ones, and the recorded objective is
    minus the fraction of training chips (never study chips) within 10%, plus the capped error term."""
    words, history = M.robust_words(STUDY, ref, n_train=3, generations=0)
    for a, b in zip(jax.tree.leaves(words), jax.tree.leaves(STUDY.words), strict=True):
        np.testing.assert_array_equal(a, b)
    mm = M.chip_mismatch(STUDY, M.TRAIN_OFFSET + np.arange(3))
    r = M.responses_grid(STUDY, M.broadcast_words(STUDY.words, 3), mm)
    count, rate = r.count[:, 0], r.rate[:, 0]
    frac = M.within_rate(count, rate, ref, 0.1).mean()
    err = np.minimum(np.abs(rate - ref.rate) / ref.rate, 1.0).mean()  # the reference fires at both currents
    np.testing.assert_allclose(history, [-frac + 0.1 * err])


def test_robust_word_search_moves_every_kind_of_word(ref):
    """space="words": CMA-ES over all 48 words; candidates are integer words in range, a zero
    weight can grow, and the search is reproducible."""
    thetas = np.zeros((2, 48))
    thetas[1] = 0.5
    cands = M._robust_candidates(STUDY.words, thetas, "words")
    for a, b in zip(
        jax.tree.leaves(jax.tree.map(lambda x: x[0], cands)), jax.tree.leaves(STUDY.words), strict=True
    ):
        np.testing.assert_array_equal(a, b)  # theta 0: the nominal words
    moved = jax.tree.map(lambda x: np.asarray(x[1]), cands)
    i_b0 = np.asarray(STUDY.words.i_b)
    assert np.all(moved.i_b[i_b0 == 0] == 6)  # (0 + 10) e^0.5 - 10 = 6.49, rounded
    assert np.all(moved.i_b <= 1023) and moved.g[0] == 1023  # clipped to the range
    np.testing.assert_array_equal(moved.e_rev, np.asarray(STUDY.words.e_rev) + 20)
    kw = dict(n_train=2, generations=2, population=3, space="words")
    w1, h1 = M.robust_words(STUDY, ref, **kw)
    w2, h2 = M.robust_words(STUDY, ref, **kw)
    np.testing.assert_array_equal(h1, h2)
    assert np.all(np.diff(h1) <= 0) and len(h1) == 3
    for a, b in zip(jax.tree.leaves(w1), jax.tree.leaves(w2), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="space"):
        M.robust_words(STUDY, ref, space="word")


def test_robust_factor_search_can_use_cmaes(ref, monkeypatch):
    """search="cmaes" runs CMA-ES over the 13 factors (search="auto" keeps the (1 + P) strategy
    there); reproducible, and an unknown search is refused."""
    from ndjax.fit import _search as _cmaes

    made = []

    class Spy(_cmaes.CMAES):
        def __init__(self, dim, *args, **kwargs):
            made.append(dim)
            super().__init__(dim, *args, **kwargs)

    monkeypatch.setattr(_cmaes, "CMAES", Spy)
    kw = dict(n_train=2, generations=2, population=3)
    w0, h0 = M.robust_words(STUDY, ref, **kw)
    assert made == []  # factors, "auto": the (1 + P) evolution strategy
    w1, h1 = M.robust_words(STUDY, ref, search="cmaes", **kw)
    w2, h2 = M.robust_words(STUDY, ref, search="cmaes", **kw)
    assert made == [13, 13]
    np.testing.assert_array_equal(h1, h2)
    assert np.all(np.diff(h1) <= 0) and len(h1) == 3 and h1[0] == h0[0]
    for a, b in zip(jax.tree.leaves(w1), jax.tree.leaves(w2), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="search"):
        M.robust_words(STUDY, ref, search="cma")


def test_robust_config_choices_are_the_library_ones():
    """The config schema spells the robust search spaces and searches out (it does not import
    ndjax._mismatch); they must stay the ones robust_words accepts."""
    from ndjax.cli import _config

    keys = _config.MISMATCH_COMPENSATION.fields
    assert keys["robust_space"].choices == M.ROBUST_SPACES
    assert keys["robust_search"].choices == M.ROBUST_SEARCHES


def test_rebalance_candidates_ordered_by_change():
    c = M.rebalance_candidates(np.array([1023.0, 307.0, 3.0]), [0.9, 1.0, 1.1])
    np.testing.assert_array_equal(c[0], [1023, 307, 3])  # unchanged first
    changes = np.abs(c - [1023, 307, 3]).sum(axis=1)
    assert np.all(np.diff(changes) >= 0)
    assert c[:, 0].max() == 1023  # clipped at the top of the range
    assert len({tuple(x) for x in c}) == len(c)


def test_offset_compensation_picks_smallest_working_offset(ref):
    mm = M.chip_mismatch(STUDY, np.arange(6))
    off, r = M.compensate_offset(STUDY, mm, ref, OFFSETS)
    grid = M.responses_grid(STUDY, M.broadcast_words(STUDY.words, 6), mm, [0.0, -1e-10, 1e-10, 2e-10])
    ok = M.behaves(grid.count, grid.rate, ref.count, ref.rate, 1, 0.05)  # (6, 4), by |offset|
    for i in range(6):
        if not ok[i].any():
            assert np.isnan(off[i])
        else:
            assert off[i] == [0.0, -1e-10, 1e-10, 2e-10][int(np.argmax(ok[i]))]
            np.testing.assert_array_equal(r.count[i], grid.count[i, int(np.argmax(ok[i]))])


def _study_arrays(folder, n=6, chunk=2, **extra):
    return M.run_study(STUDY, n, ref=M.nominal_reference(STUDY), chunk=chunk, folder=folder, progress=False,
                       **{**KW, **extra})  # fmt: skip


def _assert_same(a, b, rtol=0.0):
    """Equal results (wall times aside); ``rtol`` for float arrays only."""
    assert a.keys() == b.keys()
    for k in a:
        if k.endswith("seconds"):
            continue
        if rtol and np.issubdtype(a[k].dtype, np.floating):
            np.testing.assert_allclose(a[k], b[k], rtol=rtol, err_msg=k)
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    return _study_arrays(tmp_path_factory.mktemp("full"))


class Interrupted(Exception):
    """Stands for a crash or Ctrl-C (pytest handles a real KeyboardInterrupt itself)."""


def test_interrupted_study_resumes_to_the_same_result(tmp_path, full_run, monkeypatch):
    calls = []
    real = M.study_chunk

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise Interrupted  # the first run dies during its second chunk
        return real(*a, **k)

    monkeypatch.setattr(M, "study_chunk", flaky)
    with pytest.raises(Interrupted):
        _study_arrays(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "chunk_00000.npz",
        "robust_words.npz",
    ]  # no partial file
    resumed = _study_arrays(tmp_path)
    assert len(calls) == 2 + 2  # then chunks 2 and 3; chunk 1 was loaded, not recomputed
    _assert_same(resumed, full_run)
    assert full_run["behaves"].shape == (6,)
    for name in ("offset_behaves", "rebalance_behaves", "retune_behaves", "retune_words", "robust_behaves"):
        assert full_run[name].shape[0] == 6


def test_resume_refuses_another_study_folder(tmp_path, full_run):
    _study_arrays(tmp_path, n=4, chunk=2)
    with pytest.raises(ValueError, match="another study"):
        _study_arrays(tmp_path, n=6, chunk=3)


def test_chunking_does_not_change_results(tmp_path, full_run):
    _assert_same(_study_arrays(tmp_path, chunk=4), full_run)


SHARDED = textwrap.dedent(
    """
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    sys.path.insert(0, {tests!r})
    import test_mismatch as T
    from ndjax.studies import _mismatch as M
    assert jax.device_count() == 4, jax.devices()
    mesh = M.device_mesh()
    res = M.run_study(T.STUDY, 6, ref=M.nominal_reference(T.STUDY), chunk=3, folder=None, progress=False,
                      mesh=mesh, block=8, **T.KW)
    np.savez({out!r}, **res)
    """
)


def test_sharded_over_four_devices_equals_one_device(tmp_path, full_run):
    out = tmp_path / "sharded.npz"
    script = SHARDED.format(tests=os.path.dirname(__file__), out=str(out))
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as f:
        sharded = {k: f[k] for k in f.files}
    # Counts, verdicts, chosen offsets and words are identical. Rates agree to 1e-7, not bit for bit:
    # XLA vectorises a batch of 2 lanes per device differently from one of 512, and the last-bit
    # differences move the adaptive steps slightly (measured: 7e-8 relative at most).
    _assert_same(sharded, full_run, rtol=1e-6)


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
    _assert_same(again, first)
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
