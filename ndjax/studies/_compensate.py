"""The guide's manual compensations, automated: a current offset, and Na/K conductance rebalancing.

Each tries a small grid on every chip (all candidates of all chips in one flat batch of jobs) and
keeps, per chip, the smallest change that makes it behave like the reference. Per-chip re-tuning
is in ``_retune.py``, one robust word set for every chip in ``_robust.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._analysis import behaves
from ..models._neurodyn import WORD_RANGES, Mismatch, NDWords
from ._kernel import broadcast_words, repeat_tree, responses_grid, run_jobs
from ._study import Responses, Study

__all__ = [
    "Compensated",
    "compensate_offset",
    "compensate_rebalance",
    "rebalance_candidates",
    "inverse_words",
    "word_changes",
]


class Compensated(NamedTuple):
    """What a compensation did to N chips.

    Attributes:
        value: per chip, what was chosen: (N,) offsets in A (NaN where none works), (N, 3)
            conductance words, or batched :class:`NDWords`.
        responses: :class:`Responses` of (N, C) arrays with the chosen value.
        behaving: (N,) bool, whether the chip behaves with it.
    """

    value: object
    responses: Responses
    behaving: np.ndarray


def _first_true(mask: np.ndarray) -> np.ndarray:
    """Index of the first True along the last axis, -1 where none."""
    any_ = mask.any(axis=-1)
    return np.where(any_, np.argmax(mask, axis=-1), -1)


def _pick(r: Responses, pick: np.ndarray) -> Responses:
    """Per chip (first axis), the responses of candidate ``pick`` (the first where -1)."""
    sel, rows = np.maximum(pick, 0), np.arange(pick.size)
    return Responses(r.count[rows, sel], r.rate[rows, sel], r.status[rows, sel])


def compensate_offset(
    study: Study, mismatch: Mismatch, ref: Responses, offsets: Sequence[float], **kw
) -> Compensated:
    """The smallest constant current offset that makes each chip behave (the guide's "raise the
    applied current"); the offsets are tried in order of size, zero first.

    Args:
        study, mismatch: the study and its N chips' (batched) mismatch.
        ref: the reference, (C,) arrays.
        offsets: current offsets to try, A.
        kw: ``mesh``, ``block`` of :func:`run_jobs`.

    Returns:
        :class:`Compensated`: (N,) chosen offsets in A (NaN where none works), the responses with
        them (with no offset where none works), and whether one works.
    """
    offsets = np.asarray(sorted(set(float(o) for o in offsets) | {0.0}, key=lambda o: (abs(o), o)))
    n = jax.tree.leaves(mismatch)[0].shape[0]
    r = responses_grid(study, broadcast_words(study.words, n), mismatch, offsets, **kw)  # (N, K, C)
    ok = behaves(r.count, r.rate, ref.count, ref.rate, study.count_tol, study.rate_tol)  # (N, K)
    pick = _first_true(ok)
    chosen = np.where(pick >= 0, offsets[np.maximum(pick, 0)], np.nan)
    return Compensated(chosen, _pick(r, pick), np.isfinite(chosen))


def rebalance_candidates(dg: np.ndarray, factors: Sequence[float]) -> np.ndarray:
    """Distinct conductance words: ``dg[Na]`` and ``dg[K]`` times every pair of ``factors``.

    Args:
        dg: (3,) conductance words [Na, K, L].
        factors: factors tried on each of the Na and K words.

    Returns:
        (P, 3) integer-valued words, rounded and clipped to 0..1023, ordered by their total change
        in LSBs (the unchanged words first).
    """
    dg = np.asarray(dg, dtype=float)
    cands = {tuple(dg.round().astype(int))}
    for fa in factors:
        for fk in factors:
            w = dg.copy()
            w[0], w[1] = dg[0] * fa, dg[1] * fk
            cands.add(tuple(np.clip(w.round(), 0, 1023).astype(int)))
    return np.array(sorted(cands, key=lambda w: (np.abs(np.array(w) - dg).sum(), w)), dtype=float)


def compensate_rebalance(
    study: Study, mismatch: Mismatch, ref: Responses, factors: Sequence[float], **kw
) -> Compensated:
    """The smallest change of the Na and K conductance words that makes each chip behave (the
    guide's "rebalance the conductances"), from :func:`rebalance_candidates`.

    Args:
        study, mismatch: the study and its N chips' (batched) mismatch.
        ref: the reference, (C,) arrays.
        factors: factors tried on each of the Na and K words.
        kw: ``mesh``, ``block`` of :func:`run_jobs`.

    Returns:
        :class:`Compensated`: (N, 3) chosen conductance words (the nominal ones where none works),
        the responses with them, and whether they work.
    """
    cands = rebalance_candidates(np.asarray(study.words.g), factors)  # (P, 3)
    n = jax.tree.leaves(mismatch)[0].shape[0]
    p, c = cands.shape[0], study.currents.size
    words = broadcast_words(study.words, n * p)
    words = dataclasses.replace(words, g=jnp.asarray(np.tile(cands, (n, 1))))
    words = repeat_tree(words, c)
    mm = repeat_tree(mismatch, p * c)
    i_app = np.tile(np.asarray(study.currents), n * p)
    r = run_jobs(study, words, mm, i_app, **kw)
    r = Responses(*(x.reshape(n, p, c) for x in r))
    ok = behaves(r.count, r.rate, ref.count, ref.rate, study.count_tol, study.rate_tol)  # (N, P)
    pick = _first_true(ok)
    return Compensated(cands[np.maximum(pick, 0)], _pick(r, pick), pick >= 0)


def inverse_words(words: NDWords, mismatch: Mismatch) -> NDWords:
    """Each word divided by its chip's mismatch factor, rounded and clipped to its range (batched).

    ``w' = clip(round(w / f), lo, hi)``: the words that would restore the chip if every mismatch
    were a factor on a word (the gate powers' jitter is not, and a word of a few LSBs cannot move
    by less than one LSB).
    """

    def fix(w, f, name):
        lo, hi = WORD_RANGES[name]
        return jnp.clip(jnp.round(w / f), lo, hi)

    return NDWords(
        fix(words.g, mismatch.g, "dg"),
        fix(words.e_rev, mismatch.e_rev, "dErev"),
        fix(words.i_b, mismatch.i_b, "dIb"),
    )


def word_changes(new: NDWords, old: NDWords) -> np.ndarray:
    """(N,) total absolute change in LSBs over all 48 words of each chip (batched words)."""
    d = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - np.asarray(b)), new, old)
    return sum(x.reshape(x.shape[0], -1).sum(axis=1) for x in jax.tree.leaves(d))
