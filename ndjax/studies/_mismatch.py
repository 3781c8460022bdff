"""Mismatch studies: many perturbed chips, how they fire, and how to compensate them.

A study takes one programmed chip (words and biases), a set of constant input
currents and a mismatch spread ``sigma``. Chip ``i`` of the study has the
mismatch ``sample_mismatch(fold_in(key(seed), i), sigma)``, so a chip is the
same in a study of 10 chips and of 10,000, whatever the chunking or the
number of devices.

For every chip and current the study records the spike count, the firing
rate (from the first to the last spike, on the chip's time axis) and whether
the solve succeeded. A chip *behaves* when, at every current, its spike count
is within ``count_tol`` of the reference and its rate within ``rate_tol``
(relative; where the reference fires fewer than two spikes, the chip must
too). The reference is the nominal (mismatch-free) chip, or the HH target the
words were fitted to.

Compensations, each judged on the same chips:

- ``offset``: the smallest constant current offset (from a grid) that makes
  the chip behave (the guide's "raise the applied current");
- ``rebalance``: the smallest change of the sodium and potassium conductance
  words (a grid of factors) that makes it behave (the guide's "rebalance
  the conductances");
- ``retune``: every word re-computed for the chip's own (measured) mismatch:
  each word divided by its mismatch factor and rounded, then, for chips that
  still misbehave, a per-chip evolution strategy over 13 global factors
  (optionally followed by straight-through gradient steps on every word);
- ``robust``: one word set for every chip, fitted on training chips the study
  never draws, judged on the study's chips.

All simulations go through one compiled kernel (:func:`respond`) that takes a
flat block of jobs (words, mismatch, current); blocks are sharded over the
devices when there are several.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Sequence
from typing import NamedTuple

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._analysis import spike_mask
from .._checks import Status, status_code
from .._simulate import NEURODYN, default_controller, simulate
from .._stimulus import Constant
from ..fit._wordspace import apply_factors, flatten_words, quantize_words, unflatten_words
from ..models._neurodyn import (
    EXPONENT_SIGMA,
    Mismatch,
    NDBiases,
    NDChip,
    NDWords,
    chip_params,
    nd_constants,
    sample_mismatch,
)
from ._settings import CompensationSettings

__all__ = [
    "Study",
    "Responses",
    "chip_mismatch",
    "respond",
    "run_jobs",
    "behaves",
    "device_mesh",
    "cost_sorted_map",
]

#: Solver settings of studies: rtol 1e-4 keeps spike times within 0.4 us of a
#: 1e-10 Dopri8 solution on 1,000 mismatched chips (experiments/benchmarks/batch.py)
#: and costs about half of rtol 1e-6.
STUDY_RTOL = 1e-4
STUDY_ATOL = 1e-7

#: Solve status codes (:class:`ndjax.Status`), as stored in the results.
OK, MAX_STEPS, NOT_FINITE = int(Status.OK), int(Status.MAX_STEPS), int(Status.NOT_FINITE)


@dataclasses.dataclass(frozen=True)
class Study:
    """What is studied: one programmed chip, its inputs and how spikes are judged.

    Attributes:
        words: nominal words (integer-valued floats).
        biases: the chip's biases.
        currents: (C,) applied currents on the chip, A.
        ts: (T,) save times on the chip's time axis, s (from 0).
        y0: (4,) initial state.
        threshold, hysteresis: spike detection on the chip's voltage, V.
        sigma: mismatch spread; ``exponent_sigma``: spread of the gate powers.
        centre_sigma, kappa_sigma: optional sources beyond SPEC 2 (0: off, the default): offsets of
            the 42 sigmoid centres (V) and relative spread of their slopes (:func:`sample_mismatch`).
        seed: chip ``i`` is drawn from ``fold_in(key(seed), i)``.
        count_tol, rate_tol: what "behaves" means (spikes, relative rate).
        rtol, atol, max_steps: solver settings.
        segments: split the span into this many segments and regroup the jobs by cost between
            them (see :func:`run_jobs`); 1: one solve per job.
    """

    words: NDWords
    biases: NDBiases
    currents: np.ndarray
    ts: np.ndarray
    y0: np.ndarray
    threshold: float
    hysteresis: float
    sigma: float = 0.15
    exponent_sigma: tuple = EXPONENT_SIGMA
    centre_sigma: float = 0.0
    kappa_sigma: float = 0.0
    seed: int = 0
    count_tol: int = 1
    rate_tol: float = 0.05
    rtol: float = STUDY_RTOL
    atol: float = STUDY_ATOL
    max_steps: int = 20_000
    segments: int = 1

    def __post_init__(self):
        cur = np.asarray(self.currents, dtype=float)
        if cur.ndim != 1 or cur.size == 0 or not np.all(np.isfinite(cur)):
            raise ValueError(
                f"currents must be a non-empty 1-D array of finite values, got {self.currents!r}"
            )
        ts = np.asarray(self.ts, dtype=float)
        if ts.ndim != 1 or ts.size < 2 or not np.all(np.diff(ts) > 0) or ts[0] != 0:
            raise ValueError("ts must be an increasing 1-D array of at least 2 save times starting at 0")
        for name in ("sigma", "centre_sigma", "kappa_sigma"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        from ..models._neurodyn import check_words

        for name, value in (("dg", self.words.g), ("dErev", self.words.e_rev), ("dIb", self.words.i_b)):
            check_words(name, np.asarray(value))  # shape, integer values, range: raises naming the word
        y0 = np.asarray(self.y0, dtype=float)
        if y0.shape != (4,) or not np.all(np.isfinite(y0)):
            raise ValueError(f"y0 must be 4 finite values [V, m, h, n], got {self.y0!r}")
        for name in ("threshold", "hysteresis", "rate_tol", "rtol", "atol"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if self.max_steps < 1 or self.segments < 1 or self.count_tol < 0:
            raise ValueError(
                f"max_steps and segments must be >= 1 and count_tol >= 0, got {self.max_steps}, "
                f"{self.segments}, {self.count_tol}"
            )

    def template(self, words: NDWords | None = None) -> NDChip:
        """The nominal chip (or the nominal chip with other words)."""
        from ..models._neurodyn import nominal_mismatch

        return NDChip(self.words if words is None else words, self.biases, nominal_mismatch(), nd_constants())


def chip_mismatch(study: Study, index: np.ndarray) -> Mismatch:
    """Mismatch of the chips ``index`` (a batched :class:`Mismatch`)."""
    key = jax.random.key(study.seed)
    es = jnp.asarray(study.exponent_sigma, dtype=float)
    extra = dict(centre_sigma=float(study.centre_sigma), kappa_sigma=float(study.kappa_sigma))
    return jax.vmap(lambda i: sample_mismatch(jax.random.fold_in(key, i), study.sigma, es, **extra))(
        jnp.asarray(index, dtype=jnp.uint32)
    )


class Responses(NamedTuple):
    """Per job: spike count, rate (Hz of chip time; 0 below two spikes), solve status, and
    the accepted solver steps (a cost estimate, for :func:`cost_sorted_map`; None where unknown)."""

    count: np.ndarray
    rate: np.ndarray
    status: np.ndarray
    steps: np.ndarray | None = None


def _save_v(t, y, args):
    return y[0]


def _first_last(ts, v, mask, threshold):
    """Interpolated times of the first and last spike of a mask (garbage when there is none)."""
    n = mask.shape[0]
    first = jnp.argmax(mask)
    last = n - 1 - jnp.argmax(mask[::-1])

    def cross(i):
        i = jnp.maximum(i, 1)
        v0, v1 = v[i - 1], v[i]
        frac = jnp.clip((threshold - v0) / jnp.where(v1 > v0, v1 - v0, 1.0), 0.0, 1.0)
        return ts[i - 1] + frac * (ts[i] - ts[i - 1])

    return cross(first), cross(last)


def _spikes_at(params, i_app, ts, y0, threshold, hysteresis, rtol, atol, max_steps):
    """Solve one chip at one constant current; ``(trajectory, spike count, rate)`` (the rate is
    differentiable in the voltage: interpolated first and last spike times)."""
    tr = simulate(NEURODYN, params, Constant(i_app), y0, saveat=dfx.SaveAt(ts=ts, fn=_save_v),
                  stepsize_controller=default_controller(rtol, atol), max_steps=max_steps)  # fmt: skip
    return (tr, *_spike_stats(ts, tr.ys, threshold, hysteresis))


def _one_response(words, mismatch, biases, i_app, ts, y0, threshold, hysteresis, rtol, atol, max_steps):
    chip = NDChip(words, biases, mismatch, nd_constants(), digital=True)
    tr, count, rate = _spikes_at(
        chip_params(chip), i_app, ts, y0, threshold, hysteresis, rtol, atol, max_steps
    )
    status = status_code(tr.ok, tr.max_steps_reached, jnp)
    return jnp.where(tr.ok, count, -1), jnp.where(tr.ok, rate, jnp.nan), status, tr.n_steps


def _spike_stats(ts, v, threshold, hysteresis):
    """Spike count and rate (first to last spike) of one sampled trace; the rate is differentiable
    in ``v`` through the interpolated crossing times (which samples bracket them is fixed)."""
    mask = spike_mask(v, threshold, hysteresis)
    count = jnp.sum(mask)
    t_first, t_last = _first_last(ts, v, mask, threshold)
    # a safe denominator where there is no rate, so that its gradient is 0 there, not NaN
    span = jnp.where(count >= 2, t_last - t_first, 1.0)
    rate = jnp.where(count >= 2, (count - 1) / jnp.maximum(span, 1e-300), 0.0)
    return count, rate


@functools.partial(jax.jit, static_argnames=("max_steps",))
def _segment(words, mismatch, biases, i_app, y0, ts, rtol, atol, *, max_steps: int):
    """One time segment of a block of jobs, each from its own state: V at ``ts``, the final state,
    accepted steps, success and step-limit flags."""

    def one(w, mm, i, y):
        chip = NDChip(w, biases, mm, nd_constants(), digital=True)
        tr = simulate(NEURODYN, chip_params(chip), Constant(i), y, ts,
                      stepsize_controller=default_controller(rtol, atol), max_steps=max_steps)  # fmt: skip
        return tr.ys[:, 0], tr.ys[-1], tr.n_steps, tr.ok, tr.max_steps_reached

    return jax.vmap(one)(words, mismatch, i_app, y0)


@jax.jit
def _stats_block(ts, v, threshold, hysteresis):
    return jax.vmap(_spike_stats, in_axes=(None, 0, None, None))(ts, v, threshold, hysteresis)


@functools.partial(jax.jit, static_argnames=("max_steps",))
def respond(
    words: NDWords,
    mismatch: Mismatch,
    biases: NDBiases,
    i_app,
    ts,
    y0,
    threshold,
    hysteresis,
    rtol,
    atol,
    *,
    max_steps: int,
):
    """The study kernel: a block of jobs, each with its own words, mismatch and current.

    Args:
        words, mismatch: batched over the jobs (leading axis J).
        i_app: (J,) currents, A.
        biases, ts, y0, threshold, hysteresis, rtol, atol: shared.

    Returns:
        ``(count, rate, status, steps)``, each (J,): count -1 and rate NaN where the solve failed.
    """
    return jax.vmap(_one_response, in_axes=(0, 0, None, 0, None, None, None, None, None, None, None))(
        words, mismatch, biases, i_app, ts, y0, threshold, hysteresis, rtol, atol, max_steps
    )


def cost_sorted_map(fn, xs, cost, *, batch_size: int = 250):
    """``fn`` over the leading axis of ``xs``, in vmapped chunks of items of similar ``cost``.

    A vmapped adaptive solve (and its gradient) steps until the slowest item of its batch is
    done; grouping items by their step counts (from a forward pass, e.g. ``Responses.steps``)
    wastes fewer steps. ``fn`` maps one item to a pytree; results come back in input order.
    Measured on 1,000 mismatched chips (RESULTS.md): a gradient with respect to all words in
    chunks of 250 sorted by steps costs 2.6 ms per chip against 4.9 ms in one vmap.
    """
    cost = np.asarray(cost)
    order = np.argsort(cost, kind="stable")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    sorted_xs = jax.tree.map(lambda x: jnp.asarray(x)[order], xs)
    out = _chunked(fn, batch_size)(sorted_xs)
    return jax.tree.map(lambda y: y[inverse], out)


@functools.cache
def _chunked(fn, batch_size: int):
    return jax.jit(lambda xs: jax.lax.map(fn, xs, batch_size=batch_size))


def device_mesh() -> jax.sharding.Mesh | None:
    """A 1-D mesh over all devices (axis ``"chips"``), or None with a single device.

    ``AxisType.Auto`` lets the diffrax/equinox while loop run under the sharding.
    """
    n = jax.device_count()
    if n < 2:
        return None
    return jax.make_mesh((n,), ("chips",), axis_types=(jax.sharding.AxisType.Auto,))


def run_jobs(
    study: Study,
    words: NDWords,
    mismatch: Mismatch,
    i_app,
    *,
    block: int = 512,
    mesh: jax.sharding.Mesh | None = None,
) -> Responses:
    """Simulate J jobs in blocks of ``block`` (one compiled kernel; the last block padded).

    With a ``mesh``, each block's job axis is sharded over its devices.
    """
    i_app = np.asarray(i_app, dtype=float)
    n = i_app.shape[0]
    if n == 0:
        return Responses(np.zeros(0, int), np.zeros(0), np.zeros(0, int), np.zeros(0, int))
    shard = None
    if mesh is not None:
        block = -(-block // mesh.size) * mesh.size
        shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("chips"))
    if study.segments > 1:
        return _run_segmented(study, words, mismatch, i_app, block, shard)
    ts, y0 = jnp.asarray(study.ts), jnp.asarray(study.y0, dtype=float)

    def kernel(w, mm, cur):
        return respond(w, mm, study.biases, cur, ts, y0, study.threshold, study.hysteresis, study.rtol,
                       study.atol, max_steps=study.max_steps)  # fmt: skip

    return Responses(*_blocked(kernel, (words, mismatch, i_app), np.arange(n), block, shard))


def _blocked(kernel, jobs, order: np.ndarray, block: int, shard) -> list[np.ndarray]:
    """``kernel(*jobs)`` over blocks of ``block`` jobs taken in ``order`` (the last block padded with
    copies of its last job), each block sharded over the devices when ``shard`` is given.

    Returns the kernel's outputs as NumPy arrays with the jobs in their original positions.
    """
    n = order.size
    outs: list[np.ndarray] | None = None
    for start in range(0, n, block):
        idx = order[np.minimum(np.arange(start, start + block), n - 1)]
        args = jax.tree.map(lambda x, idx=idx: x[idx], jobs)
        if shard is not None:
            args = jax.device_put(args, shard)
        res = [np.asarray(r) for r in kernel(*args)]
        if outs is None:
            outs = [np.empty((n, *r.shape[1:]), dtype=r.dtype) for r in res]
        keep = min(block, n - start)
        for arr, r in zip(outs, res, strict=True):
            arr[idx[:keep]] = r[:keep]
    assert outs is not None
    return outs


def _run_segmented(study: Study, words, mismatch, i_app, block: int, shard) -> Responses:
    """:func:`run_jobs` in ``study.segments`` time segments; before each segment the jobs are
    regrouped by the steps they took in the previous one, so that a block holds jobs of similar
    cost (a vmapped solve steps until its slowest job is done). Each segment restarts the step
    size control from the previous segment's state; ``max_steps`` applies to each segment."""
    n = i_app.shape[0]
    ts = np.asarray(study.ts)
    bounds = np.linspace(0, ts.size - 1, study.segments + 1).round().astype(int)
    y = np.tile(np.asarray(study.y0, dtype=float), (n, 1))
    order = np.arange(n)
    ok, capped, steps = np.ones(n, bool), np.zeros(n, bool), np.zeros(n, int)
    v_parts = []
    for k in range(study.segments):
        ts_seg = jnp.asarray(ts[bounds[k] : bounds[k + 1] + 1])

        def kernel(w, mm, cur, y0, ts_seg=ts_seg):
            return _segment(w, mm, study.biases, cur, y0, ts_seg, study.rtol, study.atol,
                            max_steps=study.max_steps)  # fmt: skip

        seg_v, seg_y, seg_steps, seg_ok, seg_cap = _blocked(
            kernel, (words, mismatch, i_app, y), order, block, shard
        )
        v_parts.append(seg_v if k == 0 else seg_v[:, 1:])
        ok &= seg_ok
        capped |= seg_cap
        steps += seg_steps
        # a failed job goes on from a finite state (it stays failed) rather than stalling on inf
        y = np.where(ok[:, None], seg_y, np.asarray(study.y0, dtype=float)[None])
        order = np.argsort(seg_steps, kind="stable")
    v = np.concatenate(v_parts, axis=1)
    count, rate = (np.asarray(x) for x in _stats_block(jnp.asarray(ts), jnp.asarray(v), study.threshold,
                                                       study.hysteresis))  # fmt: skip
    status = status_code(ok, capped)
    return Responses(np.where(ok, count, -1), np.where(ok, rate, np.nan), status, steps)


