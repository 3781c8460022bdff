"""What a fit minimises and how a result is judged: the training problem, scores, loss, verdict.

- :class:`FitProblem` (:func:`prepare_problem`): the HH reference at the training currents on
  the chip's time axis, solved once;
- :func:`score`: the free-running mismatch of a chip (spike counts, rates, spike times; not
  differentiable), what the calibration, the keep-best of the gradient stage and the polish
  judge by; :func:`word_scores` scores a batch of word vectors in one vmap;
- :func:`loss`: the differentiable spike-time loss of the gradient stage;
- :func:`compare_spikes`: the acceptance verdict per current (counts +-1, rate within 3%,
  RMS spike-time error under 5% of the ISI) that :func:`ndjax.fit.evaluate_words` reports.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._analysis import behaves, crossing_times, firing_rate, train_rate
from ..models._neurodyn import NDChip, NDWords
from ._currents import check_count, check_currents, check_positive, onset_currents
from ._simulate_pair import MAX_SPIKES, SEARCH_ATOL, SEARCH_RTOL, chip_voltages, hh_crossings
from ._target import Target
from ._wordspace import quantize_words, unflatten_words

__all__ = [
    "CurrentMetrics",
    "compare_spikes",
    "spike_rate",
    "TrainingData",
    "FitProblem",
    "prepare_problem",
    "QUIET_AFTER",
    "chip_spikes",
    "score",
    "loss",
    "trace_score",
    "trace_loss",
    "with_words",
    "word_scores",
    "padded_scores",
]


# ---- the verdict -------------------------------------------------------------------------------


class CurrentMetrics(NamedTuple):
    """Spike comparison at one current (times in ms of HH time, rates in Hz of HH time)."""

    current: float  # uA/cm^2
    hh_count: int
    chip_count: int
    hh_rate: float
    chip_rate: float
    rate_error: float  # relative; 0 when neither fires repetitively, inf when only one does
    timing_error: float  # RMS spike-time error of matched spikes / HH ISI
    passed: bool


def spike_rate(times_ms: np.ndarray) -> float:
    """Firing rate (Hz) of spike times ``times_ms`` (ms) (:func:`ndjax._analysis.train_rate`)."""
    return train_rate(times_ms, per=1e3)


def compare_spikes(
    hh_ms: Sequence[np.ndarray], chip_ms: Sequence[np.ndarray], currents: Sequence[float],
    *, count_tol: int = 1, rate_tol: float = 0.03, timing_tol: float = 0.05,
) -> list[CurrentMetrics]:  # fmt: skip
    """Per current: counts, rates, RMS spike-time error over the HH ISI, and the verdict.

    A current passes when it behaves like HH (:func:`ndjax._analysis.behaves`: ``|n_chip - n_HH| <=
    count_tol``, ``|r_chip - r_HH| / r_HH <= rate_tol``, or both rates 0 where HH is not repetitive)
    and ``sqrt(mean((t_chip - t_HH)^2)) / ISI_HH < timing_tol`` over the first ``min(n_chip,
    n_HH)`` spikes. A current where HH fires fewer than two spikes has no ISI of its own; its
    timing error is measured against the mean ISI of the repetitive currents.

    Args:
        hh_ms, chip_ms: spike times (ms) per current, one 1-D array each.
        currents: the currents (uA/cm^2), only recorded.

    Returns:
        one :class:`CurrentMetrics` per current.
    """
    isis = [np.mean(np.diff(t)) for t in hh_ms if len(t) >= 2]
    ref_isi = float(np.mean(isis)) if isis else np.inf
    out = []
    for i0, th, tc in zip(currents, hh_ms, chip_ms, strict=True):
        rh, rc = spike_rate(th), spike_rate(tc)
        rate_err = (abs(rc - rh) / rh) if rh > 0 else (0.0 if rc == 0 else np.inf)
        n = min(len(th), len(tc))
        isi = float(np.mean(np.diff(th))) if len(th) >= 2 else ref_isi
        if n:
            timing = float(np.sqrt(np.mean((tc[:n] - th[:n]) ** 2)) / isi)
        else:
            timing = 0.0 if len(th) == len(tc) else np.inf
        ok = bool(behaves([len(tc)], [rc], [len(th)], [rh], count_tol, rate_tol)) and timing < timing_tol
        out.append(CurrentMetrics(float(i0), len(th), len(tc), rh, rc, float(rate_err), timing, bool(ok)))
    return out


# ---- the training problem ----------------------------------------------------------------------


class TrainingData(NamedTuple):
    """HH reference on the chip's time axis for the training currents: the arrays the jitted
    scores read (one pytree argument)."""

    ts: jax.Array  # (T,) chip time, s
    i_chip: jax.Array  # (C,) chip currents, A
    th: jax.Array  # (C, MAX_SPIKES) HH spike times, s (padded with ts[-1])
    nh: jax.Array  # (C,) HH spike counts
    isi: jax.Array  # (C,) HH ISI, s (mean ISI of the repetitive currents where HH fires < 2)
    rh: jax.Array  # (C,) HH rates, 1/s of chip time (0 below two spikes)
    y0: jax.Array  # (4,) chip initial state
    shift: jax.Array  # () V_chip - V_HH, V
    threshold: jax.Array  # () HH threshold, V
    hysteresis: jax.Array  # () V
    rtol: jax.Array  # () chip solver tolerances during the search
    atol: jax.Array
    vh: jax.Array  # (C, T) HH voltage (V, rest at 0)
    quiet: jax.Array  # (C, T) 1 where the subthreshold term compares voltages, else 0
    sub_weight: jax.Array  # () weight of that term in the score


@dataclasses.dataclass(frozen=True)
class FitProblem:
    """A training problem: one target at its training currents (what every stage takes).

    Attributes:
        target: the mapping.
        currents: the training currents, uA/cm^2.
        template: a chip with the target's biases whose words every score replaces.
        data: the HH reference (:class:`TrainingData`).
    """

    target: Target
    currents: tuple[float, ...]
    template: NDChip
    data: TrainingData


#: The subthreshold term compares voltages from this fraction of the reference ISI after HH's spike.
QUIET_AFTER = 0.25


def prepare_problem(
    target: Target, currents_ua: Sequence[float], t_hh_ms: float, n_save: int, *,
    sub_weight: float = 0.0, rtol: float = SEARCH_RTOL, atol: float = SEARCH_ATOL,
) -> FitProblem:  # fmt: skip
    """Solve the HH target at the training currents and collect what the scores compare with.

    Warns when a training current sits at the onset of the target's repetitive firing
    (:func:`ndjax.fit.onset_currents`): its spike times ask the chip to match the onset to a
    few hundredths of a uA/cm^2, and the fit tends to sacrifice them.

    Args:
        target: the mapping.
        currents_ua: (C,) training currents, uA/cm^2.
        t_hh_ms: span, ms of HH time.
        n_save: voltage samples per trace (spike times are interpolated between them).
        sub_weight: weight of the subthreshold term of :func:`score` (0: off).
        rtol, atol: the chip's solver tolerances in the scores and the loss.

    Returns:
        the :class:`FitProblem`.

    Raises:
        ValueError: ``currents_ua`` empty or not finite, ``t_hh_ms`` not > 0, ``n_save < 2``.
        SolveFailedError: (a ``ValueError``) HH's solve failed at a training current (named):
            a fit would run on NaN scores.
    """
    currents_ua = check_currents("prepare_problem", "currents_ua", currents_ua)
    check_positive("prepare_problem", "t_hh_ms", t_hh_ms)
    check_count("prepare_problem", "n_save", n_save, 2)
    i0 = np.asarray(currents_ua, dtype=float) * 1e-6
    ts = np.linspace(0.0, t_hh_ms * 1e-3 / target.scl_t, n_save)
    th, nh, vh = hh_crossings(target, currents_ua, ts, voltages=True)
    isis = [np.mean(np.diff(t[:n])) for t, n in zip(th, nh, strict=True) if n >= 2]
    ref = float(np.mean(isis)) if isis else float(ts[-1])
    # the subthreshold term: where HH fires at most once, its voltage from a quarter of the
    # reference ISI after that spike (or from the start, without one) to the end
    start = np.where(nh >= 1, th[:, 0] + QUIET_AFTER * ref, 0.0)
    quiet = ((nh <= 1)[:, None] & (ts[None, :] > start[:, None])).astype(float)
    isi = np.array([np.mean(np.diff(t[:n])) if n >= 2 else ref for t, n in zip(th, nh, strict=True)])
    rh = np.array([train_rate(t[:n]) for t, n in zip(th, nh, strict=True)])
    edges = onset_currents(currents_ua, th, nh)
    if edges:
        warnings.warn(
            "training current(s) "
            + ", ".join(f"{c:g} uA/cm^2 (first ISI {r:.1f}x the later ones)" for c, r in edges)
            + " sit at the onset of the target's repetitive firing: their spike times ask the chip to"
            " match the onset to a few hundredths of a uA/cm^2, and the fit tends to sacrifice them;"
            " a current a little higher trains the onset without that (experiments/FIT_RESULTS.md)",
            stacklevel=3,
        )
    data = TrainingData(
        jnp.asarray(ts), jnp.asarray(target.chip_current(i0)), jnp.asarray(th), jnp.asarray(nh),
        jnp.asarray(isi), jnp.asarray(rh), jnp.asarray([target.v_shift, 0.0, 0.0, 0.0]),
        jnp.asarray(target.v_shift), jnp.asarray(target.threshold), jnp.asarray(target.hysteresis),
        jnp.asarray(rtol, dtype=float), jnp.asarray(atol, dtype=float),
        jnp.asarray(vh), jnp.asarray(quiet), jnp.asarray(sub_weight, dtype=float),
    )  # fmt: skip
    zeros = jnp.zeros(3)  # the template's words are placeholders: every score replaces them
    template = target.chip(NDWords(zeros, zeros, jnp.zeros((3, 2, 7))))
    return FitProblem(target, tuple(float(c) for c in currents_ua), template, data)


# ---- scores and loss ---------------------------------------------------------------------------


def with_words(template: NDChip, words: NDWords) -> NDChip:
    """``template`` with ``words`` in place of its own."""
    return dataclasses.replace(template, words=words)


def chip_spikes(chip: NDChip, data: TrainingData):
    """The chip at the training currents: ``(v, ok, tc, nc)``: (C, T) voltages (V, chip axis),
    (C,) solve status, (C, MAX_SPIKES) spike times (s, padded with ``ts[-1]``) and (C,) counts."""
    v, ok = chip_voltages(chip, data.i_chip, data.y0, data.ts, data.rtol, data.atol)
    return (v, ok, *_spikes(v, data))


def _spikes(v: jax.Array, data: TrainingData):
    """Spike times (C, MAX_SPIKES) and counts (C,) of chip voltages ``v`` (C, T): differentiable
    threshold-crossing interpolation on HH's axis."""
    return jax.vmap(lambda vv: crossing_times(data.ts, vv - data.shift, data.threshold, data.hysteresis,
                                              MAX_SPIKES))(v)  # fmt: skip


