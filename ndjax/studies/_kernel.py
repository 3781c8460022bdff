"""The study kernel: blocks of jobs (words, mismatch, current) solved by one compiled function.

A job is one chip with its own words and mismatch at one constant current. Every simulation of a
study (uncompensated chips, compensation candidates, training chips) is a flat array of jobs run by
:func:`run_jobs`: in blocks of a fixed size (one compilation), sharded over the devices when there
are several, optionally in time segments regrouped by cost. What the jobs share (biases, save
times, initial state, spike detection, tolerances) is one :class:`Fixed` pytree.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np

from .._analysis import count_and_rate
from .._checks import Status, status_code
from .._simulate import NEURODYN, default_controller, simulate
from .._stimulus import Constant
from ..models._neurodyn import (
    Mismatch,
    NDBiases,
    NDChip,
    NDWords,
    chip_params,
    nd_constants,
    physical_mismatch,
)
from ._study import Responses, Study

__all__ = [
    "Fixed",
    "fixed",
    "respond",
    "run_jobs",
    "solve_segment",
    "chip_responses",
    "responses_grid",
    "cost_sorted_map",
    "device_mesh",
    "broadcast_words",
    "repeat_tree",
    "tile_tree",
]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Fixed:
    """What every job of a study shares (a pytree; ``max_steps`` is static).

    Attributes:
        biases: the chip's biases.
        ts: (T,) save times, s (of a segment, for :func:`solve_segment`).
        y0: (4,) initial state.
        threshold, hysteresis: spike detection, V.
        rtol, atol: solver tolerances.
        max_steps: accepted steps per solve (static: a new value is a new compilation).
    """

    biases: NDBiases
    ts: jax.Array
    y0: jax.Array
    threshold: float
    hysteresis: float
    rtol: float
    atol: float
    max_steps: int = dataclasses.field(metadata=dict(static=True))


def fixed(study: Study) -> Fixed:
    """The :class:`Fixed` pytree of a study."""
    return Fixed(
        study.biases,
        jnp.asarray(study.ts),
        jnp.asarray(study.y0, dtype=float),
        study.threshold,
        study.hysteresis,
        study.rtol,
        study.atol,
        study.max_steps,
    )


def _save_v(t, y, args):
    return y[0]


def spikes_at(params, i_app, fx: Fixed):
    """Solve one chip (``chip_params``) at one constant current ``i_app`` (A), saving V at ``fx.ts``.

    Returns:
        ``(trace, count, rate)``: the :class:`ndjax.Trace` and the spike count and first-to-last
        rate (Hz) of its voltage (``ndjax._analysis.count_and_rate``; the rate is differentiable).
    """
    tr = simulate(NEURODYN, params, Constant(i_app), fx.y0, saveat=dfx.SaveAt(ts=fx.ts, fn=_save_v),
                  stepsize_controller=default_controller(fx.rtol, fx.atol),
                  max_steps=fx.max_steps)  # fmt: skip
    return (tr, *count_and_rate(fx.ts, tr.ys, fx.threshold, fx.hysteresis))


def _one_response(words: NDWords, mismatch: Mismatch, i_app, fx: Fixed):
    """One job: ``(count, rate, status, steps)``, count -1 and rate NaN where the solve failed."""
    chip = NDChip(words, fx.biases, mismatch, nd_constants(), digital=True)
    tr, count, rate = spikes_at(chip_params(chip), i_app, fx)
    status = status_code(tr.ok, tr.max_steps_reached, jnp)
    return jnp.where(tr.ok, count, -1), jnp.where(tr.ok, rate, jnp.nan), status, tr.n_steps


@jax.jit
def respond(words: NDWords, mismatch: Mismatch, i_app: jax.Array, fx: Fixed):
    """The study kernel: a block of J jobs, each with its own words, mismatch and current.

    Args:
        words, mismatch: batched over the jobs (leading axis J).
        i_app: (J,) constant currents, A.
        fx: what the jobs share (:func:`fixed`).

    Returns:
        ``(count, rate, status, steps)``, each (J,): spike count (-1 where the solve failed), rate in
        Hz (NaN where it failed), :class:`ndjax.Status` code, accepted solver steps.
    """
    return jax.vmap(_one_response, in_axes=(0, 0, 0, None))(words, mismatch, i_app, fx)


@jax.jit
def solve_segment(words: NDWords, mismatch: Mismatch, i_app: jax.Array, y0: jax.Array, fx: Fixed):
    """One time segment (``fx.ts``) of a block of jobs, each from its own state ``y0`` (J, 4).

    Returns:
        ``(v, y_end, steps, ok, capped)``: (J, T) V at ``fx.ts``, (J, 4) final states, accepted steps,
        success and step-limit flags.
    """

    def one(w, mm, i, y):
        chip = NDChip(w, fx.biases, mm, nd_constants(), digital=True)
        tr = simulate(NEURODYN, chip_params(chip), Constant(i), y, fx.ts, max_steps=fx.max_steps,
                      stepsize_controller=default_controller(fx.rtol, fx.atol))  # fmt: skip
        return tr.ys[:, 0], tr.ys[-1], tr.n_steps, tr.ok, tr.max_steps_reached

    return jax.vmap(one)(words, mismatch, i_app, y0)


@jax.jit
def _stats_block(v: jax.Array, fx: Fixed):
    """Counts and rates of (J, T) voltages at ``fx.ts``."""
    return jax.vmap(count_and_rate, in_axes=(None, 0, None, None))(fx.ts, v, fx.threshold, fx.hysteresis)


def cost_sorted_map(fn: Callable, xs, cost, *, batch_size: int = 250):
    """``fn`` over the leading axis of ``xs``, in vmapped chunks of items of similar ``cost``.

    A vmapped adaptive solve (and its gradient) steps until the slowest item of its batch is
    done; grouping items by their step counts (from a forward pass, e.g. ``Responses.steps``)
    wastes fewer steps (measured in experiments/MISMATCH_RESULTS.md, "Why the defaults").

    Args:
        fn: maps one item to a pytree (a module-level function: it is a cache key).
        xs: pytree of arrays with a leading item axis (N).
        cost: (N,) any sortable cost per item.
        batch_size: items per vmapped chunk (``jax.lax.map``).

    Returns:
        ``fn``'s outputs stacked over the items, in input order.
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
    """Simulate J jobs in blocks of ``block`` (one compiled kernel, :func:`respond`; the last block
    padded with copies of its last job).

    Args:
        study: what the jobs share, and ``segments`` (> 1: :func:`_run_segmented`).
        words, mismatch: batched over the J jobs.
        i_app: (J,) currents, A.
        block: jobs per kernel call (rounded up to a multiple of the devices with a ``mesh``).
        mesh: devices to shard each block's job axis over (:func:`device_mesh`), or None.

    Returns:
        :class:`Responses` of (J,) arrays, in job order.
    """
    i_app = np.asarray(i_app, dtype=float)
    n = i_app.shape[0]
    if n == 0:
        return Responses(np.zeros(0, int), np.zeros(0), np.zeros(0, int), np.zeros(0, int))
    shard = None
    if mesh is not None:
        block = -(-block // mesh.size) * mesh.size
        shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("chips"))
    fx = fixed(study)
    if study.segments > 1:
        r = _run_segmented(study, fx, words, mismatch, i_app, block, shard)
    else:
        kernel = functools.partial(_respond_with, fx)
        r = Responses(*_blocked(kernel, (words, mismatch, i_app), np.arange(n), block, shard))
    return _judge_physics(r, mismatch)


