"""What a study's chips are judged against: the nominal chip, or the HH target the words were fitted to."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .._analysis import firing_rate, first_last_crossings, spike_mask
from .._checks import require_solved
from ..models._neurodyn import nominal_mismatch
from ._kernel import broadcast_words, responses_grid
from ._study import Responses, Study

__all__ = ["nominal_reference", "hh_reference"]


def nominal_reference(study: Study) -> Responses:
    """The nominal (mismatch-free) chip at every current of the study, solved by the study kernel.

    Returns:
        :class:`Responses` of (C,) arrays.

    Raises:
        SolveFailedError: (a ``ValueError``) the nominal chip's solve failed at a current (named,
            in nA, with the reason): a study judged against it would mean nothing.
    """
    r = responses_grid(study, broadcast_words(study.words, 1), broadcast_words(nominal_mismatch(), 1))
    out = Responses(*(x[0, 0] for x in r))
    require_solved(out.status, np.asarray(study.currents) * 1e9, "the nominal chip", "nA")
    return out


def hh_reference(study: Study, target) -> Responses:
    """The HH target at the study's currents, on the chip's time axis.

    Each chip current is mapped back to HH's (``target.chip_current``), HH is solved from rest
    (rtol 1e-8) at the study's save times, and its spikes are detected at the chip's threshold
    moved to HH's voltage axis (``threshold - target.v_shift``).

    Args:
        study: currents (A), save times (s of chip time), threshold and hysteresis (V).
        target: an :class:`ndjax.Target`.

    Returns:
        :class:`Responses` of (C,) arrays: counts, rates (Hz of chip time), statuses; no steps.

    Raises:
        SolveFailedError: (a ``ValueError``) HH's solve failed at a current (named, in uA/cm^2,
            with the reason).
    """
    from ..fit._simulate_pair import hh_voltages as _hh_voltages

    i0 = np.asarray(study.currents) / target.chip_current(1.0)  # back to A/cm^2
    ts = jnp.asarray(study.ts)
    v, status = _hh_voltages(target.hh_params(), jnp.asarray(i0), ts)
    require_solved(status, i0 * 1e6, "the HH target", "uA/cm^2")
    thr, hyst = study.threshold - target.v_shift, study.hysteresis
    counts, rates = [], []
    for vv in np.asarray(v):
        mask = spike_mask(vv, thr, hyst)
        n = int(np.sum(mask))
        t0, t1 = first_last_crossings(ts, jnp.asarray(vv), mask, thr)
        counts.append(n)
        rates.append(float(firing_rate(n, t0, t1)))
    return Responses(np.asarray(counts), np.asarray(rates), np.asarray(status))
