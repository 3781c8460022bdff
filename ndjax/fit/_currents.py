"""Which currents a fit trains on: read from the target's own HH F-I curve.

The onset of repetitive firing is where a chip fitted to HH is hardest to match: just above it
HH's first inter-spike interval diverges (it skips cycles after its first spike), so a training
current there asks the chip to match the onset to a few hundredths of a uA/cm^2, and a current a
little higher trains the onset without that. :func:`auto_currents` places the training currents
around the onset accordingly; :func:`onset_currents` flags a chosen current that sits on it.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ._simulate_pair import hh_spikes
from ._target import Target

__all__ = [
    "auto_currents",
    "onset_currents",
    "ONSET_ISI_RATIO",
    "WIDE_GAP",
    "current_grid",
    "lowest_tail",
    "check_currents",
    "check_positive",
    "check_count",
]

#: A first inter-spike interval this many times the later ones marks a current at the onset.
ONSET_ISI_RATIO = 1.3
#: A gap above ``I_clean`` wider than this fraction of the top current gets a training current at
#: its middle (the F-I curve is steepest just above the onset).
WIDE_GAP = 1 / 8


def check_currents(fn: str, name: str, values) -> tuple[float, ...]:
    """Boundary check of a list of currents (uA/cm^2): non-empty, 1-D, finite.

    Returns:
        the currents as a tuple of floats.

    Raises:
        ValueError: naming ``fn``, the argument and the first bad entry.
    """
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{fn}: {name} must be a list of currents (uA/cm^2), got {values!r}") from err
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{fn}: {name} must be a non-empty 1-D list of currents (uA/cm^2), got {values!r}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{fn}: {name}[{int(bad[0])}] must be a finite current (uA/cm^2), got {arr[bad[0]]}")
    return tuple(float(x) for x in arr)


def check_positive(fn: str, name: str, value) -> float:
    """Boundary check of a span or a spacing: a finite number > 0 (a ValueError naming it)."""
    try:
        x = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{fn}: {name} must be a number > 0, got {value!r}") from err
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{fn}: {name} must be > 0 and finite, got {value!r}")
    return x


def check_count(fn: str, name: str, value, low: int) -> int:
    """Boundary check of a number of samples: an integer >= ``low`` (a ValueError naming it)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{fn}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def current_grid(top: float, step: float) -> np.ndarray:
    """``0, step, 2 step, ...`` up to ``top`` (its last point exactly ``top``), uA/cm^2."""
    grid = np.round(np.arange(0.0, top + step / 2, step) / step) * step
    grid[-1] = top
    return grid


def lowest_tail(ok: np.ndarray) -> int:
    """The first index from which ``ok`` holds to the end (``len(ok)`` if it fails at the end)."""
    bad = np.flatnonzero(~np.asarray(ok, bool))
    return 0 if len(bad) == 0 else int(bad[-1]) + 1


def first_isi_ratios(times, counts) -> np.ndarray:
    """First ISI over the mean of the later ones, per row of spike times ``(C, K)`` with counts
    ``(C,)``; ``inf`` below 3 spikes. Shape (C,)."""
    return np.array(
        [
            (t[1] - t[0]) / np.mean(np.diff(t[1:n])) if n >= 3 else np.inf
            for t, n in zip(np.asarray(times), np.asarray(counts), strict=True)
        ]  # fmt: skip
    )


def onset_currents(currents_ua, times, counts, ratio: float = ONSET_ISI_RATIO) -> list[tuple[float, float]]:
    """Currents where the target's first ISI is over ``ratio`` times its later ones.

    Just above the onset of repetitive firing the first ISI diverges (an example on the guide's
    model: "Why the defaults" in ``experiments/FIT_RESULTS.md``), so a current there pins the
    chip's onset to a few hundredths of a uA/cm^2.

    Args:
        currents_ua: (C,) the currents, uA/cm^2.
        times: (C, K) spike times per current (rows padded past their count; any time unit).
        counts: (C,) spike counts.
        ratio: first ISI / mean later ISI above which a current is flagged.

    Returns:
        ``(current, first ISI / mean later ISI)`` for each such current (needs 3 spikes).
    """
    r = first_isi_ratios(times, counts)
    return [(float(c), float(x)) for c, x in zip(currents_ua, r, strict=True) if np.isfinite(x) and x > ratio]