def _judge_physics(r: Responses, mismatch: Mismatch) -> Responses:
    """Jobs whose mismatch has a factor <= 0 (:func:`ndjax.models.physical_mismatch`) are not data:
    ``Status.UNPHYSICAL``, count -1 and rate NaN, whatever their solve gave."""
    bad = ~np.asarray(physical_mismatch(jax.tree.map(np.asarray, mismatch)))
    if not bad.any():
        return r
    return Responses(np.where(bad, -1, r.count), np.where(bad, np.nan, r.rate),
                     np.where(bad, int(Status.UNPHYSICAL), r.status), r.steps)  # fmt: skip


def _respond_with(fx: Fixed, w, mm, cur):
    return respond(w, mm, cur, fx)


def _blocked(kernel: Callable, jobs, order: np.ndarray, block: int, shard) -> list[np.ndarray]:
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


def _run_segmented(study: Study, fx: Fixed, words, mismatch, i_app, block: int, shard) -> Responses:
    """:func:`run_jobs` in ``study.segments`` time segments; before each segment the jobs are
    regrouped by the steps they took in the previous one, so that a block holds jobs of similar
    cost (a vmapped solve steps until its slowest job is done). Each segment restarts the step
    size control from the previous segment's state; ``max_steps`` applies to each segment."""
    n = i_app.shape[0]
    ts = np.asarray(study.ts)
    bounds = np.linspace(0, ts.size - 1, study.segments + 1).round().astype(int)
    y0 = np.asarray(study.y0, dtype=float)
    y = np.tile(y0, (n, 1))
    order = np.arange(n)
    ok, capped, steps = np.ones(n, bool), np.zeros(n, bool), np.zeros(n, int)
    v_parts = []
    for k in range(study.segments):
        fx_seg = dataclasses.replace(fx, ts=jnp.asarray(ts[bounds[k] : bounds[k + 1] + 1]))

        def kernel(w, mm, cur, y_start, fx_seg=fx_seg):
            return solve_segment(w, mm, cur, y_start, fx_seg)

        seg_v, seg_y, seg_steps, seg_ok, seg_cap = _blocked(
            kernel, (words, mismatch, i_app, y), order, block, shard
        )
        v_parts.append(seg_v if k == 0 else seg_v[:, 1:])
        ok &= seg_ok
        capped |= seg_cap
        steps += seg_steps
        # a failed job goes on from a finite state (it stays failed) rather than stalling on inf
        y = np.where(ok[:, None], seg_y, y0[None])
        order = np.argsort(seg_steps, kind="stable")
    v = np.concatenate(v_parts, axis=1)
    count, rate = (np.asarray(x) for x in _stats_block(jnp.asarray(v), fx))
    status = status_code(ok, capped)
    return Responses(np.where(ok, count, -1), np.where(ok, rate, np.nan), status, steps)


