"""Faults a user meets get a message and an exit status, never a traceback: files that are not
UTF-8, words files whose HH target makes no physical sense, output folders that cannot be created
or written, a full disk mid-run, a corrupt saved chunk, Ctrl-C.

The real runs copy or repeat the tiny mismatch run (tests/cli/conftest.py) and reuse its compiled
programs; the other faults are refused before any solve."""

import errno
import json
import pathlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_support import SHORT, run_main
from helpers import assert_same_results

from ndjax._words_io import WordsFileError, load_words, validate_words
from ndjax.cli import _main
from ndjax.cli._manifest import read_manifest
from ndjax.studies import _run


@pytest.fixture
def work(tiny_mismatch, tmp_path) -> Path:
    """A copy of the finished tiny run: ``tiny.toml``, ``words.json``, ``out/``."""
    return Path(shutil.copytree(tiny_mismatch, tmp_path / "work"))


@pytest.fixture
def fresh(tiny_mismatch, tmp_path) -> Path:
    """The tiny run's config and words file, with no run yet."""
    for name in ("tiny.toml", "words.json"):
        shutil.copyfile(tiny_mismatch / name, tmp_path / name)
    return tmp_path / "tiny.toml"


def _results(out: Path) -> dict:
    with np.load(out / "results.npz") as f:
        return {k: f[k] for k in f.files}


# ---- input files -----------------------------------------------------------------------------------


def test_a_config_that_is_not_utf8_is_named_with_the_byte_offset(tmp_path):
    config = tmp_path / "latin1.toml"
    config.write_bytes('kind = "mismatch"\nname = "café"\n'.encode("latin-1"))
    status, stdout, stderr = run_main(["run", config, "--out", tmp_path / "out"])
    assert status == 2 and stdout == "" and not (tmp_path / "out").exists()
    assert f"invalid config {config}" in stderr
    assert "not UTF-8 text: byte 0xe9 at offset 29 (line 2)" in stderr


def test_a_words_file_that_is_not_utf8_is_named_with_the_byte_offset(fresh):
    words = fresh.parent / "words.json"
    words.write_bytes(words.read_bytes().replace(b'"format"', b'"f\xf6rmat"'))
    with pytest.raises(WordsFileError, match=r"not UTF-8 text: byte 0xf6 at offset 6 \(line 2\)"):
        load_words(words)
    status, _, stderr = run_main(["run", fresh, "--out", fresh.parent / "out"])
    assert status == 2 and "chip.words" in stderr and str(words) in stderr and "offset 6" in stderr


@pytest.mark.parametrize("key", ["gna", "gk", "gl"])
def test_a_negative_hh_conductance_is_refused(fresh, key):
    words = json.loads((fresh.parent / "words.json").read_text())
    words["hh"] = {"gna": 120.0, "gk": 36.0, "gl": 0.3, "ena": 115.0, "ek": -12.0, "el": 10.6, key: -1.0}
    with pytest.raises(WordsFileError) as info:
        validate_words(words)
    assert info.value.errors == [(f"hh.{key}", "expected a conductance >= 0 (mS/cm^2), got -1.0")]
    words["hh"][key] = 0.0  # a missing channel is physical
    assert validate_words(words)["hh"][key] == 0.0
    if key == "gk":  # through the runner, once
        words["hh"][key] = -1.0
        (fresh.parent / "words.json").write_text(json.dumps(words))
        status, _, stderr = run_main(["run", fresh, "--out", fresh.parent / "out"])
        assert status == 2 and "chip.words" in stderr and "hh.gk: expected a conductance >= 0" in stderr


# ---- the output folder -----------------------------------------------------------------------------


def test_an_output_folder_that_cannot_be_created(fresh):
    blocker = fresh.parent / "a_file"
    blocker.write_text("")
    status, _, stderr = run_main(["run", fresh, "--out", blocker / "out"])
    assert status == 2 and f"cannot create the output folder {blocker / 'out'}: Not a directory" in stderr


def test_an_output_folder_that_cannot_be_written(fresh, monkeypatch):
    out = fresh.parent / "out"
    real = pathlib.Path.write_text

    def denied(self, *a, **k):  # a read-only folder (chmod does not stop root, who runs some CIs)
        if out in self.parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "write_text", denied)
    status, _, stderr = run_main(["run", fresh, "--out", out])
    assert status == 2 and f"cannot write {out / 'manifest.json'}: Permission denied" in stderr