def auto_currents(
    target: Target,
    *,
    top: float = 20.0,
    t_hh_ms: float = 100.0,
    step: float = 0.25,
    ratio: float = ONSET_ISI_RATIO,
    n_save: int = 4000,
) -> tuple[float, ...]:
    """Training currents chosen from the target's own HH F-I curve (``currents_ua="auto"``).

    The HH reference is cheap (one vmapped solve of ``top/step + 1`` currents from rest,
    under a second once compiled). From it:

    - the onset ``I_on``: the lowest grid current from which HH fires at least two spikes
      at every grid current up to ``top``;
    - ``I_clean``: the lowest grid current from which every current up to ``top`` fires
      three spikes or more with a first ISI at most ``ratio`` times the later ones (above
      the band where the first ISI diverges, :func:`onset_currents`);

    and the currents are an even skeleton ``0, top/4, top/2, 3 top/4, top``, plus
    ``I_clean`` (pins the chip's onset from above) and ``I_on - step`` (the grid current
    just below the onset, where HH fires at most once: pins it from below), less the
    skeleton currents between those two (knife edges, whose spike times ask the chip to
    match the onset to a few hundredths of a uA/cm^2); a dropped skeleton current at or
    above the onset is replaced by one between ``I_clean`` and the next skeleton current,
    so the repetitive range keeps its coverage. The F-I curve is steepest just above the
    onset: where the next current above ``I_clean`` is more than ``top/8``
    (:data:`WIDE_GAP`) away, their middle is added too. For the guide's model (onset 7.5 on
    the grid, first ISI 1.9x the later ones there, 1.07x at 7.75) this is ``0, 5, 7.25, 7.75,
    10, 15, 20``; more targets, and the rule this one replaced: "Why the defaults" in
    ``experiments/FIT_RESULTS.md``.

    Without repetitive firing at ``top`` the skeleton alone is returned, with a warning.

    Args:
        target: the mapping (only its HH model matters).
        top: the largest current, uA/cm^2 (> 0).
        t_hh_ms: span, ms of HH time (the fit's).
        step: grid spacing, uA/cm^2 (> 0); every returned current is on it.
        ratio: first ISI / later ISIs above which a current counts as at the onset.
        n_save: voltage samples per trace of the HH solve.

    Returns:
        the currents, sorted, uA/cm^2.

    Raises:
        ValueError: ``top``, ``step``, ``t_hh_ms`` or ``ratio`` is not positive and finite,
            ``step > top``, or ``n_save < 2``.
        SolveFailedError: (a ``ValueError``) HH's solve failed at a grid current (named).
    """
    if not (math.isfinite(top) and top > 0):
        raise ValueError(f"auto_currents: expected top > 0 (uA/cm^2), got {top!r}")
    if not (math.isfinite(step) and 0 < step <= top):
        raise ValueError(f"auto_currents: expected 0 < step <= top = {top:g}, got {step!r}")
    check_positive("auto_currents", "t_hh_ms", t_hh_ms)
    check_positive("auto_currents", "ratio", ratio)
    check_count("auto_currents", "n_save", n_save, 2)
    grid = current_grid(top, step)
    times, counts = hh_spikes(target, grid, t_hh_ms, n_save)
    skeleton = [top * k / 4 for k in range(5)]
    rep = counts >= 2
    if not rep[-1]:
        warnings.warn(
            f"auto training currents: the HH target does not fire repetitively at {top:g} uA/cm^2"
            f" (from rest, {t_hh_ms:g} ms); using 0..{top:g} in 5 even steps",
            stacklevel=2,
        )
        return tuple(float(c) for c in skeleton)
    clean = first_isi_ratios(times, counts) <= ratio

    i_on = grid[lowest_tail(rep)]
    i_clean = grid[min(lowest_tail(clean), len(grid) - 1)]
    below = i_on - step  # on the grid, and HH fires at most once there (i_on is the lowest)
    lo = below if below > 0 else -np.inf
    chosen = [c for c in skeleton if not lo < c < i_clean]
    chosen += [float(i_clean)] + ([float(below)] if below > 0 else [])
    # a skeleton current dropped from the band is replaced above it, between I_clean and the
    # next skeleton current, so the repetitive range keeps its coverage
    n_band = sum(1 for c in skeleton if lo < c < i_clean and c >= i_on)
    above = [c for c in skeleton if c > i_clean]
    if n_band and above:
        for k in range(1, n_band + 1):
            mid = float(np.round((i_clean + (above[0] - i_clean) * k / (n_band + 1)) / step) * step)
            if i_clean < mid < above[0]:
                chosen.append(mid)
    # the F-I curve is steepest just above the onset: a wide gap there gets its middle too
    nxt = min((c for c in chosen if c > i_clean + 1e-9), default=None)
    if i_on > 0 and nxt is not None and nxt - i_clean > WIDE_GAP * top + 1e-9:
        mid = float(np.round((i_clean + nxt) / 2 / step) * step)
        if i_clean < mid < nxt:
            chosen.append(mid)
    out: list[float] = []
    for c in sorted(chosen):
        if not out or not math.isclose(c, out[-1], abs_tol=1e-9):
            out.append(float(c))
    return tuple(out)
