"""Per-chip re-tuning: every chip's words re-computed for its own (measured) mismatch.

Three stages, each only for the chips the previous one left misbehaving, all chips of a chunk in
one flat batch of jobs:

1. :func:`inverse_words`: every word divided by its mismatch factor and rounded;
2. a (1 + population) evolution strategy per chip (``ndjax.fit._search``) over the 13 global
   factors of ``ndjax.fit._wordspace.apply_factors`` (conductances, reversal shifts, one factor per
   rate and one for all rates), on :func:`_score`;
3. optionally, Adam steps (``ndjax.fit._loop.optax_step``) on log-factors of all 48 words, rounded
   in the forward pass (straight-through), on :func:`retune_loss`.

A chip stops moving as soon as its rounded words behave. Why these stages and defaults:
"Why the defaults" in experiments/MISMATCH_RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from .._analysis import behaves
from ..fit._loop import adam, init_optimizer, optax_step
from ..fit._search import es_candidates, es_key, es_select
from ..fit._wordspace import N_FACTORS, N_WORDS, apply_factors, flatten_words, quantize_words, unflatten_words
from ..models._neurodyn import Mismatch, NDChip, NDWords, chip_params, nd_constants
from ._compensate import Compensated, inverse_words
from ._kernel import Fixed, broadcast_words, chip_responses, fixed, repeat_tree, run_jobs, spikes_at
from ._settings import RetuneSettings
from ._study import Responses, Study

__all__ = ["retune", "retune_loss", "words_loss", "RetuneFixed"]

#: Key stream of the retune's evolution strategy (``es_key(seed, stream, chip, generation)``).
ES_STREAM = 0x5EED


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RetuneFixed:
    """What :func:`retune_loss` holds fixed, for n chips.

    Attributes:
        w0: (n, 48) flat start words (``flatten_words`` order).
        mismatch: the chips' mismatch, batched over n.
        currents: (C,) applied currents, A.
        ref_count, ref_rate: (C,) the reference's counts and rates (Hz).
        kernel: what every solve shares (``ndjax.studies._kernel.fixed``).
    """

    w0: jax.Array
    mismatch: Mismatch
    currents: jax.Array
    ref_count: jax.Array
    ref_rate: jax.Array
    kernel: Fixed


def _chip_loss(theta, w0, mismatch, currents, ref_count, ref_rate, fx: Fixed):
    """One chip: :func:`words_loss` of the words ``round(w0 exp(theta))``, rounded straight-through
    (the forward pass sees integer words, the gradient is that of the unrounded words)."""
    words = quantize_words(unflatten_words(w0 * jnp.exp(theta)))
    return words_loss(words, mismatch, currents, ref_count, ref_rate, fx)


def words_loss(words: NDWords, mismatch, currents, ref_count, ref_rate, fx: Fixed):
    """How far one chip with ``words`` fires from the reference.

    ``sum_c [ok_c ? ((rate_c - ref_rate_c) / scale_c)^2 : 1] + 0.01 sum_c (count_c - ref_count_c)^2``,
    with ``scale_c`` the reference's rate, or its largest rate where the reference does not fire
    repetitively; a failed solve costs 1. The interpolated first and last spike times make the rate
    differentiable in the words (the count term is piecewise constant).

    Args:
        words: one chip's words (differentiable floats).
        mismatch: its mismatch.
        currents: (C,) applied currents, A.
        ref_count, ref_rate: (C,) the reference's counts and rates (Hz).
        fx: what every solve shares.

    Returns:
        ``(loss, (count, rate))``: () loss, (C,) counts (-1: failed) and rates (Hz; 0 where failed).
    """
    params = chip_params(NDChip(words, fx.biases, mismatch, nd_constants(), digital=True))

    def one(i_app):
        tr, count, rate = spikes_at(params, i_app, fx)
        return jnp.where(tr.ok, count, -1), jnp.where(tr.ok, rate, 0.0), tr.ok

    count, rate, ok = jax.vmap(one)(currents)
    scale = jnp.where(ref_rate > 0, ref_rate, jnp.max(ref_rate))
    rel = (rate - ref_rate) / scale
    loss = jnp.sum(jnp.where(ok, rel**2, 1.0)) + 0.01 * jnp.sum((count - ref_count) ** 2)
    return loss, (count, rate)


def retune_loss(theta: jax.Array, fx: RetuneFixed):
    """The loss of n chips: the sum of each chip's :func:`_chip_loss`, so its gradient with respect
    to chip ``i``'s log-factors ``theta[i]`` (n, 48) is that chip's own.

    Returns:
        ``(loss, (count, rate))``: () loss and (n, C) counts and rates of the rounded words.
    """
    losses, aux = jax.vmap(_chip_loss, in_axes=(0, 0, 0, None, None, None, None))(
        theta, fx.w0, fx.mismatch, fx.currents, fx.ref_count, fx.ref_rate, fx.kernel
    )
    return jnp.sum(losses), aux


def _score(count, rate, ref: Responses) -> np.ndarray:
    """Host-side distance to the reference over the last axis (C): spike-count differences plus
    10x relative rate errors; a failed solve costs 100."""
    scale = np.where(ref.rate > 0, ref.rate, max(float(np.max(ref.rate)), 1.0))
    per = np.abs(count - ref.count) + 10.0 * np.abs(np.nan_to_num(rate) - ref.rate) / scale
    return np.sum(np.where(count < 0, 100.0, per), axis=-1)


@functools.partial(jax.jit, static_argnames=("population",))
def _es_candidates(w_start, theta, chips, generation, seed, sigma, *, population: int):
    """Rounded candidate words (n, P, 48) around each chip's factors ``theta`` (n, 13), and the
    candidate factors (n, P, 13); chip ``chips[i]``'s draws depend only on (seed, chip, generation)."""

    def per_chip(w, th, chip):
        cand = es_candidates(es_key(seed, ES_STREAM, chip, generation), th, sigma, population)
        words = jax.vmap(lambda f: flatten_words(quantize_words(apply_factors(unflatten_words(w), f))))(cand)
        return words, cand

    return jax.vmap(per_chip)(w_start, theta, chips)


