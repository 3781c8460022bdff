"""Stage 3 of the fit: integer polish, a coordinate search over the integer words.

Each sweep scores every move of every start (+-1 LSB of every word and +-3% of the large ones,
:func:`polish_moves`) in one ``vmap`` on the free-running :func:`score`, then the best improving
moves of distinct words taken together (one sweep can take several moves that each help), and
takes the best of all it tried; a start stops when nothing improves it by more than
:data:`MIN_GAIN`. Several starts are polished side by side and the best final chip is kept (why one
start by default: "Why the defaults" in ``experiments/FIT_RESULTS.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from .._settings import check_settings
from ..models._neurodyn import NDWords
from ._objectives import FitProblem, padded_scores, word_scores
from ._settings import PolishSettings
from ._wordspace import N_WORDS, WORD_HI, WORD_LO, integer_words, unflatten_words

__all__ = ["polish", "PolishResult", "polish_moves", "MIN_GAIN"]

#: A move must lower the score by more than this: smaller gains are below what the metrics resolve.
MIN_GAIN = 2e-3
#: Batches of single moves and of combined moves are padded to multiples of these (few compiles).
_SINGLES_BUCKET, _COMBOS_BUCKET = 128, 16


def polish_moves(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The polish's distinct moves from the integer words ``flat`` (48,): +-1 LSB for every
    word and +-3% for the large ones (one LSB of a 900-LSB conductance word is below what the
    spike metrics resolve), clipped to the ranges, without no-ops and duplicates.

    Returns:
        ``(steps, word)``: steps (M, 48) to add to ``flat``, and (M,) the word each one moves.
    """
    unit = np.eye(N_WORDS)
    big = np.maximum(1.0, np.round(0.03 * np.abs(flat)))
    steps = np.concatenate([unit, -unit, unit * big[:, None], -unit * big[:, None]])
    steps = np.clip(flat[None] + steps, WORD_LO, WORD_HI) - flat[None]
    steps = np.unique(steps[np.any(steps != 0, axis=1)], axis=0)
    return steps, np.argmax(steps != 0, axis=1)


class PolishResult(NamedTuple):
    """Result of :func:`polish`.

    Attributes:
        words: ``(dg, dErev, dIb)`` integer NumPy arrays of the best final chip.
        scores: the best score over the starts before the first sweep and after each sweep.
        start_scores: every start's score, before the first sweep and after each sweep.
    """

    words: tuple
    scores: list
    start_scores: list


def _combined(flat: np.ndarray, moves: tuple[np.ndarray, np.ndarray], singles: np.ndarray, current: float,
              combine: int) -> np.ndarray | None:  # fmt: skip
    """The 2, ..., ``combine`` best improving single moves of distinct words taken together,
    (K, 48) clipped words; ``None`` if fewer than two improve."""
    steps, word = moves
    order = [j for j in np.argsort(singles) if singles[j] < current - MIN_GAIN]
    chosen, seen = [], set()
    for j in order:
        if word[j] not in seen:
            chosen.append(j)
            seen.add(word[j])
        if len(chosen) == combine:
            break
    if len(chosen) < 2:
        return None
    return np.clip(flat[None] + np.cumsum(steps[chosen], axis=0)[1:], WORD_LO, WORD_HI)


def _split(scores: np.ndarray, keys: list, sizes: list[int]) -> dict:
    """``scores`` of a concatenated batch back per key (``sizes`` rows each)."""
    return dict(zip(keys, np.split(scores, np.cumsum(sizes)[:-1]), strict=True))


def polish(
    problem: FitProblem,
    starts: Sequence[NDWords],
    settings: PolishSettings,
    *,
    say: Callable[[str], None] | None = None,
) -> PolishResult:
    """At most ``settings.sweeps`` sweeps of integer moves from each start; the best chip is kept.

    Args:
        problem: the training problem.
        starts: words to start from (:class:`NDWords`, rounded and clipped here; starts that
            round to the same words are polished once).
        settings: the stage's :class:`PolishSettings` (``sweeps = 0``: the best start, rounded).
        say: called with one-line progress reports (``None``: silent).

    Returns:
        :class:`PolishResult`.

    Raises:
        ValueError: invalid settings or no start.
    """
    bad = check_settings(settings)
    if bad:
        raise ValueError("polish: invalid settings: " + "; ".join(m for _, m in bad))
    if not starts:
        raise ValueError("polish: expected at least one start")
    say = say or (lambda _message: None)
    template, data = problem.template, problem.data
    flats: list[np.ndarray] = []
    for w in starts:
        f = np.concatenate([np.ravel(x) for x in integer_words(w)]).astype(float)
        if not any(np.array_equal(f, g) for g in flats):  # runs that ended on the same words
            flats.append(f)
    current = [float(c) for c in word_scores(template, jnp.asarray(np.stack(flats)), data)]
    best, per_start = [min(current)], [list(current)]
    active = list(range(len(flats)))
    for sweep in range(settings.sweeps):
        if not active:
            break
        moves = {k: polish_moves(flats[k]) for k in active}
        batch = np.concatenate([flats[k][None] + moves[k][0] for k in active])
        singles = _split(padded_scores(template, batch, data, _SINGLES_BUCKET), active,
                         [len(moves[k][0]) for k in active])  # fmt: skip
        combos = {}
        for k in active:
            c = _combined(flats[k], moves[k], singles[k], current[k], settings.combine)
            if c is not None:
                combos[k] = c
        if combos:
            scored = padded_scores(template, np.concatenate(list(combos.values())), data, _COMBOS_BUCKET)
            combo_scores = _split(scored, list(combos), [len(c) for c in combos.values()])
        for k in list(active):
            cands, sc = flats[k][None] + moves[k][0], singles[k]
            if k in combos:
                cands, sc = np.concatenate([cands, combos[k]]), np.concatenate([sc, combo_scores[k]])
            j = int(np.argmin(sc))
            if sc[j] >= current[k] - MIN_GAIN:
                active.remove(k)
                continue
            flats[k], current[k] = cands[j], float(sc[j])
        best.append(min(current))
        per_start.append(list(current))
        say(f"[polish] sweep {sweep + 1}: scores {', '.join(f'{c:.3f}' for c in current)} "
            f"({len(active)} of {len(flats)} starts still moving)")  # fmt: skip
    flat = flats[int(np.argmin(current))]
    return PolishResult(integer_words(unflatten_words(jnp.asarray(flat))), best, per_start)