def score(chip: NDChip, data: TrainingData) -> jax.Array:
    """Free-running mismatch of the chip with HH: :func:`trace_score` of its solve; ()."""
    v, ok = chip_voltages(chip, data.i_chip, data.y0, data.ts, data.rtol, data.atol)
    return trace_score(v, ok, data)


def loss(chip: NDChip, data: TrainingData) -> jax.Array:
    """Differentiable spike-time loss of the chip: :func:`trace_loss` of its solve; ()."""
    v, ok = chip_voltages(chip, data.i_chip, data.y0, data.ts, data.rtol, data.atol)
    return trace_loss(v, ok, data)


def trace_score(v: jax.Array, ok: jax.Array, data: TrainingData) -> jax.Array:
    """Free-running mismatch of chip voltages with HH (not differentiable; lower is better).

    Per current, with ``n`` spike counts, ``r`` rates, ``tau`` the RMS spike-time error of the
    matched spikes over the HH ISI and ``e = |r_chip - r_HH| / r_HH``::

        |n_chip - n_HH| + 5 tau + 50 relu(tau - 0.04)
          + (10 e + 100 relu(e - 0.02))        where HH fires repetitively
          + (3 + e  if the chip fires repetitively, else 0)    where it does not
          + sub_weight * RMS((V_chip - V_HH) / threshold) over ``quiet``

    summed over the currents; a failed solve costs 100. The steep hinges sit just inside the
    acceptance limits of :func:`compare_spikes` (timing 5%, rate 3%), so the search works on the
    currents that fail rather than on those already good.

    Args:
        v: (C, T) the chip's voltages at the training currents (V, chip axis).
        ok: (C,) their solve status.
        data: the problem's :class:`TrainingData`.

    Returns:
        () the score.
    """
    tc, nc = _spikes(v, data)
    last = jnp.take_along_axis(tc, jnp.maximum(nc - 1, 0)[:, None], axis=1)[:, 0]
    rc = firing_rate(nc, tc[:, 0], last, floor=1e-12)
    ref_rate = jnp.maximum(jnp.max(data.rh), 1e-12)
    k = jnp.arange(MAX_SPIKES)[None, :]
    matched = (k < jnp.minimum(nc, data.nh)[:, None]).astype(float)
    timing = jnp.sqrt(jnp.sum(matched * ((tc - data.th) / data.isi[:, None]) ** 2, axis=1)
                      / jnp.maximum(jnp.sum(matched, axis=1), 1.0))  # fmt: skip
    repetitive = data.nh >= 2
    rate_err = jnp.abs(rc - data.rh) / jnp.where(repetitive, data.rh, ref_rate)
    # where HH fires at most once, a repetitively firing chip is the error that matters
    silent_err = jnp.where(nc >= 2, 3.0 + rate_err, 0.0)
    # timing weighs the same everywhere: a lone spike's latency is judged like a train's spike times
    per = jnp.abs(nc - data.nh) + 5.0 * timing + 50.0 * jax.nn.relu(timing - 0.04)
    per = per + jnp.where(repetitive, 10.0 * rate_err + 100.0 * jax.nn.relu(rate_err - 0.02), silent_err)
    # where HH rests after one spike, its subthreshold oscillation (damping and frequency near the
    # rest state) shapes where repetitive firing starts and how long the first ISI is above it
    dv = (v - data.shift - data.vh) / data.threshold
    sub = jnp.sqrt(jnp.sum(data.quiet * dv**2, axis=1) / jnp.maximum(jnp.sum(data.quiet, axis=1), 1.0))
    per = per + data.sub_weight * sub
    return jnp.sum(jnp.where(ok, per, 100.0))


