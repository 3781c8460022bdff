"""Stage 1 of the fit: calibrate 13 global factors of the analog NNLS words by CMA-ES.

Thirteen factors (:mod:`._wordspace`: one per conductance, a shift per reversal, one per
alpha/beta rate, one on all rates) are searched by a few independent CMA-ES runs side by side,
every candidate of a generation simulated in one ``vmap``, on the free-running :func:`score` of
the rounded chip. A spike count is not differentiable, and from a chip that does not fire a trace
loss has no gradient towards firing; a 13-dimensional search does not need one. The runs start at
the NNLS words with a small step (``CalibrateSettings.sigma``): the good basin is near them, and
wider steps wander off to chips that fire too slowly near the onset of repetitive firing. A
calibration still above a passing score after its generations and still improving goes on
(``extend``). Several candidate targets (:func:`ndjax.fit.make_targets`) are screened: a few
generations each, then only the best goes on. The measurements behind the step, the extension and
the screen: "Why the defaults" in ``experiments/FIT_RESULTS.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._settings import check_settings
from ..models._neurodyn import NDChip, NDWords
from ._objectives import FitProblem, TrainingData, score, with_words
from ._search import CMAES
from ._settings import CalibrateSettings
from ._wordspace import N_FACTORS, apply_factors, quantize_words

__all__ = ["calibrate", "CalibrationResult", "factor_scores", "EXTEND_GAIN"]

#: An extension of the calibration must lower its score by this fraction to earn the next one.
EXTEND_GAIN = 0.05


@jax.jit
def factor_scores(template: NDChip, words0: NDWords, thetas, data: TrainingData) -> jax.Array:
    """:func:`score` of the rounded chips ``apply_factors(words0, theta)`` for a batch
    ``thetas`` (B, N_FACTORS) of factors; (B,). Compiled once per problem shape."""

    def one(th):
        return score(with_words(template, quantize_words(apply_factors(words0, th))), data)

    return jax.vmap(one)(thetas)


class CalibrationResult(NamedTuple):
    """Result of :func:`calibrate`.

    Attributes:
        index: which problem (candidate target) was kept.
        runs: ``(score, words)`` of each CMA-ES run of the kept one, best first (ties in run
            order); ``words`` the unrounded factored words (:class:`NDWords`).
        trace: the kept candidate's best score after each generation, from its start (G + 1,).
        scores: each candidate's final best score (a screened-out one at its screen).
    """

    index: int
    runs: list
    trace: list
    scores: list


class _Run(NamedTuple):
    """One candidate's calibration in progress (its strategy and trace are updated in place)."""

    problem: FitProblem
    words0: NDWords
    es: CMAES
    trace: list
    label: str


def _start(problem: FitProblem, words0: NDWords, settings: CalibrateSettings, seed: int, label: str,
           say: Callable[[str], None]) -> _Run:  # fmt: skip
    # `restarts` independent CMA-ES runs, every candidate of a generation in one vmap: the
    # landscape has many local optima, and one run lands in a different one per seed
    es = CMAES(N_FACTORS, settings.population, settings.sigma, restarts=settings.restarts, seed=seed)
    start = float(factor_scores(problem.template, words0, jnp.zeros((1, N_FACTORS)), problem.data)[0])
    es.best[:] = start
    say(f"[calibrate{label}] start: score {start:.3f} ({settings.restarts} restarts)")
    return _Run(problem, words0, es, [start], label)


def _advance(run: _Run, until: int, say: Callable[[str], None]) -> float:
    """Generations of ``run`` up to ``until`` in all; its best score."""
    es, p = run.es, run.problem
    for gen in range(len(run.trace) - 1, until):
        cands = es.ask()
        thetas = jnp.asarray(cands.reshape(-1, N_FACTORS))
        es.tell(cands, np.asarray(factor_scores(p.template, run.words0, thetas, p.data)))
        run.trace.append(float(es.best.min()))
        if gen % 5 == 4 or gen == until - 1:
            say(
                f"[calibrate{run.label}] generation {gen + 1}/{until}: best score "
                f"{es.best.min():.3f} (runs: {', '.join(f'{b:.2f}' for b in es.best)})"
            )
    return run.trace[-1]