def test_a_full_disk_mid_run_names_the_file_and_the_rerun_resumes(fresh, tiny_mismatch, monkeypatch):
    out = fresh.parent / "out"
    real, calls = np.savez, []

    def full(file, *a, **k):
        calls.append(file)
        if len(calls) == 2:  # the second chunk: part of it reaches the disk, then no space is left
            Path(file).write_bytes(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(file, *a, **k)

    monkeypatch.setattr(_run.np, "savez", full)
    status, _, stderr = run_main(["run", fresh, "--out", out])
    chunks = out / "chunks" / "sigma_0"
    assert status == 2
    assert (
        f"cannot write {chunks / 'chunk_00001.npz'}: No space left on device; finished chunks are kept in "
        f"{out}; run the same command again to resume" in stderr
    )
    assert sorted(p.name for p in chunks.iterdir()) == ["chunk_00000.npz"]  # no partial file left
    assert "chunks/sigma_0/chunk_00000.npz" in read_manifest(out).written
    monkeypatch.undo()
    status, stdout, stderr = run_main(["run", fresh, "--out", out])
    assert status == 0 and "resuming" in stdout, stderr
    assert_same_results(_results(out), _results(tiny_mismatch / "out"))


# ---- saved work ------------------------------------------------------------------------------------


def test_a_corrupt_chunk_is_named_with_what_to_do(work):
    out, chunks = work / "out", work / "out" / "chunks" / "sigma_0"
    (chunks / "chunk_00001.npz").write_bytes((chunks / "chunk_00001.npz").read_bytes()[:200])  # truncated
    status, _, stderr = run_main(["run", work / "tiny.toml", "--out", out])
    assert status == 2 and "Traceback" not in stderr
    assert f"{chunks / 'chunk_00001.npz'}: cannot read the saved file" in stderr
    assert "delete it to recompute that chunk" in stderr and "run the same command again" in stderr
    with np.load(chunks / "chunk_00000.npz") as f:  # an array missing
        np.savez(chunks / "chunk_00000.npz", **{k: f[k] for k in f.files if k != "rate"})
    status, _, stderr = run_main(["run", work / "tiny.toml", "--out", out])
    assert status == 2 and f"{chunks / 'chunk_00000.npz'}: the saved file has no array 'rate'" in stderr


# ---- Ctrl-C ----------------------------------------------------------------------------------------


def test_ctrl_c_keeps_the_finished_chunks_and_exits_130(fresh, tiny_mismatch, monkeypatch):
    out = fresh.parent / "out"
    real, calls = _run.study_chunk, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(_run, "study_chunk", interrupted)
    status, _, stderr = run_main(["run", fresh, "--out", out])
    assert status == 130
    message = f"ndjax: interrupted; finished chunks are kept in {out}; run the same command again to resume"
    assert message in stderr
    assert (out / "chunks" / "sigma_0" / "chunk_00000.npz").exists()
    monkeypatch.undo()
    status, stdout, stderr = run_main(["run", fresh, "--out", out])
    assert status == 0 and "resuming" in stdout, stderr
    assert_same_results(_results(out), _results(tiny_mismatch / "out"))


def test_ctrl_c_in_a_kind_that_does_not_resume_or_before_the_run(tmp_path, monkeypatch):
    config = tmp_path / "short.toml"
    config.write_text(SHORT)
    simulate = _main.KINDS["simulate"]

    def execute(run_dir):
        raise KeyboardInterrupt

    monkeypatch.setattr(simulate, "prepare", lambda cfg, source: execute)
    status, _, stderr = run_main(["run", config, "--out", tmp_path / "out"])
    assert status == 130 and "interrupted; the files written so far are in" in stderr and "--force" in stderr

    def prepare(cfg, source):
        raise KeyboardInterrupt

    monkeypatch.setattr(simulate, "prepare", prepare)
    status, _, stderr = run_main(["run", config, "--out", tmp_path / "out2"])
    assert status == 130 and "interrupted before the run started" in stderr
    assert not (tmp_path / "out2").exists()
