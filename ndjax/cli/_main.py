"""The ``ndjax`` console script: ``ndjax run CONFIG.toml [--out DIR] [--force]`` and
``ndjax defaults KIND``.

An entry point, so it turns on JAX float64 (``jax_enable_x64``) before anything else runs. A
config's ``kind`` picks its experiment from :data:`KINDS` (one module each in
:mod:`ndjax.cli.kinds`); the config is validated completely, and the kind's ``prepare`` checks it
against the core, before any folder is made or any solve runs. Every run writes into its own
folder (default ``runs/<config stem>-<timestamp>``):

- ``manifest.json``: what the run read (the config as run, and each input file the kind reads,
  e.g. ``chip.words``: its path and the sha256 of its contents) and every file and folder it
  wrote, chunks included; rewritten atomically each time a file is recorded
  (:mod:`ndjax.cli._manifest`);
- ``config.toml``: the config as run, every default filled in (re-reading it gives the same
  config); ``config.original.toml``: the file as given;
- ``versions.json``: Python, package versions, platform, devices, seed;
- what the experiment writes (see each kind's module docstring).

A resumable kind (``mismatch``, ``fit``) run into a folder that holds a run of it resumes there when the
inputs are the same: the config, key by key, and the contents of every input file. Otherwise it is
refused, each differing key named with both values (``study.n_chips: 4 in the folder's run, 5
now``) and each changed file with both hashes; a folder without a manifest (an older ndjax's)
cannot be checked and is not resumed. ``--force`` writes into any folder after removing exactly
what its manifest lists as written (files of the user's stay); a folder holding saved work
(``chunks/``, ``checkpoint/``) that no manifest lists is refused, since the run would load it as its own.

``ndjax defaults KIND`` prints a complete config of that kind, every default with its doc as a
comment, generated from the schema; ``ndjax run`` accepts it as it is.

Exit status: 0 success; 1 a simulation failed (its results are still written); 2 a bad command
line, config (not UTF-8, not TOML, invalid), input file (unreadable, not UTF-8, invalid) or output
folder (not creatable or writable, holding another run), nothing run, or a failure while writing
mid-run (a full disk: the message names the file; finished chunks are kept and the same command
resumes) or a saved chunk that cannot be read (the message names it: delete it to recompute that
chunk); 130 interrupted (Ctrl-C; a resumable kind keeps its finished chunks, and the same command
resumes). Every error is one message on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import platform
import sys
import time
from pathlib import Path
from typing import Any

import jax

from ..studies._run import SavedWorkError
from ._manifest import (
    MANIFEST,
    Inputs,
    Manifest,
    ManifestError,
    input_changes,
    read_manifest,
    run_inputs,
)
from ._rundir import RunDir, remove_written, unlisted_saved_work
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
    run.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty output folder, first removing what an earlier run wrote there "
        "(the files its manifest.json lists; nothing else)",
    )
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
    try:
        return _run(args, argv)
    except KeyboardInterrupt:  # before the output folder is made (a run's own is handled in _execute)
        print("ndjax: interrupted before the run started", file=sys.stderr)
        return EXIT_INTERRUPTED


def _error(message: str) -> int:
    print(f"ndjax: error: {message}", file=sys.stderr)
    return 2


def _inputs(cfg: dict, config_path: Path) -> Inputs:
    """What the run reads: the config as run and the kind's input files, hashed."""
    return run_inputs(dump_toml(cfg, ROOT), KINDS[cfg["kind"]].input_files(cfg, config_path))


_ELSEWHERE = "choose another --out, or pass --force"


def _out_folder(
    args: argparse.Namespace, cfg: dict, config_path: Path, inputs: Inputs
) -> tuple[Path, Manifest | None] | str:
    """The output folder and the manifest of the run it resumes (None: a fresh run), or why the
    folder cannot be used. With ``--force``, what an earlier run wrote there is removed first."""
    out: Path = args.out if args.out is not None else _default_out(config_path)
    if out.exists() and not out.is_dir():
        return f"output path {out} exists and is not a folder"
    if not out.is_dir() or not any(out.iterdir()):
        return out, None
    try:
        previous = read_manifest(out)
    except ManifestError as err:
        return f"{err}: what the run in {out} wrote is unknown; choose another --out, or delete {MANIFEST}"
    if args.force:
        return _clear(out, previous)
    kind = cfg["kind"]
    if not KINDS[kind].RESUMABLE:
        return f"output folder {out} is not empty; {_ELSEWHERE}"
    if previous is None:
        if not (out / "config.toml").is_file():
            return f"output folder {out} is not empty; {_ELSEWHERE}"
        return (
            f"output folder {out} holds a run without {MANIFEST} (written by an older ndjax): what it "
            f"read cannot be checked, so it is not resumed; {_ELSEWHERE} (which starts over)"
        )
    if previous.kind != kind:
        return f"output folder {out} holds a {previous.kind!r} run, not a {kind!r} one; {_ELSEWHERE}"
    changes = input_changes(previous.inputs, inputs)
    if changes:
        lines = "".join(f"\n  {c}" for c in changes)
        return (f"output folder {out} holds a run of other inputs, so it is not resumed:{lines}\n"
                f"{_ELSEWHERE} (which removes what that run wrote)")  # fmt: skip
    return out, previous


