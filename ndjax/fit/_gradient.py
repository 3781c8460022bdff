"""Stage 2 of the fit: Adam on the relaxed words through the differentiable spike-time loss.

The relaxed words are rounded in the forward pass with a straight-through gradient and clipped
to their ranges (:func:`quantize_words`). Only the words of at least ``GradientSettings.min_word``
LSBs move: for them one LSB is a small relative step, so the straight-through gradient predicts
what a step does, while a 0 -> 1 flip of a small rate word can silence the chip, which no
gradient foresees (those are left to the integer polish). The landscape is rugged (a step of 0.1
LSB can change a spike count), so the best rounded chip seen is kept, judged by the free-running
:func:`score`. Every step is the one jitted :func:`ndjax.fit._loop.optax_step`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._settings import check_settings
from ..models._neurodyn import NDWords
from ._loop import KeepBest, adam, init_optimizer, optax_step
from ._objectives import FitProblem, loss, with_words, word_scores
from ._settings import GradientSettings
from ._wordspace import flatten_words, quantize_words

__all__ = ["gradient", "GradientResult", "grad_loss", "in_word_box"]


def grad_loss(words: NDWords, fixed) -> tuple[jax.Array, None]:
    """The stage's ``loss_fn(trainable, fixed) -> (loss, aux)``: :func:`loss` of the chip with
    ``words`` rounded straight-through; ``fixed = (template, data)`` of a :class:`FitProblem`."""
    template, data = fixed
    return loss(with_words(template, quantize_words(words)), data), None


def in_word_box(w: NDWords) -> NDWords:
    """Relaxed words within half an LSB of their ranges (each still rounds into range)."""
    return NDWords(
        jnp.clip(w.g, -0.49, 1023.49), jnp.clip(w.e_rev, -1023.49, 1023.49), jnp.clip(w.i_b, -0.49, 1023.49)
    )


class GradientResult(NamedTuple):
    """Result of :func:`gradient`.

    Attributes:
        words: the best relaxed words seen (:class:`NDWords`, floats; ``start`` if none beat it).
        losses: the loss at each step (at the words the gradient was taken at), (steps,).
        scores: the score of the start, then of the words every third step and after the last.
    """

    words: NDWords
    losses: list
    scores: list


def gradient(
    problem: FitProblem,
    start: NDWords,
    settings: GradientSettings,
    *,
    say: Callable[[str], None] | None = None,
) -> GradientResult:
    """``settings.steps`` Adam steps on ``start``, keeping the best rounded chip by :func:`score`.

    Args:
        problem: the training problem.
        start: relaxed words to start from (:class:`NDWords`, floats, LSBs).
        settings: the stage's :class:`GradientSettings` (``steps = 0``: ``start`` comes back).
        say: called with one-line progress reports (``None``: silent).

    Returns:
        :class:`GradientResult`.

    Raises:
        ValueError: invalid settings.
    """
    bad = check_settings(settings)
    if bad:
        raise ValueError("gradient: invalid settings: " + "; ".join(m for _, m in bad))
    say = say or (lambda _message: None)
    template, data = problem.template, problem.data

    def score_of(w: NDWords) -> float:
        return float(word_scores(template, flatten_words(w)[None], data)[0])

    words, steps = start, settings.steps
    optim = adam()
    state = init_optimizer(optim, words, settings.learning_rate)
    trust = jax.tree.map(lambda x: jnp.abs(jnp.round(x)) >= settings.min_word, words)
    keep = KeepBest(words, score_of(words))
    losses, scores = [], [keep.score]
    for i in range(steps):
        words, state, value, _ = optax_step(grad_loss, optim, words, state, (template, data), trust,
                                            project=in_word_box)  # fmt: skip
        losses.append(float(value))
        if i % 3 == 2 or i == steps - 1:  # the loss is rugged: keep the best rounded chip seen
            s = score_of(words)
            scores.append(s)
            keep.offer(words, s)
        if i % 20 == 19 or i == steps - 1:
            say(f"[gradient] step {i + 1}/{steps}: loss {float(value):.4f}, best score {keep.score:.3f}")
    return GradientResult(keep.value, losses, scores)