def _es_stage(study: Study, mismatch, ref: Responses, index, flat0, r0: Responses, ok, settings, kw):
    """(1 + population) evolution strategy per misbehaving chip over the 13 global factors, from the
    words ``flat0`` (n, 48) whose responses are ``r0``; returns the best words and who behaves."""
    c, population = study.currents.size, settings.population
    todo = np.flatnonzero(~ok)
    w_start = flat0[todo]
    theta = np.zeros((todo.size, N_FACTORS))
    score = _score(r0.count[todo], r0.rate[todo], ref)
    best = np.asarray(flat0).copy()
    ok = ok.copy()
    active = np.ones(todo.size, bool)
    for g in range(settings.generations):
        live = np.flatnonzero(active)
        if live.size == 0:
            break
        # lanes padded to the chunk size: one compilation of the candidate draw per chunk size
        lanes = np.concatenate([live, np.full(flat0.shape[0] - live.size, live[0])])
        chips = jnp.asarray(index[todo[lanes]])
        words, cand = _es_candidates(w_start[lanes], jnp.asarray(theta[lanes]), chips, g, study.seed,
                                     settings.sigma, population=population)  # fmt: skip
        words, cand = words[: live.size], cand[: live.size]
        m = live.size * population
        w_jobs = jax.vmap(unflatten_words)(jnp.reshape(words, (m, N_WORDS)))
        sel = todo[live]
        mm = repeat_tree(jax.tree.map(lambda x, sel=sel: x[sel], mismatch), population)
        rr = run_jobs(study, repeat_tree(w_jobs, c), repeat_tree(mm, c), np.tile(study.currents, m), **kw)
        cnt, rate = rr.count.reshape(live.size, population, c), rr.rate.reshape(live.size, population, c)
        good = behaves(cnt, rate, ref.count, ref.rate, study.count_tol, study.rate_tol)  # (live, P)
        sc = _score(cnt, rate, ref)  # (live, P)
        pick, move = es_select(sc, score[live], accept=good)
        up = np.flatnonzero(move)
        theta[live[up]] = np.asarray(cand)[up, pick[up]]
        score[live[up]] = sc[up, pick[up]]
        best[todo[live[up]]] = np.asarray(words)[up, pick[up]]
        done = good.any(axis=1)
        ok[todo[live[done]]] = True
        active[live[done]] = False
    return jnp.asarray(best), ok


