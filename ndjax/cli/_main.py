"""The ``ndjax`` console script: ``ndjax run CONFIG.toml [--out DIR] [--force]`` and
``ndjax defaults KIND``.

An entry point, so it turns on JAX float64 (``jax_enable_x64``) before anything else runs. A
config's ``kind`` picks its experiment from :data:`KINDS` (one module each in
:mod:`ndjax.cli.kinds`); the config is validated completely, and the kind's ``prepare`` checks it
against the core, before any folder is made or any solve runs. Every run writes into its own
folder (default ``runs/<config stem>-<timestamp>``):

- ``config.toml``: the config as run, every default filled in (re-reading it gives the same
  config); ``config.original.toml``: the file as given;
- ``versions.json``: Python, package versions, platform, devices, seed;
- what the experiment writes (see each kind's module docstring).

A resumable kind (``mismatch``) run with the same config into a folder that holds an interrupted
run of it resumes there; ``--force`` writes into any folder (and drops saved chunks).

``ndjax defaults KIND`` prints a complete config of that kind, every default with its doc as a
comment, generated from the schema; ``ndjax run`` accepts it as it is.

Exit status: 0 success, 1 a simulation failed (its results are still written), 2 a bad command
line, config or output folder (nothing run).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import jax

from ._rundir import RunDir
from ._schema import ConfigError, Union, load, parse, validate
from ._toml import dump_toml
from .kinds import fit, mismatch, simulate

__all__ = ["main", "KINDS", "ROOT", "validate_config", "parse_config", "load_config", "defaults_toml"]

#: ``kind`` -> its module: ``SCHEMA``, ``RESUMABLE``, ``prepare(cfg, source)`` (see :mod:`ndjax.cli.kinds`).
KINDS = {"simulate": simulate, "fit": fit, "mismatch": mismatch}

#: The whole file: a union on ``kind`` over the kinds' schemas.
ROOT = Union("kind", {kind: module.SCHEMA for kind, module in KINDS.items()}, doc="an experiment")

_PACKAGES = ("jax", "jaxlib", "diffrax", "optax", "numpy", "matplotlib")


def validate_config(raw: dict, source: str | Path | None = None) -> dict:
    """A parsed config checked against its kind's schema, every default filled in (see
    :func:`ndjax.cli._schema.validate`)."""
    return validate(ROOT, raw, source)


def parse_config(text: str, source: str | Path | None = None) -> dict:
    """TOML text parsed and validated (see :func:`validate_config`)."""
    return parse(ROOT, text, source)


def load_config(path: str | Path) -> dict:
    """A config file read, parsed and validated (see :func:`validate_config`)."""
    return load(ROOT, path)


#: The least a config of each kind needs besides its defaults (``simulate``: one HH model).
_MINIMAL: dict[str, dict] = {"simulate": {"models": [{"type": "hh", "t1": 100.0}]}, "fit": {}, "mismatch": {}}


def defaults_toml(kind: str) -> str:
    """A complete config of ``kind``: every key at its default, with its doc as a comment; keys
    whose default follows other keys are written commented out, so they keep following them."""
    cfg = validate_config({"kind": kind, **_MINIMAL[kind]})
    header = (
        f"A complete kind = {kind!r} config: every key at its default (ndjax defaults {kind}).\n"
        "Keep what you change, drop the rest; run it with: ndjax run FILE.toml"
    )
    return dump_toml(cfg, ROOT, header=header, derived_off=True)


def _versions(cfg: dict, argv: list[str]) -> dict:
    from .._version import __version__

    def version(pkg: str) -> str | None:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "ndjax": __version__,
        **{pkg: version(pkg) for pkg in _PACKAGES},
        "platform": platform.platform(),
        "machine": platform.machine(),
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "jax_enable_x64": bool(jax.config.read("jax_enable_x64")),
        "seed": cfg["seed"],
        "argv": argv,
        "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _strip_header(text: str) -> str:
    """A written config.toml without its leading comment lines (they name the source file)."""
    lines = text.splitlines(keepends=True)
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    return "".join(lines)


def _default_out(config_path: Path) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path("runs") / f"{config_path.stem}-{stamp}"
    n = 1
    while out.exists():  # two runs within a second
        out = Path("runs") / f"{config_path.stem}-{stamp}-{n}"
        n += 1
    return out


def _parser() -> argparse.ArgumentParser:
    from .._version import __version__

    kinds = ", ".join(KINDS)
    parser = argparse.ArgumentParser(
        prog="ndjax",
        description=(
            "Run ndjax experiments described by TOML configs. The runner enables JAX float64 "
            "(jax_enable_x64) before anything else: tight tolerances and SI-unit NeuroDyn values need it."
        ),
    )
    parser.add_argument("--version", action="version", version=f"ndjax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="validate CONFIG.toml, run it, write the results into a new folder",
        description=(
            f"Validate CONFIG.toml completely (every error reported at once), then run it and write "
            "config.toml (defaults filled in), config.original.toml, versions.json and the experiment's "
            f"results and figures into the output folder. Runs in float64 (jax_enable_x64). The config's "
            f"kind is one of: {kinds}; 'ndjax defaults KIND' prints a complete config of a kind, every "
            "default with its doc."
        ),
    )
    run.add_argument("config", type=Path, metavar="CONFIG.toml", help="experiment config")
    run.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output folder (default: runs/<config stem>-<timestamp>)",
    )
    run.add_argument("--force", action="store_true", help="write into a non-empty output folder")
    defaults = sub.add_parser(
        "defaults",
        help="print a complete config of KIND, every default with its doc",
        description=f"Print a complete config of KIND ({kinds}): every key at its default, with its doc "
        "as a comment. 'ndjax run' accepts the printed file as it is.",
    )
    defaults.add_argument("kind", choices=list(KINDS), metavar="KIND", help=f"one of: {kinds}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``ndjax`` console script; returns the exit status (see the module docstring)."""
    jax.config.update("jax_enable_x64", True)  # first thing: an entry point owns the dtype setting
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command == "defaults":
        sys.stdout.write(defaults_toml(args.kind))
        return 0
    return _run(args, argv)


