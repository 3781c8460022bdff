"""What a fit keeps of its finished work, so that a rerun after an interruption resumes.

:func:`ndjax.fit.fit_words` given a ``checkpoint`` folder saves there, per attempt (seed), its
calibration as soon as it ends (``calibration_seed<S>.npz``: the longest stage) and the attempt
when it ends (``attempt_seed<S>.json``). Run again with the same folder, it loads them instead of
recomputing: the calibration's runs are the start of the later stages, so a resumed fit ends on
the same words as an uninterrupted one. Every file holds the fingerprint of the fit's inputs
(target, start words, currents, span, settings, seed); a file of another fit is refused, naming
it, never used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import write_atomically
from ..models._neurodyn import NDWords
from ._calibrate import CalibrationResult

__all__ = ["Checkpoint", "CheckpointMismatch", "fingerprint"]


class CheckpointMismatch(ValueError):
    """A checkpoint file saved by a fit of other inputs."""


def fingerprint(*parts: Any) -> str:
    """A sha256 hex digest of ``parts``: dataclasses by their fields, arrays by dtype, shape and
    bytes, everything else by ``repr`` (floats are written exactly)."""
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            h.update(type(x).__name__.encode())
            for f in dataclasses.fields(x):
                h.update(f.name.encode())
                feed(getattr(x, f.name))
        elif isinstance(x, dict):
            for k in sorted(x, key=str):
                h.update(repr(k).encode())
                feed(x[k])
        elif isinstance(x, list | tuple):
            h.update(f"{type(x).__name__}{len(x)}".encode())
            for v in x:
                feed(v)
        elif hasattr(x, "shape") and hasattr(x, "dtype"):  # NumPy and JAX arrays
            a = np.asarray(x)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        else:
            h.update(repr(x).encode())

    feed(parts)
    return h.hexdigest()


class Checkpoint:
    """A folder where one fit keeps each attempt's calibration and each finished attempt.

    Args:
        folder: created when the first file is saved.
        key: :func:`fingerprint` of the fit's inputs; files saved under another key are refused.
        on_save: called with the path of each file saved (a run folder's manifest).
    """

    def __init__(self, folder: str | Path, key: str, on_save: Callable[[Path], None] | None = None):
        self.folder = Path(folder)
        self.key = key
        self.on_save = on_save

    def _path(self, what: str, seed: int, suffix: str) -> Path:
        return self.folder / f"{what}_seed{seed}{suffix}"

    def _check(self, path: Path, key: str) -> None:
        if key != self.key:
            raise CheckpointMismatch(
                f"{path} was saved by a fit of other inputs (target, start words, currents, span, "
                "settings or seed): use another checkpoint folder, or delete the file to recompute it"
            )

    def _write(self, path: Path, write: Callable[[Path], None]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomically(path, write, ".tmp" + path.suffix)  # a file is there whole or not at all
        if self.on_save is not None:
            self.on_save(path)

    def load_calibration(self, seed: int) -> CalibrationResult | None:
        """The calibration of attempt ``seed``, or None when it was not saved."""
        path = self._path("calibration", seed, ".npz")
        if not path.exists():
            return None
        try:
            with np.load(path) as f:
                self._check(path, str(f["key"]))
                runs = [
                    (float(s), NDWords(g, e, ib))
                    for s, g, e, ib in zip(
                        f["run_scores"], f["run_g"], f["run_e_rev"], f["run_i_b"], strict=True
                    )  # fmt: skip
                ]
                return CalibrationResult(int(f["index"]), runs, f["trace"].tolist(), f["scores"].tolist())
        except CheckpointMismatch:
            raise
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path} cannot be read ({err}): delete it to recompute it") from err

    def save_calibration(self, seed: int, cal: CalibrationResult) -> None:
        """Keep the calibration of attempt ``seed``."""
        arrays = dict(
            key=np.asarray(self.key),
            index=np.asarray(cal.index),
            run_scores=np.asarray([s for s, _ in cal.runs], dtype=float),
            run_g=np.stack([np.asarray(w.g, dtype=float) for _, w in cal.runs]),
            run_e_rev=np.stack([np.asarray(w.e_rev, dtype=float) for _, w in cal.runs]),
            run_i_b=np.stack([np.asarray(w.i_b, dtype=float) for _, w in cal.runs]),
            trace=np.asarray(cal.trace, dtype=float),
            scores=np.asarray(cal.scores, dtype=float),
        )
        self._write(self._path("calibration", seed, ".npz"), lambda p: np.savez(p, **arrays))

    def load_attempt(self, seed: int) -> dict | None:
        """A finished attempt (``index`` of the kept problem, ``words``, ``history``, ``seconds``),
        or None when it was not saved."""
        path = self._path("attempt", seed, ".json")
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self._check(path, data["key"])
            words = tuple(np.asarray(w, dtype=np.int64) for w in data["words"])
            index, history, seconds = int(data["index"]), data["history"], data["seconds"]
        except CheckpointMismatch:
            raise
        except (OSError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path} cannot be read ({err}): delete it to recompute it") from err
        return dict(index=index, words=words, history=history, seconds=seconds)

    def save_attempt(self, seed: int, index: int, words: tuple, history: dict, seconds: dict) -> None:
        """Keep a finished attempt (``words`` integer arrays; ``history`` lists of numbers)."""
        data = dict(
            key=self.key,
            index=int(index),
            words=[np.asarray(w).tolist() for w in words],
            history={k: _plain(v) for k, v in history.items()},
            seconds={k: float(v) for k, v in seconds.items()},
        )
        text = json.dumps(data, allow_nan=True)  # scores of a failed chip may be inf
        self._write(self._path("attempt", seed, ".json"), lambda p: p.write_text(text, encoding="utf-8"))


def _plain(v: Any) -> Any:
    """Nested lists of numbers (NumPy, JAX or Python) as lists of Python floats."""
    if isinstance(v, list | tuple) or (hasattr(v, "ndim") and np.ndim(v) > 0):
        return [_plain(x) for x in v]
    return float(v)
