"""Run folders: manifest.json (what a run read and wrote), resuming only onto the same inputs (config
keys and input file contents), and ``--force`` removing exactly what an earlier run wrote.

Every test copies the finished tiny mismatch run (tests/cli/conftest.py) and changes it; the reruns
reuse its compiled programs, and most are refused before any solve."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from cli_support import run_main

import ndjax
from ndjax.cli import _main
from ndjax.cli._main import ROOT, load_config
from ndjax.cli._manifest import MANIFEST, read_manifest
from ndjax.cli._toml import dump_toml


@pytest.fixture
def work(tiny_mismatch, tmp_path) -> Path:
    """A copy of the finished tiny run: ``tiny.toml``, ``words.json``, ``out/``."""
    return Path(shutil.copytree(tiny_mismatch, tmp_path / "work"))


def _tree(folder: Path) -> set[str]:
    """Every file and folder under ``folder``, relative, folders ending in '/'."""
    return {p.relative_to(folder).as_posix() + ("/" if p.is_dir() else "") for p in folder.rglob("*")}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_lists_what_the_run_read_and_everything_it_wrote(work):
    out = work / "out"
    m = json.loads((out / MANIFEST).read_text())
    assert (m["format"], m["kind"], m["ndjax"]) == ("ndjax-run/1", "mismatch", ndjax.__version__)
    config = m["inputs"]["config"]
    assert config["toml"] == dump_toml(load_config(work / "tiny.toml"), ROOT)
    assert config["sha256"] == hashlib.sha256(config["toml"].encode()).hexdigest()
    (key, words), *more = m["inputs"]["files"].items()
    assert key == "chip.words" and not more
    assert Path(words["path"]).name == "words.json" and Path(words["path"]).is_absolute()
    assert words["sha256"] == _sha(work / "words.json")
    assert set(m["written"]) == _tree(out)  # every file and folder there, nothing else
    assert {"chunks/", "chunks/sigma_0/", "chunks/sigma_0/chunk_00000.npz", "chunks/sigma_0/chunk_00001.npz",
            "manifest.json", "config.toml", "versions.json", "metrics.json"} <= set(m["written"])  # fmt: skip


def test_every_kind_names_its_input_files(tmp_path):
    for kind, module in _main.KINDS.items():
        cfg = _main.validate_config({"kind": kind, **_main._MINIMAL[kind]})
        assert module.input_files(cfg, tmp_path / "c.toml") == {}, kind
    cfg = _main.parse_config('kind = "mismatch"\n[chip]\nwords = "w/words.json"\n')
    assert _main.KINDS["mismatch"].input_files(cfg, tmp_path / "c.toml") == {
        "chip.words": tmp_path / "w" / "words.json"
    }


def test_the_same_inputs_resume(work):
    out = work / "out"
    (out / "chunks" / "sigma_0" / "chunk_00001.npz").unlink()  # as if interrupted there
    status, stdout, stderr = run_main(["run", work / "tiny.toml", "--out", out])
    assert status == 0, stderr
    assert "resuming" in stdout
    assert set(read_manifest(out).written) == _tree(out)


def test_changed_words_contents_are_not_resumed(work, tiny_mismatch):
    out = work / "out"
    before = _tree(out), (out / MANIFEST).read_bytes()
    words = json.loads((work / "words.json").read_text())
    old = _sha(work / "words.json")
    words["dg"][1] += 1  # the same file name, other contents (as a refit into that folder)
    (work / "words.json").write_text(json.dumps(words))
    status, stdout, stderr = run_main(["run", work / "tiny.toml", "--out", out])
    assert status == 2 and stdout == ""
    path = (work / "words.json").resolve()
    then = tiny_mismatch.resolve() / "words.json"  # the run was made in the fixture's folder, then copied
    assert f"chip.words: {path} changed since that run (then {then})" in stderr
    assert f"(sha256 {old[:8]}... then, {_sha(path)[:8]}... now)" in stderr
    assert "choose another --out, or pass --force" in stderr
    assert (_tree(out), (out / MANIFEST).read_bytes()) == before  # nothing touched


def test_a_changed_key_is_named_with_both_values(work):
    config = work / "tiny.toml"
    config.write_text(config.read_text().replace("n_chips = 2", "n_chips = 5"))
    status, _, stderr = run_main(["run", config, "--out", work / "out"])
    assert status == 2
    assert "study.n_chips: 2 in the folder's run, 5 now" in stderr
    assert "chip.words" not in stderr  # the words did not change


def test_a_folder_without_a_manifest_is_not_resumed(work):
    (work / "out" / MANIFEST).unlink()  # as written by an ndjax without manifests
    status, _, stderr = run_main(["run", work / "tiny.toml", "--out", work / "out"])
    assert status == 2
    assert f"without {MANIFEST} (written by an older ndjax)" in stderr and "cannot be checked" in stderr


def test_force_removes_exactly_what_the_earlier_run_wrote(work):
    out = work / "out"
    (out / "notes.txt").write_text("mine")  # the user's files: never removed
    (out / "mine").mkdir()
    (out / "mine" / "data.npz").write_bytes(b"x")
    config = work / "tiny.toml"  # one chip: one chunk file, so the old chunk_00001.npz must go
    config.write_text(config.read_text().replace("n_chips = 2", "n_chips = 1"))
    status, stdout, stderr = run_main(["run", config, "--out", out, "--force"])
    assert status == 0, stderr
    assert "removed the 11 files and folders the earlier run wrote" in stdout
    assert (out / "notes.txt").read_text() == "mine" and (out / "mine" / "data.npz").read_bytes() == b"x"
    assert not (out / "chunks" / "sigma_0" / "chunk_00001.npz").exists()
    assert set(read_manifest(out).written) == _tree(out) - {"notes.txt", "mine/", "mine/data.npz"}


def test_force_refuses_saved_work_that_no_manifest_lists(work):
    out = work / "out"
    stray = out / "chunks" / "sigma_0" / "chunk_00007.npz"
    shutil.copyfile(out / "chunks" / "sigma_0" / "chunk_00000.npz", stray)
    before = _tree(out)
    status, _, stderr = run_main(["run", work / "tiny.toml", "--out", out, "--force"])
    assert status == 2 and "chunks/sigma_0/chunk_00007.npz" in stderr and "no manifest.json lists" in stderr
    assert _tree(out) == before  # nothing removed
    (out / MANIFEST).unlink()  # without a manifest, every chunk is unlisted
    status, _, stderr = run_main(["run", work / "tiny.toml", "--out", out, "--force"])
    assert status == 2 and "chunks/sigma_0/chunk_00000.npz" in stderr


def test_a_run_of_another_kind_is_named(work):
    out = work / "out"
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["kind"] = "fit"
    (out / MANIFEST).write_text(json.dumps(manifest))
    status, _, stderr = run_main(["run", work / "tiny.toml", "--out", out])
    assert status == 2 and "holds a 'fit' run, not a 'mismatch' one" in stderr
    (out / MANIFEST).write_text("{")
    status, _, stderr = run_main(["run", work / "tiny.toml", "--out", out])
    assert status == 2 and f"cannot read {out / MANIFEST}" in stderr
