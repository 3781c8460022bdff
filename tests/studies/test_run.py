"""A study run: resuming an interrupted study, refusing a foreign folder, chunking, and sharding over
4 host devices."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import assert_same_results

from ndjax import studies as S
from ndjax.studies import _run
from studies.common import KW, STUDY


def _study_arrays(folder, n=6, chunk=2, **extra):
    return S.run_study(STUDY, n, ref=S.nominal_reference(STUDY), chunk=chunk, folder=folder, progress=False,
                       **{**KW, **extra})  # fmt: skip


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    return _study_arrays(tmp_path_factory.mktemp("full"))


class Interrupted(Exception):
    """Stands for a crash or Ctrl-C (pytest handles a real KeyboardInterrupt itself)."""


@pytest.mark.slow
def test_interrupted_study_resumes_to_the_same_result(tmp_path, full_run, monkeypatch):
    calls = []
    real = _run.study_chunk

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise Interrupted  # the first run dies during its second chunk
        return real(*a, **k)

    monkeypatch.setattr(_run, "study_chunk", flaky)
    with pytest.raises(Interrupted):
        _study_arrays(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "chunk_00000.npz",
        "robust_words.npz",
    ]  # no partial file
    resumed = _study_arrays(tmp_path)
    assert len(calls) == 2 + 2  # then chunks 2 and 3; chunk 1 was loaded, not recomputed
    assert_same_results(resumed, full_run)
    assert full_run["behaves"].shape == (6,)
    for name in ("offset_behaves", "rebalance_behaves", "retune_behaves", "retune_words", "robust_behaves"):
        assert full_run[name].shape[0] == 6
    assert full_run["retune_words"].shape == (6, 48) and full_run["robust_words"].shape == (48,)
    robust_extras = {"robust_words", "robust_history", "robust_fit_seconds"}
    assert set(full_run) - robust_extras == _run.chunk_names(KW["compensation"])  # what a chunk holds


def test_resume_refuses_another_study_folder(tmp_path):
    _study_arrays(tmp_path, n=4, chunk=2)
    with pytest.raises(ValueError, match="another study"):
        _study_arrays(tmp_path, n=6, chunk=3)


@pytest.mark.slow
def test_chunking_does_not_change_results(tmp_path, full_run):
    assert_same_results(_study_arrays(tmp_path, chunk=4), full_run)


def test_disabled_compensations_are_skipped_and_bad_settings_refused():
    comp = KW["compensation"]
    off = S.CompensationSettings(
        offset=comp.offset,
        rebalance=S.RebalanceSettings(enabled=False),
        retune=S.RetuneSettings(enabled=False),
        robust=S.RobustSettings(enabled=False),
    )
    res = S.run_study(STUDY, 2, ref=S.nominal_reference(STUDY), compensation=off, offset_unit=1.0, chunk=2,
                      progress=False)  # fmt: skip
    first = {k.split("_")[0] for k in res}
    assert first == {"index", "count", "rate", "status", "behaves", "within", "seconds", "offset"}
    assert set(res) == _run.chunk_names(off)
    bad = S.CompensationSettings(retune=S.RetuneSettings(population=0))
    with pytest.raises(ValueError, match="population"):
        S.run_study(STUDY, 2, ref=S.nominal_reference(STUDY), compensation=bad, progress=False)


SHARDED = textwrap.dedent(
    """
    import dataclasses, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    sys.path.insert(0, {tests!r})
    from studies.common import KW, STUDY
    from ndjax import studies as S
    assert jax.device_count() == 4, jax.devices()
    mesh = S.device_mesh()
    # the kernel's sharded path (uncompensated, offset) and the retune's own: the other
    # compensations call the same kernel (one compile each saved in this fresh process)
    comp = dataclasses.replace(KW["compensation"], rebalance=S.RebalanceSettings(enabled=False),
                               robust=S.RobustSettings(enabled=False))
    res = S.run_study(STUDY, 6, ref=S.nominal_reference(STUDY), chunk=3, folder=None, progress=False,
                      mesh=mesh, block=8, **{{**KW, "compensation": comp}})
    np.savez({out!r}, **res)
    """
)


@pytest.mark.slow
def test_sharded_over_four_devices_equals_one_device(tmp_path, full_run):
    out = tmp_path / "sharded.npz"
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = SHARDED.format(tests=tests, out=str(out))
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
    assert {k for k in full_run if k.startswith(("offset", "retune"))} <= sharded.keys()
    assert_same_results(sharded, {k: full_run[k] for k in sharded}, rtol=1e-6)
