"""How well a word set spikes like its HH target: per-current verdicts and F-I curves.

Both sides are simulated from rest at the simulator's default (evaluation) tolerances, on the HH
time axis in ms, and judged by :func:`ndjax.fit.compare_spikes`: the chip passes a current when it
fires HH's spike count +-1, at a rate within 3% of HH's, with an RMS spike-time error under 5% of
the HH ISI.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from ._currents import check_count, check_currents, check_positive, current_grid, lowest_tail
from ._objectives import compare_spikes, spike_rate
from ._simulate_pair import chip_spikes_from_rest, hh_spikes_from_rest
from ._target import Target

__all__ = ["evaluate_words", "FICurve", "fi_curve", "fi_curves"]


def evaluate_words(
    target: Target, words, currents_ua: Sequence[float], *, t_hh_ms: float = 100.0, n_save: int = 6000,
    return_traces: bool = False,
):  # fmt: skip
    """Simulate the HH target and the chip with ``words`` at each current and compare spikes.

    Args:
        target: the mapping.
        words: :class:`NDWords` (rounded and clipped here) or a ``(dg, dErev, dIb)`` tuple.
        currents_ua: (C,) HH currents, uA/cm^2.
        t_hh_ms: span in ms of HH time (mapped onto the chip's time axis).
        n_save: voltage samples per trace (spike times are read between them).
        return_traces: also return the traces.

    Raises:
        ValueError: ``currents_ua`` empty or not finite, ``t_hh_ms`` not > 0, ``n_save < 2``.
        SolveFailedError: (a ``ValueError``) HH's solve failed at a current (named).

    Returns:
        list of C :class:`CurrentMetrics`; with ``return_traces``, ``(metrics, (ts_ms, v_hh,
        v_chip))`` with ``ts_ms`` (n_save,) ms of HH time and the voltages (C, n_save) in HH
        volts (rest at 0).
    """
    currents_ua = check_currents("evaluate_words", "currents_ua", currents_ua)
    check_positive("evaluate_words", "t_hh_ms", t_hh_ms)
    check_count("evaluate_words", "n_save", n_save, 2)
    ts_ms, v_hh, hh_ms = hh_spikes_from_rest(target, currents_ua, t_hh_ms, n_save)
    _, v_c, chip_ms = chip_spikes_from_rest(target, words, currents_ua, t_hh_ms, n_save)
    metrics = compare_spikes(hh_ms, chip_ms, currents_ua)
    return (metrics, (ts_ms, v_hh, v_c)) if return_traces else metrics


class FICurve(NamedTuple):
    """The HH target's and a chip's F-I curves from rest on a grid, and their onsets."""

    currents: np.ndarray  # (G,) uA/cm^2
    hh_rate: np.ndarray  # (G,) Hz of HH time (0 below two spikes)
    chip_rate: np.ndarray  # (G,)
    hh_onset: float  # uA/cm^2: two spikes or more from here up to the top (nan: not at the top)
    chip_onset: float


def fi_curve(
    target: Target, words, *, top: float = 20.0, step: float = 0.25, refine: float = 0.05,
    t_hh_ms: float = 100.0, n_save: int = 4000,
) -> FICurve:  # fmt: skip
    """F-I curves of the HH target and of the chip with ``words``, from 0 to ``top``.

    Both are simulated from rest at every grid current (as in :func:`evaluate_words`);
    each onset of repetitive firing (the lowest current from which the model fires two
    spikes or more at every grid current up to ``top``) is then located to ``refine``
    on a second grid inside the last ``step`` below it. The onset is where a chip fitted
    to HH is hardest to match (:mod:`ndjax.fit._currents`). :func:`fi_curves` does several
    word sets with one HH solve.

    Args:
        target: the mapping.
        words: as :func:`evaluate_words`.
        top, step, refine: the grid (uA/cm^2): ``0, step, ..., top`` and the refinement
            spacing of the onsets, ``0 < refine <= step <= top``.
        t_hh_ms, n_save: span (ms of HH time) and samples per trace.

    Returns:
        :class:`FICurve` (rates on the coarse grid; onsets refined).

    Raises:
        ValueError: a grid spacing is not positive and finite, or not ``refine <= step <= top``.
    """
    return fi_curves(target, {"chip": words}, top=top, step=step, refine=refine, t_hh_ms=t_hh_ms,
                     n_save=n_save)["chip"]  # fmt: skip


def fi_curves(
    target: Target, word_sets: Mapping[str, object], *, top: float = 20.0, step: float = 0.25,
    refine: float = 0.05, t_hh_ms: float = 100.0, n_save: int = 4000,
) -> dict[str, FICurve]:  # fmt: skip
    """:func:`fi_curve` of each word set (name -> words), the HH target simulated once."""
    for name, val in (("top", top), ("step", step), ("refine", refine), ("t_hh_ms", t_hh_ms)):
        check_positive("fi_curve", name, val)
    check_count("fi_curve", "n_save", n_save, 2)
    if step > top or refine > step:
        raise ValueError(f"fi_curve: expected refine <= step <= top, got {refine!r}, {step!r}, {top!r}")
    grid = current_grid(top, step)
    kw = dict(t_hh_ms=t_hh_ms, n_save=n_save)

    def trains(currents) -> dict[str | None, list]:  # None: HH; spike times (ms) per current
        out = {None: hh_spikes_from_rest(target, currents, **kw)[2]}
        for name, w in word_sets.items():
            out[name] = chip_spikes_from_rest(target, w, currents, **kw)[2]
        return out

    def coarse_onset(times: list) -> int | None:  # index; None: not repetitive at the top
        k = lowest_tail(np.array([len(t) for t in times]) >= 2)
        return None if k == len(times) else k

    on_grid = trains(grid)
    k_on = {name: coarse_onset(times) for name, times in on_grid.items()}
    n_sub = max(1, int(round(step / refine)))
    fine = {
        k: grid[k - 1] + (grid[k] - grid[k - 1]) * np.arange(1, n_sub) / n_sub
        for k in set(k_on.values())
        if k
    }
    extra = np.concatenate(list(fine.values())) if fine else np.zeros(0)
    in_extra = trains(extra) if len(extra) else {name: [] for name in on_grid}

    def onset(name: str | None) -> float:
        k = k_on[name]
        if k is None:
            return math.nan
        if k == 0:
            return float(grid[0])
        counts = {float(c): len(t) for c, t in zip(extra, in_extra[name], strict=True)}
        out = float(grid[k])
        for c in fine[k][::-1]:  # from the top down: repetitive as long as it lasts
            if counts[float(c)] < 2:
                break
            out = float(c)
        return out

    hh_rate = np.array([spike_rate(t) for t in on_grid[None]])
    hh_onset = onset(None)
    return {
        name: FICurve(grid, hh_rate, np.array([spike_rate(t) for t in on_grid[name]]), hh_onset, onset(name))
        for name in word_sets
    }