def _clear(out: Path, previous: Manifest | None) -> tuple[Path, None] | str:
    """``--force``: remove what the manifest lists, refusing saved work that no manifest lists."""
    unlisted = unlisted_saved_work(out, previous)
    if unlisted:
        more = f" and {len(unlisted) - 3} more" if len(unlisted) > 3 else ""
        return (f"output folder {out} holds saved work that no {MANIFEST} lists ({', '.join(unlisted[:3])}"
                f"{more}): a resumed run would load it as its own, so --force does not write there; "
                "remove it yourself or choose another --out")  # fmt: skip
    if previous is not None:
        try:
            removed = remove_written(out, previous)
        except OSError as err:
            return f"cannot remove {err.filename}, written by the earlier run in {out}: {err.strerror or err}"
        print(f"ndjax: --force: removed the {len(removed)} files and folders the earlier run wrote in {out}")
    return out, None


#: Exit status of a run stopped by Ctrl-C (the shell's 128 + SIGINT).
EXIT_INTERRUPTED = 130


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    config_path: Path = args.config
    try:
        cfg = load_config(config_path)
    except ConfigError as err:
        return _error(str(err))
    except OSError as err:
        return _error(f"cannot read {config_path}: {err.strerror or err}")
    try:
        execute = KINDS[cfg["kind"]].prepare(cfg, config_path)
        inputs = _inputs(cfg, config_path)
    except ConfigError as err:  # the core rejected a value the schema let through
        return _error(str(ConfigError(err.errors, config_path)))
    where = _out_folder(args, cfg, config_path, inputs)
    if isinstance(where, str):
        return _error(where)
    out, previous = where
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return _error(f"cannot create the output folder {out}: {err.strerror or err}")
    from .._version import __version__

    written = [] if previous is None else [e for e in previous.written if (out / e).exists()]
    try:
        run_dir = RunDir(out, Manifest(__version__, cfg["kind"], inputs, written))
        header = f"ndjax {cfg['kind']} config as run (defaults filled in), from {config_path}"
        run_dir.write_text("config.toml", dump_toml(cfg, ROOT, header=header))
        run_dir.copy_file("config.original.toml", config_path)
        run_dir.write_json("versions.json", _versions(cfg, argv))
    except OSError as err:
        return _error(f"cannot write {err.filename or out}: {err.strerror or err}")
    if previous is not None:
        print(f"ndjax: {out} holds a run of these inputs: resuming (finished chunks are kept)")
    return _execute(execute, cfg, config_path, run_dir)


def _execute(execute: Any, cfg: dict, config_path: Path, run_dir: RunDir) -> int:
    print(f"ndjax: running {config_path} (kind = {cfg['kind']!r}) into {run_dir.path}", flush=True)
    resumable = KINDS[cfg["kind"]].RESUMABLE
    again = (
        f"finished chunks are kept in {run_dir.path}; run the same command again to resume"
        if resumable
        else f"the files written so far are in {run_dir.path}; run it again with --force to start over"
    )
    start = time.perf_counter()
    try:
        ok = execute(run_dir)
    except KeyboardInterrupt:
        print(f"ndjax: interrupted; {again}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as err:  # a full disk, a folder made read-only mid-run
        name = Path(err.filename) if err.filename is not None else run_dir.path
        what = f"cannot write {name}" if name.is_relative_to(run_dir.path) else str(name)
        return _error(f"{what}: {err.strerror or err}; {again}")
    except SavedWorkError as err:
        return _error(f"{err}, then run the same command again")
    elapsed = time.perf_counter() - start
    print(
        f"ndjax: {'done' if ok else 'FAILED'} in {elapsed:.1f} s; wrote {len(run_dir.written)} files to "
        f"{run_dir.path}:"
    )
    for p in run_dir.written:
        print(f"  {p}")
    return 0 if ok else 1