def _error(message: str) -> int:
    print(f"ndjax: error: {message}", file=sys.stderr)
    return 2


def _out_folder(args: argparse.Namespace, cfg: dict, config_path: Path) -> tuple[Path, bool] | str:
    """The output folder and whether the run resumes there, or why it cannot be used."""
    out: Path = args.out if args.out is not None else _default_out(config_path)
    if out.exists() and not out.is_dir():
        return f"output path {out} exists and is not a folder"
    resume = False
    if out.is_dir() and any(out.iterdir()) and not args.force:
        previous = out / "config.toml"
        same = previous.is_file() and _strip_header(previous.read_text(encoding="utf-8")) == dump_toml(
            cfg, ROOT
        )
        resumable = KINDS[cfg["kind"]].RESUMABLE
        if resumable and same:
            resume = True
        elif resumable and previous.is_file():
            return (f"output folder {out} holds a run of a different config; choose another --out "
                    "or pass --force (which discards its saved work)")  # fmt: skip
        else:
            return f"output folder {out} is not empty; choose another --out or pass --force"
    return out, resume


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    config_path: Path = args.config
    try:
        cfg = load_config(config_path)
    except ConfigError as err:
        return _error(str(err))
    except OSError as err:
        return _error(f"cannot read {config_path}: {err}")
    try:
        execute = KINDS[cfg["kind"]].prepare(cfg, config_path)
    except ConfigError as err:  # the core rejected a value the schema let through
        return _error(str(ConfigError(err.errors, config_path)))
    where = _out_folder(args, cfg, config_path)
    if isinstance(where, str):
        return _error(where)
    out, resume = where
    if args.force and (out / "chunks").is_dir():
        shutil.rmtree(out / "chunks")  # saved work of whatever config ran here before
    out.mkdir(parents=True, exist_ok=True)
    run_dir = RunDir(out)
    header = f"ndjax {cfg['kind']} config as run (defaults filled in), from {config_path}"
    run_dir.write_text("config.toml", dump_toml(cfg, ROOT, header=header))
    if resume:
        print(f"ndjax: {out} holds an interrupted run of this config: resuming (finished chunks are kept)")
    shutil.copyfile(config_path, run_dir.file("config.original.toml"))
    run_dir.write_json("versions.json", _versions(cfg, argv))
    return _execute(execute, cfg, config_path, run_dir)


def _execute(execute: Any, cfg: dict, config_path: Path, run_dir: RunDir) -> int:
    print(f"ndjax: running {config_path} (kind = {cfg['kind']!r}) into {run_dir.path}", flush=True)
    start = time.perf_counter()
    ok = execute(run_dir)
    elapsed = time.perf_counter() - start
    print(
        f"ndjax: {'done' if ok else 'FAILED'} in {elapsed:.1f} s; wrote {len(run_dir.written)} files to "
        f"{run_dir.path}:"
    )
    for p in run_dir.written:
        print(f"  {p}")
    return 0 if ok else 1
