"""One robust word set for every chip, fitted on training chips a study never draws.

The search maximises the fraction of training chips whose rate is within ``rate_tol`` of the
reference at every current (:func:`_robust_objective`), over the 13 global factors of the nominal
words or over all 48 words (:func:`robust_candidates`), with the (1 + population) evolution strategy
or CMA-ES of ``ndjax.fit._search``. What it reaches, and why that is far from every chip: "Why one
robust word set stays far from 80%" in experiments/MISMATCH_RESULTS.md.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._analysis import within_rate
from .._settings import check_settings
from ..fit._search import CMAES, es_candidates, es_key, es_select
from ..fit._wordspace import N_FACTORS, N_WORDS, apply_factors, flatten_words, quantize_words, unflatten_words
from ..models._neurodyn import NDWords
from ._kernel import repeat_tree, run_jobs, tile_tree
from ._settings import RobustSettings
from ._study import Responses, Study, chip_mismatch

__all__ = ["robust_words", "robust_candidates", "TRAIN_OFFSET", "ROBUST_RATE_TOL", "WORD_OFFSET"]

#: Chips of the robust fit's training set have indices from here on: a study never draws them
#: (its chips are 0, 1, 2, ...), so the robust words are judged on chips they never saw.
TRAIN_OFFSET = 1 << 30
#: The robust word set is judged by a looser criterion: rate within this fraction at every current.
ROBUST_RATE_TOL = 0.10
#: ``space="words"``: ``dg`` and ``dIb`` move as ``(w + WORD_OFFSET) exp(theta) - WORD_OFFSET`` (a zero
#: word can grow, a large one moves in proportion), ``dErev`` as ``w + 40 theta``.
WORD_OFFSET = 10.0
#: Key stream of the (1 + population) strategy (``es_key(seed, stream, generation)``).
ES_STREAM = 0xC0B


def robust_candidates(w0: NDWords, thetas, space: str) -> NDWords:
    """Rounded candidate words for the search parameters ``thetas``.

    Args:
        w0: the nominal words.
        thetas: (P, 13) log-factors (``space="factors"``, ``apply_factors``) or (P, 48) word
            parameters (``space="words"``, see :data:`WORD_OFFSET`); zeros give ``w0``.
        space: ``"factors"`` or ``"words"``.

    Returns:
        Integer-valued :class:`NDWords` batched over P, clipped to the word ranges.
    """
    if space == "factors":
        return jax.vmap(lambda t: quantize_words(apply_factors(w0, t)))(jnp.asarray(thetas))
    flat0 = flatten_words(w0)

    def one(th):
        g = (flat0[:3] + WORD_OFFSET) * jnp.exp(th[:3]) - WORD_OFFSET
        e = flat0[3:6] + 40.0 * th[3:6]
        ib = (flat0[6:] + WORD_OFFSET) * jnp.exp(th[6:]) - WORD_OFFSET
        return quantize_words(unflatten_words(jnp.concatenate([g, e, ib])))

    return jax.vmap(one)(jnp.asarray(thetas))


def _robust_objective(count, rate, ref: Responses, tol: float) -> np.ndarray:
    """(P, T, C) -> (P,): minus the fraction of chips within ``tol``, plus a small smooth term
    (0.1 x the mean relative rate error, capped at 1) that ranks candidates with equal fractions."""
    frac = within_rate(count, rate, ref.rate, tol).mean(axis=-1)
    scale = np.where(ref.rate > 0, ref.rate, max(float(np.max(ref.rate)), 1.0))
    err = np.minimum(np.abs(np.nan_to_num(rate, nan=0.0) - ref.rate) / scale, 1.0)
    return -frac + 0.1 * err.mean(axis=(-2, -1))


def _uses_cmaes(settings: RobustSettings) -> bool:
    return settings.search == "cmaes" or (settings.search == "auto" and settings.space == "words")


def robust_words(
    study: Study,
    ref: Responses,
    settings: RobustSettings,
    *,
    rate_tol: float = ROBUST_RATE_TOL,
    progress: Callable[[int, int, float], None] | None = None,
    **kw,
) -> tuple[NDWords, np.ndarray]:
    """One word set for every chip, maximising the fraction of ``settings.train_chips`` training
    chips (indices from :data:`TRAIN_OFFSET`) whose rate is within ``rate_tol`` of the reference at
    every current.

    ``settings.search``: ``"es"`` the (1 + ``population``) evolution strategy with the fixed step
    ``sigma`` (draws from ``es_key(seed, ES_STREAM, generation)``), ``"cmaes"`` CMA-ES
    (``population`` candidates, initial step ``sigma``, seeded by the study's seed), ``"auto"`` the
    first for the factors and the second for the words. Reproducible from the study's seed.

    Args:
        study, ref: the study and the reference, (C,) arrays.
        settings: search space, search, training chips, generations, population, step.
        rate_tol: relative rate tolerance of the objective.
        progress: called after every generation as ``progress(generation, generations, best)``.
        kw: ``mesh``, ``block`` of :func:`run_jobs`.

    Returns:
        ``(words, history)``: integer-valued :class:`NDWords` and the best objective before the
        search and after each generation, (generations + 1,) (minus the training fraction, plus
        the tie-breaking term of :func:`_robust_objective`).

    Raises:
        ValueError: naming the setting, for settings out of their bounds or choices.
    """
    problems = check_settings(settings)
    if problems:
        raise ValueError("; ".join(m for _, m in problems))
    c, n_train, population = study.currents.size, settings.train_chips, settings.population
    mm = chip_mismatch(study, TRAIN_OFFSET + np.arange(n_train))
    dim = N_FACTORS if settings.space == "factors" else N_WORDS

    def evaluate(thetas):
        p = thetas.shape[0]
        w = repeat_tree(robust_candidates(study.words, thetas, settings.space), n_train * c)
        m = tile_tree(repeat_tree(mm, c), p)
        r = run_jobs(study, w, m, np.tile(study.currents, p * n_train), **kw)
        shape = (p, n_train, c)
        return _robust_objective(r.count.reshape(shape), r.rate.reshape(shape), ref, rate_tol)

    theta = np.zeros(dim)
    best = float(evaluate(theta[None])[0])
    history = [best]
    es = (
        CMAES(dim, max(population, 2), settings.sigma, restarts=1, seed=study.seed)
        if _uses_cmaes(settings)
        else None
    )
    for g in range(settings.generations):
        if es is None:
            cands = np.asarray(
                es_candidates(es_key(study.seed, ES_STREAM, g), theta, settings.sigma, population)
            )
        else:
            cands = es.ask()[0]
        scores = evaluate(cands)
        if es is not None:
            es.tell(cands[None], scores[None])
        (j,), (move,) = es_select(scores[None], np.array([best]))
        if move:
            best, theta = float(scores[j]), cands[j]
        history.append(best)
        if progress is not None:
            progress(g + 1, settings.generations, best)
    words = jax.tree.map(lambda x: x[0], robust_candidates(study.words, theta[None], settings.space))
    return words, np.asarray(history)
