"""The one gradient loop: a jitted optax step for any trainable pytree, and keep-best.

Every gradient stage of ndjax (the fit's gradient stage, a study's per-chip retune, and the
identification of a chip's mismatch) is ``loss(trainable, fixed) -> (loss, aux)`` minimised
by :func:`optax_step` in a Python loop over optimiser steps, with :class:`KeepBest` holding the
best iterate by whatever host-side score the stage judges by (the loss of a rugged landscape
is a poor judge of where to stop).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["adam", "init_optimizer", "optax_step", "KeepBest"]


@functools.cache
def adam() -> optax.GradientTransformation:
    """Adam whose step size is state (``inject_hyperparams``), so one compiled step serves every
    learning rate; the same object each call, so it can be a static argument."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=1.0)


def init_optimizer(optim: optax.GradientTransformation, trainable: Any, learning_rate: float) -> Any:
    """The optimiser state of ``trainable`` with ``learning_rate`` set (dtype of the trainable)."""
    state = optim.init(trainable)
    dtype = jnp.result_type(*jax.tree.leaves(trainable))
    state.hyperparams["learning_rate"] = jnp.asarray(learning_rate, dtype=dtype)
    return state


class Step(NamedTuple):
    """Result of :func:`optax_step`: the updated trainable and state, and the loss and aux of the
    trainable *before* the update (what the gradient was taken at)."""

    trainable: Any
    state: Any
    loss: jax.Array
    aux: Any


@functools.partial(jax.jit, static_argnames=("loss_fn", "optim", "project"))
def optax_step(
    loss_fn: Callable,
    optim: optax.GradientTransformation,
    trainable: Any,
    state: Any,
    fixed: Any,
    mask: Any = None,
    *,
    project: Callable | None = None,
) -> Step:
    """One optimiser step: ``value_and_grad`` of ``loss_fn(trainable, fixed) -> (loss, aux)``,
    the gradient zeroed where ``mask`` (a pytree of booleans like ``trainable``, or None) is
    false, the optax update, and an optional ``project`` of the result (clip to a box).

    ``loss_fn``, ``optim`` and ``project`` are static: pass module-level functions (a fresh
    lambda each call is a fresh compilation).
    """
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable, fixed)
    if mask is not None:
        grads = jax.tree.map(lambda g, m: jnp.where(m, g, jnp.zeros_like(g)), grads, mask)
    updates, state = optim.update(grads, state, trainable)
    new = optax.apply_updates(trainable, updates)
    return Step(new if project is None else project(new), state, loss, aux)


class KeepBest:
    """The best iterate seen, by a host-side score (lower is better; ties keep the earlier)."""

    def __init__(self, value: Any, score: float):
        self.value, self.score = value, float(score)

    def offer(self, value: Any, score: float) -> bool:
        """Keep ``value`` if its score is lower; returns whether it was kept."""
        if float(score) < self.score:
            self.value, self.score = value, float(score)
            return True
        return False