def behaves(count, rate, ref_count, ref_rate, count_tol: int, rate_tol: float) -> np.ndarray:
    """Host-side: per leading index, True when every current matches the reference.

    ``count``/``rate`` (..., C); ``ref_count``/``ref_rate`` (C,). A failed solve
    (count -1) never behaves.
    """
    count, rate = np.asarray(count), np.asarray(rate)
    ref_count, ref_rate = np.asarray(ref_count), np.asarray(ref_rate)
    ok_count = (count >= 0) & (np.abs(count - ref_count) <= count_tol)
    repetitive = ref_rate > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(rate - ref_rate) / np.where(repetitive, ref_rate, 1.0)
    ok_rate = np.where(repetitive, rel <= rate_tol, rate == 0)
    return np.all(ok_count & ok_rate, axis=-1)


def broadcast_words(words: NDWords, n: int) -> NDWords:
    return jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x, float), (n, *jnp.shape(x))), words)


def repeat_tree(tree, reps: int):
    """Repeat every leaf ``reps`` times along axis 0 (job i*reps + k is item i)."""
    return jax.tree.map(lambda x: jnp.repeat(x, reps, axis=0), tree)


def tile_tree(tree, reps: int):
    """Tile every leaf ``reps`` times along axis 0 (job k*n + i is item i)."""
    return jax.tree.map(lambda x: jnp.concatenate([x] * reps, axis=0), tree)