def _adam_stage(study: Study, mismatch, ref: Responses, flat0, ok, settings: RetuneSettings) -> np.ndarray:
    """Up to ``settings.steps`` Adam steps of the misbehaving chips on :func:`retune_loss`; returns the
    (n, 48) words: the first rounded words that behave, else the last ones."""
    n = flat0.shape[0]
    best = np.asarray(flat0).copy()
    todo = np.flatnonzero(~ok)
    # every chunk runs n lanes (the chips to re-tune, padded with inactive copies), so the
    # gradient step compiles once per chunk size, not once per number of misbehaving chips
    lanes = np.concatenate([todo, np.full(n - todo.size, todo[0])])
    active = np.arange(n) < todo.size
    w0 = flat0[lanes]
    fx = RetuneFixed(w0, jax.tree.map(lambda x: x[lanes], mismatch), jnp.asarray(study.currents),
                     jnp.asarray(ref.count), jnp.asarray(ref.rate), fixed(study))  # fmt: skip
    optim = adam()
    theta = jnp.zeros_like(w0)
    state = init_optimizer(optim, theta, settings.learning_rate)
    for _ in range(settings.steps + 1):
        mask = jnp.broadcast_to(jnp.asarray(active)[:, None], theta.shape)
        step = optax_step(retune_loss, optim, theta, state, fx, mask)
        count, rate = step.aux  # those of ``theta`` (before this update): the words just evaluated
        good = active & behaves(
            np.asarray(count), np.asarray(rate), ref.count, ref.rate, study.count_tol, study.rate_tol
        )
        if good.any():
            best[lanes[good]] = np.asarray(_rounded(w0 * jnp.exp(theta)))[good]
            active &= ~good
        if not active.any():
            break
        theta = jnp.where(jnp.asarray(active)[:, None], step.trainable, theta)
        state = step.state
    # chips never restored keep their last words
    best[lanes[active]] = np.asarray(_rounded(w0 * jnp.exp(theta)))[active]
    return best


@jax.jit
def _rounded(flat):
    return jax.vmap(lambda x: flatten_words(quantize_words(unflatten_words(x))))(flat)


def retune(
    study: Study, mismatch: Mismatch, ref: Responses, index: np.ndarray, settings: RetuneSettings, **kw
) -> Compensated:
    """Per-chip re-tuning against each chip's own model (the stages of this module's docstring).

    Args:
        study: the study.
        mismatch: the N chips' mismatch (batched).
        ref: the reference, (C,) arrays.
        index: (N,) the chips' indices: the evolution strategy's draws depend on (seed, index,
            generation) only, so results do not depend on the chunking.
        settings: generations, population and step of the evolution strategy; Adam steps and
            learning rate (``enabled`` is the caller's business).
        kw: ``mesh``, ``block`` of :func:`run_jobs`.

    Returns:
        :class:`Compensated`: batched integer-valued :class:`NDWords`, the (N, C) responses with
        them, and (N,) whether they behave.
    """
    n = jax.tree.leaves(mismatch)[0].shape[0]
    w_inv = inverse_words(broadcast_words(study.words, n), mismatch)
    r = chip_responses(study, w_inv, mismatch, **kw)
    ok = behaves(r.count, r.rate, ref.count, ref.rate, study.count_tol, study.rate_tol)
    flat0 = jax.vmap(flatten_words)(w_inv)
    if settings.generations > 0 and not ok.all():
        flat0, ok = _es_stage(study, mismatch, ref, index, flat0, r, ok, settings, kw)
    best = np.asarray(flat0).copy()
    if settings.steps > 0 and not ok.all():
        best = _adam_stage(study, mismatch, ref, flat0, ok, settings)
    words: NDWords = jax.vmap(unflatten_words)(jnp.asarray(best))
    r = chip_responses(study, words, mismatch, **kw)
    ok = behaves(r.count, r.rate, ref.count, ref.rate, study.count_tol, study.rate_tol)
    return Compensated(words, r, ok)
