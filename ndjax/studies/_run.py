"""A study run: chips in chunks, each chunk's measurements saved as it finishes, resumable.

:func:`study_chunk` measures one chunk of chips (uncompensated, then each compensation);
:func:`run_study` runs all chunks, keeping each in ``folder/chunk_00000.npz`` etc. so that an
interrupted run resumes where it stopped and ends with the same results as an uninterrupted one.
A saved file that cannot be used (truncated, not an ``.npz``, an array missing, other chips) is a
:class:`SavedWorkError` naming it; a save that fails (a full disk) is an :class:`OSError` naming
the file, and leaves no partial file.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from .._analysis import behaves, within_rate
from .._atomic import write_atomically
from .._settings import check_settings
from ..fit._wordspace import flatten_words
from ..models._neurodyn import NDWords
from ._compensate import compensate_offset, compensate_rebalance, word_changes
from ._kernel import broadcast_words, chip_responses
from ._retune import retune
from ._robust import ROBUST_RATE_TOL, robust_words
from ._settings import CompensationSettings
from ._study import Responses, Study, chip_mismatch

__all__ = ["study_chunk", "run_study", "chunk_names", "COMPENSATIONS", "SavedWorkError"]

#: The compensations a study compares, in the order they are reported (the fields of
#: :class:`CompensationSettings`).
COMPENSATIONS = tuple(f.name for f in dataclasses.fields(CompensationSettings))


#: The arrays of a chunk file besides the uncompensated ones, per compensation (what
#: :func:`study_chunk` returns; ``*seconds`` are one number per chunk).
_CHUNK_ARRAYS = {
    "": ("index", "count", "rate", "status", "behaves", "seconds", "within_robust_tol"),
    "robust": ("count", "rate", "behaves", "within_robust_tol", "changes", "seconds"),
    "offset": ("value", "count", "rate", "behaves", "seconds"),
    "rebalance": ("dg", "count", "rate", "behaves", "changes", "seconds"),
    "retune": ("words", "count", "rate", "behaves", "changes", "seconds"),
}


def chunk_names(compensation: CompensationSettings) -> set[str]:
    """The names of the arrays :func:`study_chunk` returns (and a chunk file holds) with these
    compensations enabled."""
    names = set(_CHUNK_ARRAYS[""])
    for method in COMPENSATIONS:
        if getattr(compensation, method).enabled:
            names |= {f"{method}_{a}" for a in _CHUNK_ARRAYS[method]}
    return names


class SavedWorkError(ValueError):
    """A saved file of a study that cannot be used; the message names it and says to delete it.

    Attributes:
        path: the file.
    """

    def __init__(self, path: Path, problem: str, what: str = "that chunk"):
        self.path = path
        super().__init__(f"{path}: {problem}; delete it to recompute {what} (the other saved work is kept)")


def _atomic_savez(path: Path, arrays: dict) -> None:
    """Save ``arrays`` to ``path`` whole or not at all (:func:`ndjax._atomic.write_atomically`:
    a failure raises an :class:`OSError` whose ``filename`` is ``path``)."""
    write_atomically(path, lambda tmp: np.savez(tmp, **arrays), ".tmp.npz")


def _load_saved(path: Path, names: set[str], what: str) -> dict[str, np.ndarray]:
    """The arrays of a saved ``.npz``; any failure reading it (truncated, not an archive, an array
    missing or unreadable) is a :class:`SavedWorkError` naming it."""
    try:
        with np.load(path) as f:
            missing = sorted(names - set(f.files))
            if missing:
                raise SavedWorkError(path, f"the saved file has no array {missing[0]!r}", what)
            return {name: f[name] for name in f.files}
    except SavedWorkError:
        raise
    except Exception as err:  # zipfile.BadZipFile, EOFError, ValueError, OSError, ...: all mean unusable
        raise SavedWorkError(path, f"cannot read the saved file ({type(err).__name__}: {err})", what) from err


def _offsets(study: Study, compensation: CompensationSettings, offset_unit: float | None) -> np.ndarray:
    """The offsets of ``compensation.offset`` (fractions) in A."""
    if offset_unit is None:
        offset_unit = float(np.max(np.abs(study.currents))) or 1.0
    return np.asarray(compensation.offset.offsets, dtype=float) * offset_unit


def study_chunk(
    study: Study,
    index: np.ndarray,
    ref: Responses,
    compensation: CompensationSettings,
    offset_unit: float | None,
    robust: NDWords | None = None,
    mesh: jax.sharding.Mesh | None = None,
    block: int = 512,
) -> dict:
    """Every measurement of the chips ``index``: responses before and after each compensation.

    Args:
        study, index: the study and (N,) chip indices.
        ref: the reference, (C,) arrays.
        compensation: which compensations run (``enabled``) and their settings.
        offset_unit: the current (A) an offset fraction of 1 stands for (None: the largest
            ``|current|``, or 1 A when every current is 0).
        robust: the robust words (:func:`robust_words`); needed when ``robust`` is enabled.
        mesh, block: devices to shard the jobs over, and jobs per kernel call.

    Returns:
        A dict of NumPy arrays (what a chunk file holds): ``index``, ``count``, ``rate``, ``status``,
        ``behaves``, ``within_robust_tol``, ``seconds``, then per compensation ``<name>_...``.
    """
    kw = dict(mesh=mesh, block=block)
    c = compensation
    n = index.size
    mm = chip_mismatch(study, index)
    nominal = broadcast_words(study.words, n)
    verdict = dict(ref_count=ref.count, ref_rate=ref.rate, count_tol=study.count_tol, rate_tol=study.rate_tol)
    out: dict[str, np.ndarray] = {"index": np.asarray(index)}
    t = time.perf_counter()
    r = chip_responses(study, nominal, mm, **kw)
    out.update(count=r.count, rate=r.rate, status=r.status, behaves=behaves(r.count, r.rate, **verdict),
               seconds=np.array(time.perf_counter() - t))  # fmt: skip
    out["within_robust_tol"] = within_rate(r.count, r.rate, ref.rate, ROBUST_RATE_TOL)
    if c.robust.enabled:
        if robust is None:
            raise ValueError("the 'robust' compensation needs the robust words (see robust_words)")
        t = time.perf_counter()
        rw = broadcast_words(robust, n)
        rr = chip_responses(study, rw, mm, **kw)
        out.update(
            robust_count=rr.count,
            robust_rate=rr.rate,
            robust_behaves=behaves(rr.count, rr.rate, **verdict),
            robust_within_robust_tol=within_rate(rr.count, rr.rate, ref.rate, ROBUST_RATE_TOL),
            robust_changes=word_changes(rw, nominal),
            robust_seconds=np.array(time.perf_counter() - t),
        )
    if c.offset.enabled:
        t = time.perf_counter()
        off = compensate_offset(study, mm, ref, _offsets(study, c, offset_unit), **kw)
        out.update(offset_value=off.value, offset_count=off.responses.count, offset_rate=off.responses.rate,
                   offset_behaves=off.behaving, offset_seconds=np.array(time.perf_counter() - t))  # fmt: skip
    if c.rebalance.enabled:
        t = time.perf_counter()
        rb = compensate_rebalance(study, mm, ref, c.rebalance.factors, **kw)
        out.update(
            rebalance_dg=rb.value,
            rebalance_count=rb.responses.count,
            rebalance_rate=rb.responses.rate,
            rebalance_behaves=rb.behaving,
            rebalance_changes=np.abs(rb.value - np.asarray(study.words.g)[None]).sum(axis=1),
            rebalance_seconds=np.array(time.perf_counter() - t),
        )
    if c.retune.enabled:
        t = time.perf_counter()
        rt = retune(study, mm, ref, index, c.retune, **kw)
        out.update(
            retune_words=np.asarray(jax.vmap(flatten_words)(rt.value)),
            retune_count=rt.responses.count,
            retune_rate=rt.responses.rate,
            retune_behaves=rt.behaving,
            retune_changes=word_changes(rt.value, nominal),
            retune_seconds=np.array(time.perf_counter() - t),
        )
    return out


def _print_generation(generation: int, generations: int, best: float) -> None:
    print(
        f"  robust words: generation {generation}/{generations}, training objective {best:.3f} "
        f"(minus the fraction of chips within {ROBUST_RATE_TOL:.0%}, plus 0.1 x their capped rate error)",
        flush=True,
    )


def _robust_saved(study: Study, ref: Responses, folder: Path | None, settings, mesh, block, progress,
                  on_save: Callable[[Path], None] | None = None):  # fmt: skip
    """The robust words of a study, computed once and kept in ``folder/robust_words.npz``."""
    path = None if folder is None else folder / "robust_words.npz"
    if path is not None and path.exists():
        f = _load_saved(path, {"g", "e_rev", "i_b", "history"}, "the robust words")
        return NDWords(f["g"], f["e_rev"], f["i_b"]), f["history"]
    words, history = robust_words(study, ref, settings, progress=progress, mesh=mesh, block=block)
    if path is not None:
        _atomic_savez(path, dict(g=np.asarray(words.g), e_rev=np.asarray(words.e_rev),
                                 i_b=np.asarray(words.i_b), history=history))  # fmt: skip
        if on_save is not None:
            on_save(path)
    return words, history


def _load_chunk(path: Path, index: np.ndarray, names: set[str]) -> dict:
    """A saved chunk: refused (:class:`SavedWorkError`) when it cannot be read, lacks one of
    ``names``, has arrays of another length, or holds other chips (the folder belongs to another
    study)."""
    part = _load_saved(path, names, "that chunk")
    if part["index"].shape != index.shape or not np.array_equal(part["index"], index):
        chips = f"chips {part['index'][[0, -1]]}" if part["index"].size else "no chips"
        raise SavedWorkError(path, f"it holds {chips}, expected {index[[0, -1]]}: the folder belongs to "
                             "another study (use a fresh folder), or the file is damaged")  # fmt: skip
    for name in names:
        rows = part[name].shape[:1]
        if not name.endswith("seconds") and rows != index.shape:
            raise SavedWorkError(path, f"its array {name!r} has shape {part[name].shape}, expected "
                                 f"{index.size} rows")  # fmt: skip
    return {name: part[name] for name in names}


def _concatenate(parts: list[dict]) -> dict:
    """The chunks' arrays concatenated over the chips (scalars, e.g. seconds: one per chunk)."""

    def join(name):
        arrays = [p[name] for p in parts]
        return np.concatenate(arrays) if arrays[0].ndim else np.array(arrays)

    return {name: join(name) for name in parts[0]}