def responses_grid(
    study: Study, words: NDWords, mismatch: Mismatch, offsets: Sequence[float] = (0.0,), **kw
) -> Responses:
    """Responses of N chips (batched ``words``/``mismatch``) at every current plus every offset.

    Returns arrays of shape (N, K, C) for K offsets and C currents.
    """
    n = jax.tree.leaves(mismatch)[0].shape[0]
    offsets = np.asarray(offsets, dtype=float)
    k, c = offsets.size, study.currents.size
    reps = k * c
    cur = (offsets[:, None] + np.asarray(study.currents)[None, :]).ravel()  # (K*C,)
    i_app = np.tile(cur, n)
    r = run_jobs(study, repeat_tree(words, reps), repeat_tree(mismatch, reps), i_app, **kw)
    return Responses(*(x.reshape(n, k, c) for x in r))


# ---- references ----------------------------------------------------------------------------------


def nominal_reference(study: Study) -> Responses:
    """The nominal (mismatch-free) chip at every current: arrays of shape (C,)."""
    from ..models._neurodyn import nominal_mismatch

    r = responses_grid(study, broadcast_words(study.words, 1), broadcast_words(nominal_mismatch(), 1))
    return Responses(*(x[0, 0] for x in r))


def hh_reference(study: Study, target) -> Responses:
    """The HH target (an :class:`ndjax.Target`) at the study's currents, on the chip's time axis."""
    from ..fit._simulate_pair import hh_voltages as _hh_voltages

    i0 = np.asarray(study.currents) / target.chip_current(1.0)  # back to A/cm^2
    v, ok = _hh_voltages(target.hh_params(), jnp.asarray(i0), jnp.asarray(study.ts))
    thr, hyst = study.threshold - target.v_shift, study.hysteresis
    counts, rates = [], []
    for vv in np.asarray(v):
        mask = spike_mask(vv, thr, hyst)
        n = int(np.sum(mask))
        t0, t1 = _first_last(jnp.asarray(study.ts), jnp.asarray(vv), mask, thr)
        counts.append(n)
        rates.append((n - 1) / float(t1 - t0) if n >= 2 else 0.0)
    status = np.where(np.asarray(ok), OK, NOT_FINITE)
    return Responses(np.asarray(counts), np.asarray(rates), status)


