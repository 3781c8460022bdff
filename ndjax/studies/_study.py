"""What a mismatch study is: one programmed chip, its inputs, how spikes are judged, and its chips.

Chip ``i`` of a study has the mismatch ``sample_mismatch(fold_in(key(seed), i), sigma)``, so a chip
is the same in a study of 10 chips and of 10,000, whatever the chunking or the number of devices.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..models._kinetics import check_neuron_state
from ..models._neurodyn import (
    EXPONENT_SIGMA,
    Mismatch,
    NDBiases,
    NDChip,
    NDWords,
    check_words,
    nd_constants,
    nominal_mismatch,
    sample_mismatch,
)

__all__ = ["Study", "Responses", "chip_mismatch", "STUDY_RTOL", "STUDY_ATOL"]

#: Solver tolerances of studies (why: "Why the defaults" in experiments/MISMATCH_RESULTS.md).
STUDY_RTOL = 1e-4
STUDY_ATOL = 1e-7


@dataclasses.dataclass(frozen=True)
class Study:
    """What is studied: one programmed chip, its inputs and how spikes are judged.

    Attributes:
        words: nominal words (integer-valued floats; checked: shape, integer values, range).
        biases: the chip's biases.
        currents: (C,) constant applied currents on the chip, A.
        ts: (T,) save times on the chip's time axis, s, increasing from 0.
        y0: (4,) initial state ``[V (V), m, h, n]``.
        threshold, hysteresis: spike detection on the chip's voltage, V (``ndjax._analysis.spike_mask``).
        sigma: relative mismatch spread of every conductance, reversal offset and sigmoid weight
            (SPEC 2); ``exponent_sigma``: (3,) absolute spread of the gate powers.
        centre_sigma, kappa_sigma: optional sources beyond SPEC 2 (0: off, the default): offsets of
            the 42 sigmoid centres (V) and relative spread of their slopes (``sample_mismatch``).
        seed: chip ``i`` is drawn from ``fold_in(key(seed), i)``.
        count_tol, rate_tol: what "behaves" means: spikes, and relative rate (``ndjax._analysis.behaves``).
        rtol, atol, max_steps: solver settings (relative, absolute in V, accepted steps per solve).
        segments: split the span into this many segments and regroup the jobs by cost between
            them (see ``ndjax.studies.run_jobs``); 1: one solve per job.

    Raises:
        ValueError: naming the field, for non-finite or negative inputs, words out of range,
            times that do not increase from 0, or a state that is not 4 finite values.
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
        for name, value in (("dg", self.words.g), ("dErev", self.words.e_rev), ("dIb", self.words.i_b)):
            check_words(name, np.asarray(value))  # shape, integer values, range: raises naming the word
        y0 = np.asarray(self.y0, dtype=float)
        if y0.shape != (4,) or not np.all(np.isfinite(y0)):
            raise ValueError(f"y0 must be 4 finite values [V, m, h, n], got {self.y0!r}")
        check_neuron_state("y0", y0)  # the gates in [0, 1]
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
        return NDChip(self.words if words is None else words, self.biases, nominal_mismatch(), nd_constants())


def chip_mismatch(study: Study, index: np.ndarray) -> Mismatch:
    """Mismatch of the chips ``index``: chip ``i`` is ``sample_mismatch(fold_in(key(seed), i), ...)``.

    Args:
        study: its seed and spreads.
        index: (N,) non-negative chip indices.

    Returns:
        A :class:`Mismatch` batched over N (leading axis), independent of which other chips are drawn.
    """
    key = jax.random.key(study.seed)
    es = jnp.asarray(study.exponent_sigma, dtype=float)
    extra = dict(centre_sigma=float(study.centre_sigma), kappa_sigma=float(study.kappa_sigma))
    return jax.vmap(lambda i: sample_mismatch(jax.random.fold_in(key, i), study.sigma, es, **extra))(
        jnp.asarray(index, dtype=jnp.uint32)
    )


class Responses(NamedTuple):
    """How jobs fired, one entry per job (any leading shape, e.g. (J,) or (N, C)).

    Attributes:
        count: spike counts; -1 where the solve failed.
        rate: first-to-last firing rates, Hz of chip time (0 below two spikes; NaN where the solve
            failed).
        status: :class:`ndjax.Status` codes of the solves.
        steps: accepted solver steps (a cost estimate for ``cost_sorted_map``); None where unknown.
    """

    count: np.ndarray
    rate: np.ndarray
    status: np.ndarray
    steps: np.ndarray | None = None
