"""The end-to-end fit: integer NeuroDyn words that spike like a Hodgkin-Huxley model (SPEC 3, 4).

The classical pipeline (:func:`ndjax.fit.make_target`: NNLS, time scale, rounding) gets the
kinetics close, but the amplifiers' ``tanh`` saturation and the rounding of small weights leave a
chip that fires once and rests. :func:`fit_words` composes three stages, each a function of a
:class:`FitProblem`, a start and its frozen settings:

1. :func:`ndjax.fit.calibrate`: CMA-ES over 13 global factors of the analog NNLS words;
2. :func:`ndjax.fit.gradient`: Adam on the relaxed words, straight-through rounding;
3. :func:`ndjax.fit.polish`: integer coordinate search;

all judged by the free-running :func:`ndjax.fit.score` at the training currents (by default
chosen from the target's HH F-I curve, :func:`ndjax.fit.auto_currents`), the chip solved at
``SEARCH_RTOL`` during the search and at the default tolerances in the evaluation. A fit ending
above ``retry_above`` runs again with the next seed. What each stage contributes, measured:
"Why the defaults" in ``experiments/FIT_RESULTS.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from .._settings import check_settings
from ..models._neurodyn import NDWords
from ._calibrate import calibrate
from ._checkpoint import Checkpoint, fingerprint
from ._currents import auto_currents, check_currents, check_positive
from ._gradient import gradient
from ._objectives import FitProblem, prepare_problem
from ._polish import polish
from ._settings import FitSettings
from ._target import Target
from ._wordspace import integer_words

__all__ = ["fit_words", "FitOutcome"]


class FitOutcome(NamedTuple):
    """Result of :func:`fit_words`.

    Attributes:
        words: ``(dg, dErev, dIb)`` integer NumPy arrays, in range, shapes (3,), (3,), (3, 2, 7).
        nnls_words: the classical NNLS-then-round words of the kept target, for comparison.
        target: the mapping kept (of ``target`` and ``alternatives``).
        history: the objective values seen, per stage: ``es`` (the calibration's best score per
            generation), ``grad`` (the gradient stage's loss per step), ``grad_score`` (its
            scores), ``polish`` (the best score per sweep), ``polish_starts`` (every start's),
            ``candidates`` (with alternatives: ``[scl_t, i_voltage, score]`` each) and
            ``attempts`` (``[seed, final score]`` of each attempt). The stages' lists are the
            kept attempt's.
        seconds: wall time of each stage, s, summed over the attempts (``currents`` when chosen
            here; ``calibrate`` includes preparing the problems).
        currents: the training currents used (uA/cm^2).
    """

    words: tuple
    nnls_words: tuple
    target: Target
    history: dict
    seconds: dict
    currents: tuple = ()


def fit_words(
    target: Target,
    words0: NDWords,
    currents_ua: Sequence[float] | str = "auto",
    *,
    t_hh_ms: float = 100.0,
    settings: FitSettings | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = print,
    alternatives: Sequence[tuple[Target, NDWords]] = (),
    checkpoint: str | Path | None = None,
    on_save: Callable[[Path], None] | None = None,
) -> FitOutcome:
    """Find integer words that make the chip spike like the HH target (module docstring).

    Args:
        target, words0: from :func:`ndjax.fit.make_target` (``words0`` the analog NNLS words).
        currents_ua: training currents (uA/cm^2), or ``"auto"``: chosen from the target's HH
            F-I curve by :func:`ndjax.fit.auto_currents` (0 to 20 uA/cm^2).
        t_hh_ms: span of each current, ms of HH time.
        settings: every knob of the stages (:class:`FitSettings`, whose fields document them;
            ``None``: its defaults).
        seed: seeds the CMA-ES runs; retry ``k`` uses ``seed + k``.
        progress: called with one-line reports (``None``: silent).
        alternatives: more ``(target, words0)`` pairs (other time scales or ``I_voltage`` values
            for the same model, :func:`ndjax.fit.make_targets`), screened by the calibration;
            the best goes on to the later stages.
        checkpoint: a folder where each attempt's calibration and each finished attempt are
            saved as they end (:mod:`ndjax.fit._checkpoint`); run again with the same folder
            and inputs, the fit loads them instead of recomputing, and ends on the same words.
            Files saved by a fit of other inputs are refused. ``None``: nothing is saved.
        on_save: called with the path of each checkpoint file saved.

    Returns:
        :class:`FitOutcome` (its ``target`` is the one kept); of several attempts, the first
        with the lowest final training score.

    Raises:
        ValueError: invalid settings, ``currents_ua`` a string other than ``"auto"`` or a list that
            is empty or has a non-finite entry, ``t_hh_ms`` not finite and > 0, or a checkpoint
            file of another fit.
        SolveFailedError: (a ``ValueError``) HH's solve failed at a training current (named).
    """
    if not isinstance(currents_ua, str):
        check_currents("fit_words", "currents_ua", currents_ua)
    check_positive("fit_words", "t_hh_ms", t_hh_ms)
    settings = FitSettings() if settings is None else settings
    bad = check_settings(settings)
    if bad:
        raise ValueError("fit_words: invalid settings: " + "; ".join(m for _, m in bad))
    say = progress or (lambda _message: None)
    seconds: dict[str, float] = {}
    if isinstance(currents_ua, str):
        if currents_ua != "auto":
            raise ValueError(
                f"fit_words: currents_ua must be a list of currents or 'auto', got {currents_ua!r}"
            )
        t0 = time.perf_counter()
        currents_ua = auto_currents(target, t_hh_ms=t_hh_ms)
        seconds["currents"] = time.perf_counter() - t0
        say(f"[currents] auto: {', '.join(f'{c:g}' for c in currents_ua)} uA/cm^2")
    currents = tuple(float(c) for c in currents_ua)
    store = None
    if checkpoint is not None:
        key = fingerprint(target, words0, list(alternatives), currents, float(t_hh_ms), settings)
        store = Checkpoint(checkpoint, key, on_save)

    t0 = time.perf_counter()
    candidates = [(target, words0), *alternatives]
    problems = [prepare_problem(t, currents, t_hh_ms, settings.n_save, sub_weight=settings.sub_weight)
                for t, _ in candidates]  # fmt: skip
    starts = [w for _, w in candidates]
    seconds["calibrate"] = time.perf_counter() - t0

    outcomes: list[FitOutcome] = []
    for k in range(settings.retries + 1):
        outcomes.append(_attempt(problems, starts, settings, seed + k, say, store))
        for key, s in outcomes[-1].seconds.items():
            seconds[key] = seconds.get(key, 0.0) + s
        final = outcomes[-1].history["polish"][-1]
        if final <= settings.retry_above or k == settings.retries:
            break
        say(f"[retry] final training score {final:.3f} above {settings.retry_above:g}: "
            f"the fit again with seed {seed + k + 1}")  # fmt: skip
    attempts = [[seed + k, o.history["polish"][-1]] for k, o in enumerate(outcomes)]
    best = min(outcomes, key=lambda o: o.history["polish"][-1])  # the first of equals
    best.history["attempts"] = attempts
    if len(outcomes) > 1:
        say(
            f"[retry] kept the attempt with seed {int(min(attempts, key=lambda a: a[1])[0])} (scores: "
            + ", ".join(f"seed {int(a[0])}: {a[1]:.3f}" for a in attempts)
            + ")"
        )
    return best._replace(seconds=seconds)


def _attempt(problems: Sequence[FitProblem], starts: Sequence[NDWords], settings: FitSettings, seed: int,
             say: Callable[[str], None], store: Checkpoint | None) -> FitOutcome:  # fmt: skip
    """One calibrate -> gradient -> polish with ``seed``; its own ``seconds``. With a ``store``,
    a saved attempt is loaded whole, a saved calibration is loaded and the later stages run."""
    done = None if store is None else store.load_attempt(seed)
    if done is not None:
        say(f"[resume] attempt with seed {seed} loaded from {store.folder} (final score "
            f"{done['history']['polish'][-1]:.3f})")  # fmt: skip
        i = done["index"]
        return FitOutcome(done["words"], integer_words(starts[i]), problems[i].target, done["history"],
                          done["seconds"], problems[i].currents)  # fmt: skip
    seconds = {}
    t0 = time.perf_counter()
    cal = None if store is None else store.load_calibration(seed)
    if cal is not None:
        say(f"[resume] calibration with seed {seed} loaded from {store.folder} "
            f"(best score {cal.trace[-1]:.3f})")  # fmt: skip
    else:
        cal = calibrate(problems, starts, settings.calibrate, seed=seed, say=say)
        if store is not None:
            store.save_calibration(seed, cal)
    problem = problems[cal.index]
    seconds["calibrate"], t0 = time.perf_counter() - t0, time.perf_counter()
    grad = gradient(problem, cal.runs[0][1], settings.gradient, say=say)
    seconds["gradient"], t0 = time.perf_counter() - t0, time.perf_counter()
    # the polish also starts from the next best calibration runs: the calibration score is a poor
    # predictor of where the polish ends
    polish_starts = [grad.words] + [w for _, w in cal.runs[1 : settings.polish.starts]]
    pol = polish(problem, polish_starts, settings.polish, say=say)
    seconds["polish"] = time.perf_counter() - t0
    history: dict[str, list] = {"es": cal.trace, "grad": grad.losses, "polish": pol.scores}
    if len(problems) > 1:
        history["candidates"] = [
            [p.target.scl_t, p.target.i_voltage, s] for p, s in zip(problems, cal.scores, strict=True)
        ]
    history["grad_score"] = grad.scores
    history["polish_starts"] = pol.start_scores
    if store is not None:
        store.save_attempt(seed, cal.index, pol.words, history, seconds)
    return FitOutcome(pol.words, integer_words(starts[cal.index]), problem.target, history, seconds,
                      problem.currents)  # fmt: skip