def trace_loss(v: jax.Array, ok: jax.Array, data: TrainingData) -> jax.Array:
    """Differentiable spike-time loss of chip voltages (the gradient stage's; mean over currents).

    Per current, spike ``k`` (times ``t`` over the HH ISI)::

        (t_chip,k - t_HH,k)^2 / ISI^2                   both fire spike k
        0.1 (t_end - t_chip,k)^2 / ISI^2                 an extra chip spike: pushed out of the window
        1 + relu(thr + hyst - peak_k)^2 / thr^2          an HH spike the chip misses, ``peak_k``
                                                         the chip's highest voltage within a
                                                         quarter ISI of it: pulled up to threshold

    A failed solve costs 100. The spike times are differentiable through the interpolated
    threshold crossings (:func:`ndjax._analysis.crossing_times`).

    Args:
        v, ok, data: as :func:`trace_score`.

    Returns:
        () the loss.
    """
    tc, nc = _spikes(v, data)
    k = jnp.arange(MAX_SPIKES)[None, :]
    nh = data.nh[:, None]
    ncc = nc[:, None]
    isi = data.isi[:, None]
    matched = (k < ncc) & (k < nh)
    l_match = jnp.where(matched, ((tc - data.th) / isi) ** 2, 0.0)
    extra = (k < ncc) & (k >= nh)
    l_extra = 0.1 * jnp.where(extra, ((data.ts[-1] - tc) / isi) ** 2, 0.0)
    missing = (k >= ncc) & (k < nh)
    t_near = jnp.abs(data.ts[None, None, :] - data.th[:, :, None]) < 0.25 * isi[:, :, None]
    peak = jnp.max(jnp.where(t_near, v[:, None, :] - data.shift, -jnp.inf), axis=2)
    gap = jax.nn.relu(data.threshold + data.hysteresis - peak) / data.threshold
    l_miss = jnp.where(missing, gap**2 + 1.0, 0.0)
    per = jnp.sum(l_match + l_extra + l_miss, axis=1)
    return jnp.mean(jnp.where(ok, per, 100.0))


# Compiled once per problem shape and shared by every fit (the chip template and the data are
# arguments, not closures).
@jax.jit
def word_scores(template: NDChip, flat_words, data: TrainingData) -> jax.Array:
    """:func:`score` of the rounded chips for a batch (B, 48) of flattened words; (B,)."""

    def one(x):
        return score(with_words(template, quantize_words(unflatten_words(x))), data)

    return jax.vmap(one)(flat_words)


def padded_scores(template: NDChip, batch: np.ndarray, data: TrainingData, bucket: int) -> np.ndarray:
    """:func:`word_scores` of a batch (B, 48) padded to a multiple of ``bucket`` rows, so that a
    few compiled shapes serve batches of every size; (B,) NumPy."""
    n = len(batch)
    pad = -n % bucket
    full = np.concatenate([batch, np.repeat(batch[:1], pad, axis=0)]) if pad else batch
    return np.asarray(word_scores(template, jnp.asarray(full), data))[:n]
