"""``manifest.json``: what a run read and what it wrote, so a rerun into its folder can be checked.

A run folder's manifest holds the ndjax version and the config's kind; ``inputs``: the config as
run (its canonical dump, ``dump_toml(cfg, ROOT)``, and that text's sha256) and every input file
the run reads (the config key that names it, its resolved path and the sha256 of its contents);
``written``: every file and folder the run created, relative to the folder (folders end in
``/``)::

    {
      "format": "ndjax-run/1",
      "ndjax": "0.1.0",
      "kind": "mismatch",
      "inputs": {
        "config": {"toml": "kind = \\"mismatch\\"\\n...", "sha256": "..."},
        "files": {"chip.words": {"path": "/abs/words.json", "sha256": "..."}}
      },
      "written": ["manifest.json", "config.toml", "chunks/", "chunks/sigma_0/", ...]
    }

:func:`input_changes` compares two runs' inputs: the config key by key (parsed values, so a doc
comment that changed between versions does not count) and the input files by contents. The run
folder (:class:`ndjax.cli._rundir.RunDir`) writes the manifest; the runner reads it to decide
whether a run resumes and what ``--force`` removes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from .._atomic import write_atomically
from ._schema import ConfigError

__all__ = [
    "MANIFEST",
    "MANIFEST_FORMAT",
    "InputFile",
    "Inputs",
    "Manifest",
    "ManifestError",
    "file_sha256",
    "run_inputs",
    "input_changes",
    "read_manifest",
]

#: The manifest's file name in a run folder.
MANIFEST = "manifest.json"
#: Value of its ``format`` key.
MANIFEST_FORMAT = "ndjax-run/1"


class ManifestError(ValueError):
    """A ``manifest.json`` that cannot be read or is not one ndjax wrote (the message names it)."""


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's contents, hex.

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class InputFile:
    """A file a run reads: its resolved path and the sha256 of its contents."""

    path: str
    sha256: str


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Everything a run reads: the config as run and each input file, by the key that names it.

    Attributes:
        config: the canonical dump of the validated config (``dump_toml(cfg, ROOT)``).
        config_sha256: the sha256 of that text.
        files: config key (dotted path, e.g. ``chip.words``) -> :class:`InputFile`.
    """

    config: str
    config_sha256: str
    files: dict[str, InputFile]


def run_inputs(config_text: str, files: Mapping[str, str | Path]) -> Inputs:
    """The :class:`Inputs` of a run: the config text and each file, hashed now.

    Args:
        config_text: the canonical dump of the config.
        files: config key -> the file it names.

    Raises:
        ConfigError: a file cannot be read (named by its key).
    """
    hashed = {}
    for key, p in files.items():
        try:
            hashed[key] = InputFile(str(Path(p).resolve()), file_sha256(p))
        except OSError as err:
            raise ConfigError([(key, f"cannot read {p}: {err.strerror or err}")]) from err
    return Inputs(config_text, hashlib.sha256(config_text.encode("utf-8")).hexdigest(), hashed)


def _show(value: Any) -> str:
    """A config value as it reads in a message (TOML-like, long values cut)."""
    if value is _ABSENT:
        return "absent"
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