# ---- compensations -------------------------------------------------------------------------------


def _first_true(mask: np.ndarray) -> np.ndarray:
    """Index of the first True along the last axis, -1 where none."""
    any_ = mask.any(axis=-1)
    return np.where(any_, np.argmax(mask, axis=-1), -1)


def compensate_offset(study: Study, mismatch: Mismatch, ref: Responses, offsets: Sequence[float], **kw):
    """Smallest current offset (from ``offsets``, tried in order of size) that makes each chip behave.

    Returns:
        ``(offset, responses)``: (N,) chosen offsets in A (NaN where none works) and the
        responses (N, C) with the chosen offset (the zero offset where none works).
    """
    offsets = np.asarray(sorted(set(float(o) for o in offsets) | {0.0}, key=lambda o: (abs(o), o)))
    n = jax.tree.leaves(mismatch)[0].shape[0]
    r = responses_grid(study, broadcast_words(study.words, n), mismatch, offsets, **kw)  # (N, K, C)
    ok = behaves(r.count, r.rate, ref.count, ref.rate, study.count_tol, study.rate_tol)  # (N, K)
    pick = _first_true(ok)
    chosen = np.where(pick >= 0, offsets[np.maximum(pick, 0)], np.nan)
    sel = np.maximum(pick, 0)
    rows = np.arange(n)
    return chosen, Responses(r.count[rows, sel], r.rate[rows, sel], r.status[rows, sel])


def rebalance_candidates(dg: np.ndarray, factors: Sequence[float]) -> np.ndarray:
    """(P, 3) distinct conductance words: dg[Na] and dg[K] times every pair of ``factors``,
    rounded and clipped, ordered by total change in LSBs (the unchanged words first)."""
    dg = np.asarray(dg, dtype=float)
    cands = {tuple(dg.round().astype(int))}
    for fa in factors:
        for fk in factors:
            w = dg.copy()
            w[0], w[1] = dg[0] * fa, dg[1] * fk
            cands.add(tuple(np.clip(w.round(), 0, 1023).astype(int)))
    arr = np.array(sorted(cands, key=lambda w: (np.abs(np.array(w) - dg).sum(), w)), dtype=float)
    return arr


def compensate_rebalance(study: Study, mismatch: Mismatch, ref: Responses, factors: Sequence[float], **kw):
    """Smallest change of the Na and K conductance words (a grid of factors) that makes each chip behave.

    Returns:
        ``(dg, responses)``: (N, 3) chosen words (the nominal ones where none works) and
        the responses (N, C) with them.
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
    sel = np.maximum(pick, 0)
    rows = np.arange(n)
    chosen = cands[sel]
    return chosen, Responses(r.count[rows, sel], r.rate[rows, sel], r.status[rows, sel]), pick >= 0


def inverse_words(words: NDWords, mismatch: Mismatch) -> NDWords:
    """Each word divided by its chip's mismatch factor, rounded and clipped to its range (batched)."""
    from ..models._neurodyn import WORD_RANGES

    def fix(w, f, name):
        lo, hi = WORD_RANGES[name]
        return jnp.clip(jnp.round(w / f), lo, hi)

    return NDWords(
        fix(words.g, mismatch.g, "dg"),
        fix(words.e_rev, mismatch.e_rev, "dErev"),
        fix(words.i_b, mismatch.i_b, "dIb"),
    )


def word_changes(new: NDWords, old: NDWords) -> np.ndarray:
    """(N,) total absolute change in LSBs over all 48 words of each chip."""
    d = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - np.asarray(b)), new, old)
    return sum(x.reshape(x.shape[0], -1).sum(axis=1) for x in jax.tree.leaves(d))


# ---- per-chip re-tuning by straight-through gradient steps -------------------------------------