def run_study(
    study: Study,
    n_chips: int,
    *,
    ref: Responses,
    compensation: CompensationSettings | None = None,
    offset_unit: float | None = None,
    chunk: int = 100,
    folder=None,
    label: str = "",
    progress: bool = True,
    mesh=None,
    block: int = 512,
    on_save: Callable[[Path], None] | None = None,
) -> dict:
    """All chips ``0 .. n_chips - 1`` in chunks of ``chunk`` (:func:`study_chunk`), resumable.

    Each finished chunk is saved in ``folder`` (when given) as ``chunk_00000.npz`` etc. and loaded,
    not recomputed, when the study is run again; the robust words (:func:`robust_words`) are
    computed first and kept there too (``robust_words.npz``).

    Args:
        study, n_chips: the study and how many chips.
        ref: the reference responses a chip is judged against, (C,) arrays.
        compensation: which compensations run, and their settings (``None``: the defaults).
        offset_unit: the current (A) that an offset fraction of 1 stands for (default: the
            largest ``|current|`` of the study).
        chunk, folder: chips per chunk, and where chunks are kept (None: nowhere).
        label, progress: a progress bar on stdout (``ndjax._progress.Progress``) with this label.
            The robust search reports each generation on stdout either way.
        mesh, block: devices to shard the chips over, and jobs per block of the kernel.
        on_save: called with the path of each file saved in ``folder`` (a chunk, the robust words)
            once it is in place (the runner records it in the run folder's manifest).

    Returns:
        The chunks' arrays concatenated over the chips (per-chunk scalars such as ``seconds``
        stacked), plus ``robust_words`` (48,), ``robust_history`` and ``robust_fit_seconds`` when
        ``robust`` runs.

    Raises:
        ValueError: for non-positive ``n_chips`` or ``chunk`` or settings out of bounds.
        SavedWorkError: a saved file in ``folder`` cannot be used (unreadable, incomplete, or of
            another study); the message names it.
        OSError: a file cannot be saved (``filename`` names it; finished chunks are kept).
    """
    from .._progress import Progress

    comp = CompensationSettings() if compensation is None else compensation
    problems = check_settings(comp)
    if problems:
        raise ValueError("; ".join(m for _, m in problems))
    if n_chips < 1 or chunk < 1:
        raise ValueError(f"n_chips and chunk must be positive, got {n_chips} and {chunk}")
    if folder is not None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
    bar = Progress(n_chips, "chips", label) if progress else None  # its clock includes the robust fit
    robust = None
    if comp.robust.enabled:
        t = time.perf_counter()
        robust, robust_history = _robust_saved(
            study, ref, folder, comp.robust, mesh, block, _print_generation, on_save
        )
        robust_seconds = time.perf_counter() - t
    report: Callable[[int, int, float], None] = (lambda *_: None) if bar is None else _bar_update(bar, folder)
    parts, done, resumed = [], 0, 0
    names = chunk_names(comp)
    for k, start in enumerate(range(0, n_chips, chunk)):
        index = np.arange(start, min(start + chunk, n_chips))
        path = None if folder is None else folder / f"chunk_{k:05d}.npz"
        if path is not None and path.exists():
            part = _load_chunk(path, index, names)
            resumed += index.size
            if bar is not None:
                bar.skip(index.size)
        else:
            part = study_chunk(study, index, ref, comp, offset_unit, robust, mesh, block)
            if path is not None:
                _atomic_savez(path, part)
                if on_save is not None:
                    on_save(path)
        parts.append(part)
        done += index.size
        report(done, resumed, float(np.mean(np.concatenate([p["behaves"] for p in parts]))))
    out = _concatenate(parts)
    if robust is not None:
        out["robust_words"] = np.asarray(flatten_words(robust))
        out["robust_history"] = np.asarray(robust_history)
        out["robust_fit_seconds"] = np.array(robust_seconds)  # the load time when read back
    return out


def _bar_update(bar, folder) -> Callable[[int, int, float], None]:
    def report(done: int, resumed: int, behaving: float) -> None:
        note = f"behaving {behaving:.0%}" + (f" ({resumed} resumed from {folder})" if resumed else "")
        bar.update(done, note)

    return report
