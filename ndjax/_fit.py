"""Fitting NeuroDyn to a conductance-based model: the classical pipeline (SPEC section 3).

1. For each gate, NNLS of seven sigmoid weights (1/s) to alpha(V) and to
   beta(V) over ``vrange``; the sigmoids share the chip's centres, placed
   around ``Vmean = (E_K + E_Na)/2`` instead of ``V_ref``. A gate is an
   activation gate when its alpha rises over ``vrange``.
2. Weights become currents ``I_b = w C_g V_T``.
3. One factor ``s`` makes the largest sigmoid current and the largest
   conductance current ``g / C_ratio * V_T / kappa_lin`` fit the DAC range
   ``I_max = 1023 I_master / 1024``; the chip then runs ``1/s`` times faster
   than the model (``scl_t``).
4. Words: ``dIb = round(I_b / s / (I_master/1024))``,
   ``dg = round(g / s / C_ratio / ((kappa_lin/V_T)(I_master/1024)))``,
   ``dE = round((E scl_v - Vmean) / ((I_voltage/1024) R_rev))``.

The functions here are host-side one-offs (NumPy in, NumPy out) around the
jit-able :func:`ndjax._nnls.nnls`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ._nnls import nnls, sigmoid_basis
from ._quantize import WORD_RANGES

__all__ = ["GateFit", "fit_gate", "fit_centres", "time_scale", "to_words", "ChipScales"]

#: SPEC 2 constants used by the fit (SI).
C_G, KAPPA, KAPPA_LIN, V_T, R_REV, R_CENTRE = 5e-12, 0.7, 0.2, 0.026, 1.63e6, 1.85e6
C_ND = 4e-12


class GateFit(NamedTuple):
    """NNLS fit of one gate: ``weights`` (2, 7) in 1/s for [alpha, beta], the
    sigmoid ``signs`` (2,), and the RMS errors (2,) of the fit relative to the
    largest value of the fitted rate over ``vrange`` (SPEC 3's table measure)."""

    weights: np.ndarray
    signs: np.ndarray
    rel_rms: np.ndarray


def fit_centres(v_mean: float, i_voltage: float) -> np.ndarray:
    """The chip's sigmoid centres with ``V_ref`` replaced by ``v_mean`` (V), shape (7,)."""
    return v_mean + (np.arange(7) - 3) * 2 * R_CENTRE * i_voltage / 7


def fit_gate(vrange: np.ndarray, alpha: np.ndarray, beta: np.ndarray, centres: np.ndarray) -> GateFit:
    """Non-negative sigmoid-sum fits of one gate's alpha and beta over ``vrange``."""
    activation = alpha[-1] > alpha[0]
    signs = np.array([1.0, -1.0]) if activation else np.array([-1.0, 1.0])
    weights, errors = [], []
    for target, sign in zip((alpha, beta), signs, strict=True):
        basis = np.asarray(sigmoid_basis(vrange, centres, float(sign), KAPPA, V_T))
        w, _ = nnls(basis, target)
        w = np.asarray(w)
        weights.append(w)
        errors.append(np.sqrt(np.mean((basis @ w - target) ** 2)) / np.max(np.abs(target)))
    return GateFit(np.stack(weights), signs, np.asarray(errors))


def sigmoid_sum(v: np.ndarray, weights: np.ndarray, centres: np.ndarray, sign: float) -> np.ndarray:
    """sum_j w_j / (1 + exp(sign kappa (V_b,j - V)/V_T)) at voltages ``v``."""
    v = np.asarray(v, dtype=float)
    return np.asarray(sigmoid_basis(v.ravel(), centres, sign, KAPPA, V_T)).dot(weights).reshape(v.shape)


class ChipScales(NamedTuple):
    """How a model maps onto the chip: time factor ``s`` (``scl_t = 1/s``) and
    the capacitance ratio ``C_HH / C_ND``."""

    s: float
    c_ratio: float


def time_scale(i_b: np.ndarray, g: np.ndarray, c_ratio: float, i_master: float) -> float:
    """The factor ``s`` that brings the largest current to ``1023 I_master / 1024``."""
    i_max = 1023 * i_master / 1024
    i_g = np.max(np.asarray(g)) / c_ratio * V_T / KAPPA_LIN
    return float(max(np.max(i_b), i_g) / i_max)


def to_words(name: str, analog: np.ndarray, warn: Callable[[str], None] | None = None) -> np.ndarray:
    """Round analog words to integers and clip them to the DAC range, warning
    with the names and values of the clipped entries."""
    lo, hi = WORD_RANGES[name]
    words = np.round(np.asarray(analog, dtype=float))
    out = (words < lo) | (words > hi)
    if np.any(out):
        where = ", ".join(f"{name}{list(map(int, i))}={int(words[tuple(i)])}" for i in np.argwhere(out))
        msg = f"{name} words out of range {lo}..{hi} were clipped: {where}"
        (warn or (lambda m: warnings.warn(m, stacklevel=3)))(msg)
    return np.clip(words, lo, hi).astype(int)
