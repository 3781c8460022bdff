"""The ``ndjax`` command: run folders, versions.json, output-folder rules, failures, ``ndjax defaults``
and the shipped experiment configs."""

import json
import re
import tomllib
from pathlib import Path

import pytest
from cli_support import SHORT, run_main

import ndjax
from ndjax.cli import _main
from ndjax.cli._main import load_config, validate_config
from ndjax.cli._schema import Derived, Table, Tables, Union

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def test_run_writes_every_file(short_run):
    config, out, stdout = short_run
    assert re.fullmatch(r"short-\d{8}-\d{6}", out.name)
    for name in ("config.toml", "config.original.toml", "versions.json", "results.json", "traces.npz"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "traces.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(out.name) in stdout and "traces.png" in stdout
    assert (out / "config.original.toml").read_bytes() == config.read_bytes()


def test_written_config_reads_back_the_same(short_run):
    config, out, _ = short_run
    written = load_config(out / "config.toml")
    assert written == load_config(config)
    assert written["name"] == "short" and written["solver"]["rtol"] == 1e-6  # defaults filled in


def test_versions(short_run):
    versions = json.loads((short_run[1] / "versions.json").read_text())
    for key in ("python", "ndjax", "jax", "jaxlib", "diffrax", "optax", "numpy", "matplotlib", "platform"):
        assert versions[key], key
    assert versions["seed"] == 0 and versions["ndjax"] == ndjax.__version__
    assert versions["jax_enable_x64"] is True


def test_refuses_a_non_empty_folder_unless_forced(short_run, tmp_path):
    config = short_run[0]
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    status, _, stderr = run_main(["run", config, "--out", out])
    assert status == 2 and "not empty" in stderr and "--force" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    # --force writes into it; layout = "separate" gives a figure per model
    separate = tmp_path / "separate.toml"
    separate.write_text(SHORT.replace("[solver]", '[plot]\nlayout = "separate"\n\n[solver]'))
    status, _, stderr = run_main(["run", separate, "--out", out, "--force"])
    assert status == 0, stderr
    assert (out / "keep.txt").read_text() == "mine"
    assert (out / "traces_model0.png").exists() and (out / "traces_model1.png").exists()
    assert not (out / "traces.png").exists()


def test_config_errors_stop_before_anything_runs(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        SHORT.replace("amplitude = 10.0", 'amplitude = "ten"').replace("n_save = 501", "n_save = 1")
    )
    out = tmp_path / "out"
    status, stdout, stderr = run_main(["run", bad, "--out", out])
    assert status == 2 and not out.exists() and stdout == ""
    assert "models[0].input.amplitude" in stderr and "solver.n_save" in stderr and "2 errors" in stderr


def test_missing_config_file(tmp_path):
    status, _, stderr = run_main(["run", tmp_path / "nope.toml", "--out", tmp_path / "out"])
    assert status == 2 and "cannot read" in stderr


def test_version_and_usage(capsys):
    with pytest.raises(SystemExit) as info:
        _main.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"ndjax {ndjax.__version__}"
    assert _main.main([]) == 2  # no command: usage on stderr
    assert "run" in capsys.readouterr().err


def test_every_kind_has_a_schema_and_a_prepare():
    assert set(_main.ROOT.variants) == set(_main.KINDS) == {"simulate", "fit", "mismatch"}
    for kind, module in _main.KINDS.items():
        assert _main.ROOT.variants[kind] is module.SCHEMA and callable(module.prepare), kind
    assert [k for k, m in _main.KINDS.items() if m.RESUMABLE] == ["fit", "mismatch"]


def test_python_dash_m_is_the_same_main():
    import ndjax.__main__

    assert ndjax.__main__.main is _main.main


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.toml")), ids=lambda p: p.name)
def test_every_experiment_config_validates(path):
    """The shipped configs stay valid as keys are added, renamed or moved: loading one through the
    validator rejects any unknown key."""
    cfg = load_config(path)
    assert cfg["kind"] in _main.KINDS and cfg["name"] == path.stem


def _key_paths(spec, value, prefix=""):
    """``(field, dotted path)`` of every key of a parsed config, ``field`` None where the schema has
    no such key (a union's tag is left out)."""
    if isinstance(spec, Union):
        variant = spec.variants[value.get(spec.tag, spec.default)]
        yield from _key_paths(variant, {k: v for k, v in value.items() if k != spec.tag}, prefix)
        return
    for k, v in value.items():
        field = spec.fields.get(k)
        path = f"{prefix}.{k}" if prefix else k
        if isinstance(field, Tables):
            for i, item in enumerate(v):
                yield from _key_paths(field.item, item, f"{path}[{i}]")
        elif isinstance(field, Table | Union):
            yield from _key_paths(field, v, path)
        else:
            yield field, path


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.toml")), ids=lambda p: p.name)
def test_every_key_of_every_experiment_config_is_in_the_schema(path):
    raw = tomllib.loads(path.read_text())
    unknown = [p for field, p in _key_paths(_main.ROOT, raw) if field is None]
    assert not unknown, unknown


def _defaults_file(kind, tmp_path, capsys) -> tuple[Path, str]:
    assert _main.main(["defaults", kind]) == 0
    text = capsys.readouterr().out
    path = tmp_path / f"{kind}_defaults.toml"
    path.write_text(text)
    return path, text


@pytest.mark.parametrize("kind", ["simulate", "fit", "mismatch"])
def test_defaults_prints_a_complete_config_that_validates_as_it_is(kind, tmp_path, capsys):
    path, text = _defaults_file(kind, tmp_path, capsys)
    cfg = load_config(path)  # accepted as it is
    assert cfg == validate_config({"kind": kind, **_main._MINIMAL[kind]}, source=path)  # every default
    assert f"ndjax defaults {kind}" in text
    # every key is written out; those whose default follows other keys as comments
    keys = dict((p, f) for f, p in _key_paths(_main.ROOT, cfg))
    written = {p for _, p in _key_paths(_main.ROOT, tomllib.loads(text))}
    derived = {p for p, f in keys.items() if isinstance(f.default, Derived)}
    assert written == set(keys) - derived
    for p in derived:
        assert f"\n# {p.rsplit('.', 1)[-1]} = " in text, p


@pytest.mark.parametrize("kind", ["simulate", "mismatch", pytest.param("fit", marks=pytest.mark.slow)])
def test_defaults_prints_a_config_that_run_prepares(kind, tmp_path, capsys):
    path, _ = _defaults_file(kind, tmp_path, capsys)
    execute = _main.KINDS[kind].prepare(load_config(path), path)
    assert callable(execute)


def test_defaults_of_the_fit_show_the_settings_docs(capsys):
    from ndjax.fit._settings import CalibrateSettings

    _main.main(["defaults", "fit"])
    text = capsys.readouterr().out
    assert "[optimizer.calibrate]  # Stage 1: CMA-ES" in text
    doc = dict(CalibrateSettings.__dataclass_fields__)["generations"].metadata["ndjax"].doc
    assert f"generations = {CalibrateSettings().generations}  # {doc}" in text


def test_run_help_names_the_kinds_and_defaults(capsys):
    with pytest.raises(SystemExit):
        _main.main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "simulate, fit, mismatch" in out and "ndjax defaults KIND" in out
    with pytest.raises(SystemExit) as info:
        _main.main(["defaults", "fti"])
    assert info.value.code == 2