def _retune_loss(
    theta,
    w0,
    mismatch,
    biases,
    currents,
    ts,
    y0,
    threshold,
    hysteresis,
    ref_count,
    ref_rate,
    rtol,
    atol,
    max_steps,
):
    """One chip: words ``w0 * exp(theta)`` rounded (straight-through), relative rate errors at every
    current (interpolated first and last spike times make the rate differentiable)."""
    words = quantize_words(unflatten_words(w0 * jnp.exp(theta)))
    chip = NDChip(words, biases, mismatch, nd_constants(), digital=True)
    params = chip_params(chip)

    def one(i_app):
        tr, count, rate = _spikes_at(params, i_app, ts, y0, threshold, hysteresis, rtol, atol, max_steps)
        return jnp.where(tr.ok, count, -1), jnp.where(tr.ok, rate, 0.0), tr.ok

    count, rate, ok = jax.vmap(one)(currents)
    scale = jnp.where(ref_rate > 0, ref_rate, jnp.max(ref_rate))
    rel = (rate - ref_rate) / scale
    loss = jnp.sum(jnp.where(ok, rel**2, 1.0)) + 0.01 * jnp.sum((count - ref_count) ** 2)
    return loss, (count, rate)


#: Adam with its step size as state: one compiled step serves every learning rate.
_RETUNE_ADAM = optax.inject_hyperparams(optax.adam)(learning_rate=0.02)


@functools.partial(jax.jit, static_argnames=("max_steps",))
def _retune_step(theta, opt_state, active, w0, mismatch, biases, currents, ts, y0, threshold, hysteresis,
                 ref_count, ref_rate, rtol, atol, *, max_steps):  # fmt: skip
    """One Adam step of every chip (vmapped); returns the new log-factors and the responses of
    the words before the step."""

    def per_chip(th, w, mm):
        args = (biases, currents, ts, y0, threshold, hysteresis, ref_count, ref_rate, rtol, atol, max_steps)
        return jax.value_and_grad(_retune_loss, has_aux=True)(th, w, mm, *args)

    (loss, (count, rate)), grads = jax.vmap(per_chip)(theta, w0, mismatch)
    grads = jnp.where(active[:, None], grads, 0.0)
    updates, opt_state = _RETUNE_ADAM.update(grads, opt_state, theta)
    return optax.apply_updates(theta, updates), opt_state, loss, count, rate


def _score(count, rate, ref: Responses) -> np.ndarray:
    """Host-side distance to the reference over the last axis (C): spike-count differences plus
    10x relative rate errors; a failed solve costs 100."""
    scale = np.where(ref.rate > 0, ref.rate, max(float(np.max(ref.rate)), 1.0))
    per = np.abs(count - ref.count) + 10.0 * np.abs(np.nan_to_num(rate) - ref.rate) / scale
    return np.sum(np.where(count < 0, 100.0, per), axis=-1)


@functools.partial(jax.jit, static_argnames=("population",))
def _es_candidates(w_start, theta, chips, generation, seed, es_sigma, *, population: int):
    """Rounded candidate words (n, P, 48) around each chip's factors ``theta`` (n, 13), and the
    candidate factors (n, P, 13); chip ``chips[i]``'s draws depend only on (seed, chip, generation)."""
    key = jax.random.fold_in(jax.random.key(seed), 0x5EED)

    def per_chip(w, th, chip):
        k = jax.random.fold_in(jax.random.fold_in(key, chip), generation)
        cand = th[None, :] + es_sigma * jax.random.normal(k, (population, 13), dtype=th.dtype)
        words = jax.vmap(lambda f: flatten_words(quantize_words(apply_factors(unflatten_words(w), f))))(cand)
        return words, cand

    return jax.vmap(per_chip)(w_start, theta, chips)


def _es_stage(study, mismatch, ref, index, flat0, r0, ok, generations, population, es_sigma, **kw):
    """(1 + population) evolution strategy per misbehaving chip over the 13 global factors."""
    c = study.currents.size
    todo = np.flatnonzero(~ok)
    w_start = flat0[todo]
    theta = np.zeros((todo.size, 13))
    score = _score(r0.count[todo], r0.rate[todo], ref)
    best = np.asarray(flat0).copy()
    ok = ok.copy()
    active = np.ones(todo.size, bool)
    for g in range(generations):
        live = np.flatnonzero(active)
        if live.size == 0:
            break
        # lanes padded to the chunk size: one compilation of the candidate draw per chunk size
        lanes = np.concatenate([live, np.full(flat0.shape[0] - live.size, live[0])])
        words, cand = _es_candidates(
            w_start[lanes],
            jnp.asarray(theta[lanes]),
            jnp.asarray(index[todo[lanes]]),
            g,
            study.seed,
            es_sigma,
            population=population,
        )
        words, cand = words[: live.size], cand[: live.size]
        m = live.size * population
        w_jobs = jax.vmap(unflatten_words)(jnp.reshape(words, (m, 48)))
        sel = todo[live]
        mm = repeat_tree(jax.tree.map(lambda x, sel=sel: x[sel], mismatch), population)
        rr = run_jobs(study, repeat_tree(w_jobs, c), repeat_tree(mm, c), np.tile(study.currents, m), **kw)
        cnt, rate = rr.count.reshape(live.size, population, c), rr.rate.reshape(live.size, population, c)
        sc = _score(cnt, rate, ref)  # (live, P)
        good = behaves(cnt, rate, ref.count, ref.rate, study.count_tol, study.rate_tol)  # (live, P)
        pick = np.where(good.any(axis=1), np.argmax(good, axis=1), np.argmin(sc, axis=1))
        rows = np.arange(live.size)
        better = good.any(axis=1) | (sc[rows, pick] < score[live])
        words_np, cand_np = np.asarray(words), np.asarray(cand)
        up = np.flatnonzero(better)
        theta[live[up]] = cand_np[up, pick[up]]
        score[live[up]] = sc[up, pick[up]]
        best[todo[live[up]]] = words_np[up, pick[up]]
        done = good.any(axis=1)
        ok[todo[live[done]]] = True
        active[live[done]] = False
    return jnp.asarray(best), ok