_ABSENT: Any = object()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _key_changes(before: Any, now: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """``(dotted path, before, now)`` of every leaf that differs between two parsed configs."""
    if isinstance(before, dict) and isinstance(now, dict):
        for k in [*before, *(k for k in now if k not in before)]:
            sub = f"{path}.{k}" if path else k
            yield from _key_changes(before.get(k, _ABSENT), now.get(k, _ABSENT), sub)
    elif (
        isinstance(before, list)
        and isinstance(now, list)
        and len(before) == len(now)
        and all(isinstance(x, dict) for x in [*before, *now])
    ):  # an array of tables: item by item
        for i, (x, y) in enumerate(zip(before, now, strict=True)):
            yield from _key_changes(x, y, f"{path}[{i}]")
    elif not _same(before, now):
        yield path, before, now


def input_changes(before: Inputs, now: Inputs) -> list[str]:
    """What differs between a previous run's inputs and this run's, one line each.

    A config key that differs reads ``study.n_chips: 4 in the folder's run, 5 now``; an input file
    whose contents changed ``chip.words: /x/words.json changed since that run (sha256 1a2b3c4d...
    then, 9f8e7d6c... now)``. Empty when the run may resume.
    """
    out = [
        f"{path}: {_show(a)} in the folder's run, {_show(b)} now"
        for path, a, b in _key_changes(tomllib.loads(before.config), tomllib.loads(now.config), "")
    ]
    for key in [*before.files, *(k for k in now.files if k not in before.files)]:
        a, b = before.files.get(key), now.files.get(key)
        if a is None or b is None:
            if not any(line.startswith(f"{key}:") for line in out):
                out.append(f"{key}: {'no file' if a is None else a.path} in the folder's run, "
                           f"{'no file' if b is None else b.path} now")  # fmt: skip
        elif a.sha256 != b.sha256:
            moved = f" (then {a.path})" if a.path != b.path else ""
            out.append(f"{key}: {b.path} changed since that run{moved} "
                       f"(sha256 {a.sha256[:8]}... then, {b.sha256[:8]}... now)")  # fmt: skip
    return out


@dataclasses.dataclass
class Manifest:
    """A run's manifest (see the module docstring).

    Attributes:
        ndjax: the ndjax version that wrote it.
        kind: the config's ``kind``.
        inputs: what the run read.
        written: the files and folders (ending in ``/``) the run created, relative to its folder,
            in the order it created them.
    """

    ndjax: str
    kind: str
    inputs: Inputs
    written: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict:
        """The manifest as the JSON object written to ``manifest.json``."""
        return {
            "format": MANIFEST_FORMAT,
            "ndjax": self.ndjax,
            "kind": self.kind,
            "inputs": {
                "config": {"toml": self.inputs.config, "sha256": self.inputs.config_sha256},
                "files": {k: {"path": f.path, "sha256": f.sha256} for k, f in self.inputs.files.items()},
            },
            "written": list(self.written),
        }

    def write(self, folder: Path) -> Path:
        """Write ``folder/manifest.json`` atomically (a temporary file, then ``os.replace``).

        Raises:
            OSError: it cannot be written (``filename`` is the manifest; no temporary file is left).
        """
        text = json.dumps(self.to_json(), indent=2) + "\n"
        return write_atomically(folder / MANIFEST, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _relative_entry(entry: Any) -> bool:
    """A ``written`` entry is a relative path inside the folder (no ``..``, not absolute)."""
    if not isinstance(entry, str) or not entry or "\\" in entry:
        return False
    p = PurePosixPath(entry)
    return not p.is_absolute() and ".." not in p.parts


def _from_json(data: Any) -> Manifest:
    """A manifest from its JSON object; :class:`ValueError` saying what is wrong with it."""
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"expected a JSON object with format {MANIFEST_FORMAT!r}")
    try:
        config = data["inputs"]["config"]
        files = {
            str(k): InputFile(str(v["path"]), str(v["sha256"])) for k, v in data["inputs"]["files"].items()
        }
        inputs = Inputs(str(config["toml"]), str(config["sha256"]), files)
        manifest = Manifest(str(data["ndjax"]), str(data["kind"]), inputs, list(data["written"]))
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"missing or malformed entry {err}") from err
    bad = [e for e in manifest.written if not _relative_entry(e)]
    if bad:
        raise ValueError(f"'written' lists {bad[0]!r}, not a path inside the folder")
    tomllib.loads(manifest.inputs.config)  # a TOMLDecodeError is a ValueError
    return manifest


def read_manifest(folder: Path) -> Manifest | None:
    """The manifest of the run folder ``folder``, or None when it has none.

    Raises:
        ManifestError: it cannot be read or is not a manifest ndjax wrote (the message names the
            file and what is wrong).
    """
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        return _from_json(json.loads(path.read_bytes().decode("utf-8")))
    except (OSError, ValueError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ManifestError(f"cannot read {path}: {err}") from err