def _extend(run: _Run, settings: CalibrateSettings, say: Callable[[str], None]) -> float:
    """A calibration still above ``extend_above`` goes on by ``extend`` generations at a time, at
    most ``extend_max`` times ``generations`` more, while each extension gains ``EXTEND_GAIN``."""
    until = len(run.trace) - 1
    most = int(round(settings.generations * (1.0 + settings.extend_max)))
    while 0 < until < most and settings.extend > 0 and run.trace[-1] > settings.extend_above:
        before, until = run.trace[-1], min(until + settings.extend, most)
        say(f"[calibrate{run.label}] score {before:.3f} above {settings.extend_above:g}: on to {until}")
        if _advance(run, until, say) > (1.0 - EXTEND_GAIN) * before:
            break
    return run.trace[-1]


def calibrate(
    problems: Sequence[FitProblem],
    starts: Sequence[NDWords],
    settings: CalibrateSettings,
    *,
    seed: int = 0,
    say: Callable[[str], None] | None = None,
) -> CalibrationResult:
    """CMA-ES over the 13 factors of each candidate's start words; the best candidate is kept.

    With one candidate (or ``settings.screen`` 0 or not below ``generations``) every candidate
    is calibrated for ``generations`` and the best one extended; with several, each is first
    calibrated for ``screen`` generations and only the best goes on to ``generations`` and the
    extension. ``generations = 0``: the start words are scored, nothing moves.

    Args:
        problems: one :class:`FitProblem` per candidate target (the same currents).
        starts: each candidate's start words (the analog NNLS words), as many as ``problems``.
        settings: the stage's :class:`CalibrateSettings`.
        seed: seeds the CMA-ES runs (each candidate's with the same seed).
        say: called with one-line progress reports (``None``: silent).

    Returns:
        :class:`CalibrationResult`.

    Raises:
        ValueError: invalid settings, or no problem, or not one start per problem.
    """
    bad = check_settings(settings)
    if bad:
        raise ValueError("calibrate: invalid settings: " + "; ".join(m for _, m in bad))
    if not problems or len(problems) != len(starts):
        raise ValueError(f"calibrate: expected one start per problem, got {len(starts)} for {len(problems)}")
    say = say or _silent
    several = len(problems) > 1

    def start(i: int) -> _Run:
        t = problems[i].target
        label = f" scl_t={t.scl_t:.2f} I_voltage={1e9 * t.i_voltage:.4g}nA" if several else ""
        return _start(problems[i], starts[i], settings, seed, label, say)

    if several and 0 < settings.screen < settings.generations:
        runs = [start(i) for i in range(len(problems))]
        scores = [_advance(r, settings.screen, say) for r in runs]
        best = int(np.argmin(scores))
        say(f"[calibrate] screened after {settings.screen} generations: kept{runs[best].label}")
        _advance(runs[best], settings.generations, say)
    else:
        runs = []
        for i in range(len(problems)):
            runs.append(start(i))
            _advance(runs[-1], settings.generations, say)
        scores = [r.trace[-1] for r in runs]
        best = int(np.argmin(scores))
    scores[best] = _extend(runs[best], settings, say)
    kept = runs[best]
    es = kept.es
    order = np.argsort(es.best, kind="stable")
    finals = [(float(es.best[i]), apply_factors(kept.words0, jnp.asarray(es.best_x[i]))) for i in order]
    if several:
        say(
            f"[calibrate] kept{kept.label} (scores: "
            + ", ".join(f"{r.label.strip()}: {s:.3f}" for r, s in zip(runs, scores, strict=True))
            + ")"
        )
    return CalibrationResult(best, finals, kept.trace, scores)


def _silent(_message: str) -> None:
    pass