def retune(
    study: Study,
    mismatch: Mismatch,
    ref: Responses,
    index: np.ndarray,
    *,
    generations: int = 30,
    population: int = 8,
    es_sigma: float = 0.1,
    steps: int = 0,
    learning_rate: float = 0.02,
    **kw,
):
    """Per-chip re-tuning against each chip's own model (all chips in one ``vmap``).

    1. :func:`inverse_words`: every word divided by its mismatch factor and rounded (this
       cannot undo the jitter of the gate powers, nor move words of a few LSBs by less
       than one LSB);
    2. for the chips that still misbehave, a (1 + ``population``) evolution strategy per
       chip over the 13 global factors of :func:`ndjax.fit._wordspace.apply_factors` (conductances,
       reversal shifts, one factor per rate and one for all rates), ``generations``
       generations of step ``es_sigma``; each chip's perturbations come from
       ``fold_in(key(seed), chip index)``, so results do not depend on the chunking;
    3. for the chips still misbehaving, up to ``steps`` Adam steps on log-factors of all
       48 words, rounded in the forward pass (straight-through), on the relative
       firing-rate errors.

    A chip stops moving as soon as its rounded words behave.

    Returns:
        ``(words, responses, behaving)``: batched integer-valued :class:`NDWords`,
        (N, C) responses with them, (N,) bool.
    """
    n = jax.tree.leaves(mismatch)[0].shape[0]
    c = study.currents.size
    w_inv = inverse_words(broadcast_words(study.words, n), mismatch)
    r = run_jobs(study, repeat_tree(w_inv, c), repeat_tree(mismatch, c), np.tile(study.currents, n), **kw)
    r = Responses(*(x.reshape(n, c) for x in r))
    ok = behaves(r.count, r.rate, ref.count, ref.rate, study.count_tol, study.rate_tol)
    flat0 = jax.vmap(flatten_words)(w_inv)
    if generations > 0 and not ok.all():
        flat0, ok = _es_stage(
            study, mismatch, ref, index, flat0, r, ok, generations, population, es_sigma, **kw
        )
    best = np.asarray(flat0).copy()
    todo = np.flatnonzero(~ok)
    if steps > 0 and todo.size:
        # every chunk runs n lanes (the chips to re-tune, padded with inactive copies), so the
        # gradient step compiles once per chunk size, not once per number of misbehaving chips
        lanes = np.concatenate([todo, np.full(n - todo.size, todo[0])])
        active = np.arange(n) < todo.size
        sub_mm = jax.tree.map(lambda x: x[lanes], mismatch)
        w0 = flat0[lanes]
        theta = jnp.zeros_like(w0)
        state = _RETUNE_ADAM.init(theta)
        state.hyperparams["learning_rate"] = jnp.asarray(learning_rate, dtype=theta.dtype)
        args = (
            study.biases,
            jnp.asarray(study.currents),
            jnp.asarray(study.ts),
            jnp.asarray(study.y0, dtype=float),
            study.threshold,
            study.hysteresis,
            jnp.asarray(ref.count),
            jnp.asarray(ref.rate),
            study.rtol,
            study.atol,
        )
        for _ in range(steps + 1):
            new_theta, state, _, count, rate = _retune_step(
                theta, state, jnp.asarray(active), w0, sub_mm, *args, max_steps=study.max_steps
            )
            # count/rate are those of ``theta`` (before this update): the words just evaluated
            good = active & behaves(
                np.asarray(count), np.asarray(rate), ref.count, ref.rate, study.count_tol, study.rate_tol
            )
            if good.any():
                q = np.asarray(_rounded(w0 * jnp.exp(theta)))
                best[lanes[good]] = q[good]
                active &= ~good
            if not active.any():
                break
            theta = jnp.where(jnp.asarray(active)[:, None], new_theta, theta)
        # chips never restored keep their last words (the inverse ones when steps == 0)
        last = np.asarray(_rounded(w0 * jnp.exp(theta)))
        best[lanes[active]] = last[active]
    words = jax.vmap(unflatten_words)(jnp.asarray(best))
    r = run_jobs(study, repeat_tree(words, c), repeat_tree(mismatch, c), np.tile(study.currents, n), **kw)
    r = Responses(*(x.reshape(n, c) for x in r))
    ok = behaves(r.count, r.rate, ref.count, ref.rate, study.count_tol, study.rate_tol)
    return words, r, ok


@jax.jit
def _rounded(flat):
    return jax.vmap(lambda x: flatten_words(quantize_words(unflatten_words(x))))(flat)


# ---- the study, chunk by chunk -------------------------------------------------------------------

COMPENSATIONS = ("offset", "rebalance", "retune", "robust")
#: The robust word set is judged by a looser criterion: rate within this fraction at every current.
ROBUST_RATE_TOL = 0.10


def _atomic_savez(path, arrays: dict) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def study_chunk(
    study: Study,
    index: np.ndarray,
    ref: Responses,
    *,
    offsets: Sequence[float],
    factors: Sequence[float],
    retune_steps: int = 0,
    retune_lr: float = 0.02,
    retune_generations: int = 30,
    retune_population: int = 8,
    retune_sigma: float = 0.1,
    compensations: Sequence[str] = COMPENSATIONS,
    robust: NDWords | None = None,
    mesh=None,
    block: int = 512,
) -> dict:
    """Every measurement of the chips ``index``: responses before and after each compensation.

    Returns a dict of NumPy arrays (what a chunk file holds).
    """
    kw = dict(mesh=mesh, block=block)
    n, c = index.size, study.currents.size
    mm = chip_mismatch(study, index)
    nominal = broadcast_words(study.words, n)
    out: dict[str, np.ndarray] = {"index": np.asarray(index)}
    t = time.perf_counter()
    r = run_jobs(study, repeat_tree(nominal, c), repeat_tree(mm, c), np.tile(study.currents, n), **kw)
    r = Responses(*(x.reshape(n, c) for x in r))
    out.update(
        count=r.count,
        rate=r.rate,
        status=r.status,
        behaves=behaves(r.count, r.rate, ref.count, ref.rate, study.count_tol, study.rate_tol),
        seconds=np.array(time.perf_counter() - t),
    )
    out["within_robust_tol"] = within_rate(r.count, r.rate, ref, ROBUST_RATE_TOL)
    if "robust" in compensations:
        if robust is None:
            raise ValueError("the 'robust' compensation needs the robust words (see robust_words)")
        t = time.perf_counter()
        rw = broadcast_words(robust, n)
        rr = run_jobs(study, repeat_tree(rw, c), repeat_tree(mm, c), np.tile(study.currents, n), **kw)
        rr = Responses(*(x.reshape(n, c) for x in rr))
        out.update(
            robust_count=rr.count,
            robust_rate=rr.rate,
            robust_behaves=behaves(rr.count, rr.rate, ref.count, ref.rate, study.count_tol, study.rate_tol),
            robust_within_robust_tol=within_rate(rr.count, rr.rate, ref, ROBUST_RATE_TOL),
            robust_changes=word_changes(rw, nominal),
            robust_seconds=np.array(time.perf_counter() - t),
        )
    if "offset" in compensations:
        t = time.perf_counter()
        off, ro = compensate_offset(study, mm, ref, offsets, **kw)
        out.update(
            offset_value=off,
            offset_count=ro.count,
            offset_rate=ro.rate,
            offset_behaves=np.isfinite(off),
            offset_seconds=np.array(time.perf_counter() - t),
        )
    if "rebalance" in compensations:
        t = time.perf_counter()
        dg, rb, okb = compensate_rebalance(study, mm, ref, factors, **kw)
        out.update(
            rebalance_dg=dg,
            rebalance_count=rb.count,
            rebalance_rate=rb.rate,
            rebalance_behaves=okb,
            rebalance_changes=np.abs(dg - np.asarray(study.words.g)[None]).sum(axis=1),
            rebalance_seconds=np.array(time.perf_counter() - t),
        )
    if "retune" in compensations:
        t = time.perf_counter()
        words, rt, okt = retune(
            study,
            mm,
            ref,
            index,
            generations=retune_generations,
            population=retune_population,
            es_sigma=retune_sigma,
            steps=retune_steps,
            learning_rate=retune_lr,
            **kw,
        )
        out.update(
            retune_words=np.asarray(jax.vmap(flatten_words)(words)),
            retune_count=rt.count,
            retune_rate=rt.rate,
            retune_behaves=okt,
            retune_changes=word_changes(words, nominal),
            retune_seconds=np.array(time.perf_counter() - t),
        )
    return out