# ---- job layouts ---------------------------------------------------------------------------------


def broadcast_words(words: NDWords, n: int) -> NDWords:
    """``words`` repeated for ``n`` chips (leading axis n), as floats."""
    return jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x, float), (n, *jnp.shape(x))), words)


def repeat_tree(tree, reps: int):
    """Repeat every leaf ``reps`` times along axis 0 (job ``i * reps + k`` is item ``i``)."""
    return jax.tree.map(lambda x: jnp.repeat(x, reps, axis=0), tree)


def tile_tree(tree, reps: int):
    """Tile every leaf ``reps`` times along axis 0 (job ``k * n + i`` is item ``i``)."""
    return jax.tree.map(lambda x: jnp.concatenate([x] * reps, axis=0), tree)


def chip_responses(study: Study, words: NDWords, mismatch: Mismatch, **kw) -> Responses:
    """N chips (batched ``words`` and ``mismatch``) at every current of the study.

    Args:
        study: its currents and everything the jobs share.
        words, mismatch: batched over N.
        kw: ``mesh``, ``block`` of :func:`run_jobs`.

    Returns:
        :class:`Responses` of (N, C) arrays.
    """
    n = jax.tree.leaves(mismatch)[0].shape[0]
    c = study.currents.size
    r = run_jobs(study, repeat_tree(words, c), repeat_tree(mismatch, c), np.tile(study.currents, n), **kw)
    return Responses(*(x.reshape(n, c) for x in r))


def responses_grid(
    study: Study, words: NDWords, mismatch: Mismatch, offsets: Sequence[float] = (0.0,), **kw
) -> Responses:
    """N chips (batched ``words`` and ``mismatch``) at every current plus every offset.

    Args:
        offsets: (K,) current offsets, A, added to each of the C currents.
        kw: ``mesh``, ``block`` of :func:`run_jobs`.

    Returns:
        :class:`Responses` of (N, K, C) arrays.
    """
    n = jax.tree.leaves(mismatch)[0].shape[0]
    offsets = np.asarray(offsets, dtype=float)
    k, c = offsets.size, study.currents.size
    reps = k * c
    cur = (offsets[:, None] + np.asarray(study.currents)[None, :]).ravel()  # (K*C,)
    i_app = np.tile(cur, n)
    r = run_jobs(study, repeat_tree(words, reps), repeat_tree(mismatch, reps), i_app, **kw)
    return Responses(*(x.reshape(n, k, c) for x in r))
