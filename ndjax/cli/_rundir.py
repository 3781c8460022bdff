"""The output folder of one run: the files an experiment writes, recorded in its manifest as it
writes them, and ``--force``'s removal of exactly what an earlier run wrote.

Every file and folder a run creates is listed in the folder's ``manifest.json``
(:mod:`ndjax.cli._manifest`), rewritten atomically each time one is recorded, so the list is
complete whenever the run stops. :func:`remove_written` deletes what a manifest lists and nothing
else; a folder holding saved work (:data:`SAVED_WORK`) that no manifest lists is refused, since a
resumable kind would load it as its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._manifest import MANIFEST, Manifest

__all__ = ["RunDir", "SAVED_WORK", "remove_written", "unlisted_saved_work"]

#: Folders of a run folder whose contents a resumable kind loads as its own work (a study's
#: chunks, a fit's checkpoint): ``--force`` refuses a folder holding files there that no manifest
#: lists.
SAVED_WORK = ("chunks", "checkpoint")


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """An :class:`OSError` raised while writing ``path`` names it (a write that fails on a full
    disk does not say which file)."""
    try:
        yield
    except OSError as err:
        if err.filename is not None:
            raise
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err


@dataclasses.dataclass
class RunDir:
    """The output folder of one run, handed to an experiment's ``execute``.

    Experiments write through these helpers so the runner can list the files; every file and
    folder written is recorded in the manifest (when the run has one), which is written at once
    and rewritten at each record.

    Attributes:
        path: the folder.
        manifest: what the run read and wrote (``None``: no manifest is kept).
        written: the result files, in the order written (listed to the user at the end).
    """

    path: Path
    manifest: Manifest | None = None
    written: list[Path] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.manifest is not None:
            self.file(MANIFEST)

    def record(self, path: str | Path) -> Path:
        """Record ``path`` (a file in the folder, or under a subfolder of it) and its subfolders
        as written by this run, and rewrite the manifest; e.g. by library code that saves its own
        files there (a study's chunks, a fit's checkpoint: ``on_save=run_dir.record``).

        Returns:
            ``path``.

        Raises:
            ValueError: ``path`` is not inside the folder.
            OSError: the manifest cannot be written (its ``filename`` says so).
        """
        p = Path(path)
        if self.manifest is None:
            return p
        try:
            rel = (
                p.relative_to(self.path)
                if p.is_relative_to(self.path)
                else p.resolve().relative_to(self.path.resolve())
            )
        except ValueError:
            raise ValueError(f"{path} is not inside the run folder {self.path}") from None
        if ".." in rel.parts:
            raise ValueError(f"{path} is not inside the run folder {self.path}")
        entries = [d.as_posix() + "/" for d in reversed(rel.parents) if d != Path(".")] + [rel.as_posix()]
        new = [e for e in entries if e not in self.manifest.written]
        if new:
            self.manifest.written.extend(new)
            self.manifest.write(self.path)
        return p

    def file(self, name: str) -> Path:
        """Path of ``name`` in the folder, recorded as written."""
        p = self.path / name
        if p not in self.written:
            self.written.append(p)
        return self.record(p)

    def write_text(self, name: str, text: str) -> Path:
        """Write a UTF-8 text file (an :class:`OSError` names it)."""
        p = self.file(name)
        with _writing(p):
            p.write_text(text, encoding="utf-8")
        return p

    def copy_file(self, name: str, source: str | Path) -> Path:
        """Copy the file ``source`` to ``name`` in the folder (an :class:`OSError` names the copy
        when writing it fails)."""
        p = self.file(name)
        with _writing(p):
            shutil.copyfile(source, p)
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        """JSON with NaN/inf written as ``null`` (strict JSON)."""
        return self.write_text(name, json.dumps(_json_safe(obj), indent=2, allow_nan=False) + "\n")

    def write_npz(self, name: str, arrays: dict[str, Any]) -> Path:
        """Write compressed NumPy arrays (an :class:`OSError` names the file)."""
        import numpy as np

        p = self.file(name)
        with _writing(p):
            np.savez_compressed(p, **{k: np.asarray(v) for k, v in arrays.items()})
        return p

    def save_figure(self, name: str, fig: Any, dpi: int = 120) -> Path:
        """Save and close a figure (an :class:`OSError` names the file)."""
        from .. import plot

        p = self.file(name)
        try:
            with _writing(p):
                fig.savefig(p, dpi=dpi)
        finally:
            plot.close(fig)
        return p


def _inside(folder: Path, rel: str) -> Path | None:
    """``folder/rel`` when it is inside ``folder`` once links are resolved, else None."""
    p = folder / rel
    try:
        p.parent.resolve().relative_to(folder.resolve())
    except ValueError:
        return None
    return p


def unlisted_saved_work(folder: Path, manifest: Manifest | None) -> list[str]:
    """Files under the :data:`SAVED_WORK` folders of ``folder`` that ``manifest`` does not list
    (all of them without a manifest), relative to ``folder``."""
    listed = set(manifest.written) if manifest is not None else set()
    out = []
    for name in SAVED_WORK:
        root = folder / name
        if root.is_dir() and not root.is_symlink():
            out += sorted(
                p.relative_to(folder).as_posix()
                for p in root.rglob("*")
                if not p.is_dir() and p.relative_to(folder).as_posix() not in listed
            )
        elif root.exists() and name not in listed and f"{name}/" not in listed:
            out.append(name)
    return out


def remove_written(folder: Path, manifest: Manifest) -> list[str]:
    """Remove what ``manifest`` lists as written: its files, then its folders that are left empty.
    Nothing else is touched (a user's file in a listed folder keeps that folder); an entry that
    leads outside ``folder`` through a link is skipped.

    Returns:
        The entries removed.

    Raises:
        OSError: an entry cannot be removed.
    """
    removed = []
    files = [e for e in manifest.written if not e.endswith("/")]
    folders = sorted((e for e in manifest.written if e.endswith("/")), key=lambda e: -e.count("/"))
    for entry in files:
        p = _inside(folder, entry)
        if p is not None and (p.is_symlink() or p.is_file()):
            p.unlink()
            removed.append(entry)
    for entry in folders:
        p = _inside(folder, entry.rstrip("/"))
        if p is not None and p.is_dir() and not p.is_symlink() and not any(p.iterdir()):
            p.rmdir()
            removed.append(entry)
    return removed


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if type(obj).__module__ == "numpy":  # arrays and NumPy scalars
        return _json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