def _robust_saved(study: Study, ref: Responses, folder, kw: dict, options: dict | None):
    """The robust words of a study, computed once and kept in ``folder/robust_words.npz``."""
    path = None if folder is None else folder / "robust_words.npz"
    if path is not None and path.exists():
        with np.load(path) as f:
            return NDWords(f["g"], f["e_rev"], f["i_b"]), f["history"]
    opts = {k: kw[k] for k in ("mesh", "block") if k in kw}
    words, history = robust_words(study, ref, progress=True, **(options or {}), **opts)
    if path is not None:
        _atomic_savez(path, dict(g=np.asarray(words.g), e_rev=np.asarray(words.e_rev),
                                 i_b=np.asarray(words.i_b), history=history))  # fmt: skip
    return words, history


def _chunk_options(study: Study, compensation: CompensationSettings | None, offset_unit: float | None):
    """The keywords of :func:`study_chunk` and :func:`robust_words` from the settings."""
    c = CompensationSettings() if compensation is None else compensation
    if offset_unit is None:
        offset_unit = float(np.max(np.abs(study.currents))) or 1.0
    chosen = [name for name in COMPENSATIONS if getattr(c, name).enabled]
    kw = dict(
        offsets=np.asarray(c.offset.offsets, dtype=float) * offset_unit,
        factors=list(c.rebalance.factors),
        retune_steps=c.retune.steps,
        retune_lr=c.retune.learning_rate,
        retune_generations=c.retune.generations,
        retune_population=c.retune.population,
        retune_sigma=c.retune.sigma,
        compensations=chosen,
    )
    robust_options = dict(
        n_train=c.robust.train_chips,
        generations=c.robust.generations,
        population=c.robust.population,
        es_sigma=c.robust.sigma,
        rate_tol=ROBUST_RATE_TOL,
        space=c.robust.space,
        search=c.robust.search,
    )
    return kw, robust_options


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
) -> dict:
    """All chips in chunks of ``chunk``; each finished chunk is saved in ``folder`` (when given) as
    ``chunk_00000.npz`` etc. and skipped when the study is run again, so an interrupted run
    resumes where it stopped and ends with the same results as an uninterrupted one. The
    robust words (compensation ``robust``, :func:`robust_words`) are computed first and kept
    there too.

    Args:
        study, n_chips: the study and how many chips (chips ``0 .. n_chips - 1``).
        ref: the reference responses a chip is judged against.
        compensation: which compensations run, and their settings (``None``: the defaults).
        offset_unit: the current (A) that an offset fraction of 1 stands for (default: the
            largest ``|current|`` of the study).
        chunk, folder, label, progress: chunking, where chunks are kept, the progress bar.
        mesh, block: devices to shard the chips over, and jobs per block of the kernel.

    Returns the chunks' arrays concatenated over the chips.
    """
    kw, robust_options = _chunk_options(study, compensation, offset_unit)
    kw.update(mesh=mesh, block=block)
    from pathlib import Path

    from .._progress import Progress

    if n_chips < 1 or chunk < 1:
        raise ValueError(f"n_chips and chunk must be positive, got {n_chips} and {chunk}")
    starts = list(range(0, n_chips, chunk))
    bar = Progress(n_chips, "chips", label) if progress else None
    parts, done = [], 0
    if folder is not None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
    resumed = 0
    comps = kw.get("compensations", COMPENSATIONS)
    if "robust" in comps and kw.get("robust") is None:
        t = time.perf_counter()
        kw["robust"], robust_history = _robust_saved(study, ref, folder, kw, robust_options)
        robust_seconds = time.perf_counter() - t
    for k, start in enumerate(starts):
        index = np.arange(start, min(start + chunk, n_chips))
        path = None if folder is None else folder / f"chunk_{k:05d}.npz"
        if path is not None and path.exists():
            with np.load(path) as f:
                part = {name: f[name] for name in f.files}
            if not np.array_equal(part["index"], index):
                raise ValueError(
                    f"{path} holds chips {part['index'][[0, -1]]}, expected {index[[0, -1]]}: "
                    "the folder belongs to another study; use a fresh folder"
                )
            resumed += index.size
            if bar is not None:
                bar.skip(index.size)
        else:
            part = study_chunk(study, index, ref, **kw)
            if path is not None:
                _atomic_savez(path, part)
        parts.append(part)
        done += index.size
        if bar is not None:
            frac = float(np.mean(np.concatenate([p["behaves"] for p in parts])))
            note = f"behaving {frac:.0%}" + (f" ({resumed} resumed from {folder})" if resumed else "")
            bar.update(done, note)
    keys = parts[0].keys()
    out = {
        name: (
            np.concatenate([p[name] for p in parts])
            if parts[0][name].ndim
            else np.array([p[name] for p in parts])
        )
        for name in keys
    }
    if "robust" in kw:
        out["robust_words"] = np.asarray(flatten_words(kw["robust"]))
        out["robust_history"] = np.asarray(robust_history)
        out["robust_fit_seconds"] = np.array(robust_seconds)  # the load time when read back
    return out


# ---- one robust word set for every chip ----------------------------------------------------------

#: Chips of the robust fit's training set have indices from here on: a study never draws them
#: (its chips are 0, 1, 2, ...), so the robust words are judged on chips they never saw.
TRAIN_OFFSET = 1 << 30


def within_rate(count, rate, ref: Responses, tol: float) -> np.ndarray:
    """Host-side: True where, at every current (last axis), the rate is within ``tol`` of the
    reference's (relative), or zero where the reference fires fewer than two spikes."""
    rate = np.asarray(rate)
    repetitive = ref.rate > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(rate - ref.rate) / np.where(repetitive, ref.rate, 1.0)
    ok = np.where(repetitive, rel <= tol, rate == 0) & (np.asarray(count) >= 0)
    return np.all(ok, axis=-1)


def _robust_objective(count, rate, ref: Responses, tol: float) -> np.ndarray:
    """(P, T, C) -> (P,): minus the fraction of chips within ``tol``, plus a small smooth term
    (mean relative rate error, capped at 1) that ranks candidates with equal fractions."""
    frac = within_rate(count, rate, ref, tol).mean(axis=-1)
    scale = np.where(ref.rate > 0, ref.rate, max(float(np.max(ref.rate)), 1.0))
    err = np.minimum(np.abs(np.nan_to_num(rate, nan=0.0) - ref.rate) / scale, 1.0)
    return -frac + 0.1 * err.mean(axis=(-2, -1))


#: Search spaces and searches of :func:`robust_words`.
ROBUST_SPACES = ("factors", "words")
ROBUST_SEARCHES = ("auto", "es", "cmaes")
#: ``space="words"``: ``dg`` and ``dIb`` move as ``(w + WORD_OFFSET) exp(theta) - WORD_OFFSET`` (a zero
#: word can grow, a large one moves in proportion), ``dErev`` as ``w + 40 theta``.
WORD_OFFSET = 10.0


def _robust_candidates(w0: NDWords, thetas, space: str) -> NDWords:
    """Rounded candidate words (P, ...) for the parameters ``thetas`` (P, 13 or 48)."""
    if space == "factors":
        return jax.vmap(lambda t: quantize_words(apply_factors(w0, t)))(jnp.asarray(thetas))
    flat0 = flatten_words(w0)

    def one(th):
        g = (flat0[:3] + WORD_OFFSET) * jnp.exp(th[:3]) - WORD_OFFSET
        e = flat0[3:6] + 40.0 * th[3:6]
        ib = (flat0[6:] + WORD_OFFSET) * jnp.exp(th[6:]) - WORD_OFFSET
        return quantize_words(unflatten_words(jnp.concatenate([g, e, ib])))

    return jax.vmap(one)(jnp.asarray(thetas))


def robust_words(
    study: Study,
    ref: Responses,
    *,
    n_train: int = 64,
    generations: int = 20,
    population: int = 8,
    es_sigma: float = 0.1,
    rate_tol: float = 0.10,
    space: str = "factors",
    search: str = "auto",
    progress: bool = False,
    **kw,
):
    """One word set for every chip, maximising the fraction of ``n_train`` training chips (indices
    from :data:`TRAIN_OFFSET`) whose rate is within ``rate_tol`` of the reference at every current.

    ``space="factors"``: the 13 global factors of the nominal words (conductances, reversal
    shifts, rates); ``space="words"``: all 48 words (see :data:`WORD_OFFSET`). ``search``: ``"es"``
    a (1 + ``population``) evolution strategy with a fixed step ``es_sigma``, ``"cmaes"`` CMA-ES
    (:class:`ndjax._cmaes.CMAES`, ``population`` candidates, initial step ``es_sigma``), ``"auto"``
    the first for the factors and the second for the words. All are reproducible from the
    study's seed.

    Returns:
        ``(words, history)``: integer-valued :class:`NDWords` and the best objective per generation
        (minus the training fraction, plus a small tie-breaking term).
    """
    if space not in ROBUST_SPACES:
        raise ValueError(f"space must be one of {ROBUST_SPACES}, got {space!r}")
    if search not in ROBUST_SEARCHES:
        raise ValueError(f"search must be one of {ROBUST_SEARCHES}, got {search!r}")
    c = study.currents.size
    mm = chip_mismatch(study, TRAIN_OFFSET + np.arange(n_train))
    key = jax.random.fold_in(jax.random.key(study.seed), 0xC0B)
    dim = 13 if space == "factors" else 48

    def evaluate(thetas):
        p = thetas.shape[0]
        w = repeat_tree(_robust_candidates(study.words, thetas, space), n_train * c)
        m = tile_tree(repeat_tree(mm, c), p)
        r = run_jobs(study, w, m, np.tile(study.currents, p * n_train), **kw)
        return _robust_objective(r.count.reshape(p, n_train, c), r.rate.reshape(p, n_train, c), ref, rate_tol)

    theta = np.zeros(dim)
    best = float(evaluate(theta[None])[0])
    history = [best]
    es = None
    if search == "cmaes" or (search == "auto" and space == "words"):
        from ..fit._search import CMAES

        es = CMAES(dim, max(population, 2), es_sigma, restarts=1, seed=study.seed)
    for g in range(generations):
        if es is None:
            eps = np.asarray(jax.random.normal(jax.random.fold_in(key, g), (population, dim)))
            cands = theta[None] + es_sigma * eps
        else:
            cands = es.ask()[0]
        scores = evaluate(cands)
        if es is not None:
            es.tell(cands[None], scores[None])
        j = int(np.argmin(scores))
        if scores[j] < best:
            best, theta = float(scores[j]), cands[j]
        history.append(best)
        if progress:
            print(
                f"  robust words: generation {g + 1}/{generations}, training objective {best:.3f} "
                f"(minus the fraction of chips within {rate_tol:.0%}, plus 0.1 x their capped rate error)",
                flush=True,
            )
    words = jax.tree.map(lambda x: x[0], _robust_candidates(study.words, theta[None], space))
    return words, np.asarray(history)
