"""The classical fit of NeuroDyn to a conductance-based model (SPEC 3), and its exact NNLS.

1. For each gate, NNLS of seven sigmoid weights (1/s) to alpha(V) and to
   beta(V) over ``vrange``; the sigmoids share the chip's centres, placed
   around ``Vmean = (E_K + E_Na)/2`` instead of ``V_ref``. A gate is an
   activation gate when its alpha rises over ``vrange``.
2. Weights become currents ``I_b = w C_g V_T``.
3. One factor ``s`` makes the largest sigmoid current and the largest
   conductance current ``g / C_ratio * V_T / kappa_lin`` fit the DAC range
   ``I_max = 1023 I_master / 1024``; the chip then runs ``1/s`` times faster
   than the model (``scl_t``).
4. Words: physical values over one LSB (:func:`ndjax.models.physical_to_words`),
   rounded and clipped (:func:`to_words`).

The functions here are host-side one-offs (NumPy in, NumPy out) around the
jit-able :func:`nnls`. Chip constants come from an :class:`~ndjax.NDConstants`
(SPEC's by default), read in float64 whatever the caller's dtype setting.

The exact NNLS:

With n unknowns (7 sigmoid weights here) every one of the 2^n passive sets
can be tried: for each, the unconstrained least-squares solution on those
columns; the NNLS optimum is the feasible (non-negative) candidate with the
smallest residual. (The optimum is the least-squares solution on its own
passive set, so it is among the candidates, and every feasible candidate is
a point of the NNLS problem, so none beats it.) 128 small SVD solves, in one
``vmap``: exact, jit-able, and no iteration to converge.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ..models._kinetics import ladder_centres, sigmoid_basis
from ..models._neurodyn import WORD_RANGES, NDConstants, nd_constants

__all__ = [
    "nnls",
    "host_constants",
    "GateFit",
    "fit_gate",
    "ClassicalFit",
    "classical_fit",
    "fit_centres",
    "time_scale",
    "analog_ib",
    "analog_g",
    "analog_e",
    "chip_current",
    "to_words",
]

#: Largest number of unknowns the exhaustive method accepts (2^n solves).
MAX_UNKNOWNS = 12


def _masks(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def nnls(a: ArrayLike, b: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Solve ``min ||a x - b||_2`` subject to ``x >= 0``, exactly.

    Args:
        a: (m, n) design matrix, ``n <= 12``.
        b: (m,) target.

    Returns:
        ``(x, residual_norm)``: (n,) non-negative solution and ``||a x - b||``.
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.ndim != 2 or b.shape != a.shape[:1]:
        raise ValueError(f"nnls needs a of shape (m, n) and b of shape (m,), got {a.shape} and {b.shape}")
    n = a.shape[1]
    if n > MAX_UNKNOWNS:
        raise ValueError(f"exhaustive nnls is for at most {MAX_UNKNOWNS} unknowns, got {n}")
    return _nnls(a, b, jnp.asarray(_masks(n), dtype=a.dtype))


@jax.jit
def _nnls(a, b, masks):
    scale = jnp.maximum(jnp.linalg.norm(a, axis=0), jnp.finfo(a.dtype).tiny)
    a_scaled = a / scale[None, :]  # equilibrate columns: the weights span orders of magnitude

    def candidate(mask):
        x = jnp.linalg.lstsq(a_scaled * mask[None, :], b)[0] * mask  # zero columns get zero weight
        return x, jnp.linalg.norm(a_scaled @ x - b)

    xs, res = jax.vmap(candidate)(masks)
    tol = 1e-12 * jnp.max(jnp.abs(xs))
    feasible = jnp.all(xs >= -tol, axis=1)
    best = jnp.argmin(jnp.where(feasible, res, jnp.inf))  # the empty set is always feasible
    x = jnp.maximum(xs[best], 0.0) / scale
    return x, jnp.linalg.norm(a @ x - b)


#: HH membrane capacitance density of the classic model, F/cm^2 (1 uF/cm^2, SPEC 1).
C_HH = 1e-6


def host_constants(consts: NDConstants | None = None) -> NDConstants:
    """Chip constants with Python-float leaves (read in float64), SPEC's by default."""
    if consts is None:
        return _spec_constants()
    with jax.enable_x64(True):
        return NDConstants(**{f.name: float(getattr(consts, f.name)) for f in dataclasses.fields(consts)})


@functools.cache
def _spec_constants() -> NDConstants:
    with jax.enable_x64(True):
        return host_constants(nd_constants())


class GateFit(NamedTuple):
    """NNLS fit of one gate: ``weights`` (2, 7) in 1/s for [alpha, beta], the
    sigmoid ``signs`` (2,), and the RMS errors (2,) of the fit relative to the
    largest value of the fitted rate over ``vrange`` (SPEC 3's table measure)."""

    weights: np.ndarray
    signs: np.ndarray
    rel_rms: np.ndarray


def fit_centres(v_mean: float, i_voltage: float, consts: NDConstants | None = None) -> np.ndarray:
    """The chip's sigmoid centres with ``V_ref`` replaced by ``v_mean`` (V), shape (7,):
    ``v_mean + (j - 3) 2 R_centre I_voltage / 7``."""
    c = consts or host_constants()
    return ladder_centres(v_mean, i_voltage, c.r_centre, np)


def fit_gate(
    vrange: np.ndarray, alpha: np.ndarray, beta: np.ndarray, centres: np.ndarray,
    consts: NDConstants | None = None,
) -> GateFit:  # fmt: skip
    """Non-negative sigmoid-sum fits of one gate's ``alpha`` and ``beta`` (1/s) over ``vrange`` (V)."""
    c = consts or host_constants()
    activation = alpha[-1] > alpha[0]
    signs = np.array([1.0, -1.0]) if activation else np.array([-1.0, 1.0])
    weights, errors = [], []
    for target, sign in zip((alpha, beta), signs, strict=True):
        basis = np.asarray(sigmoid_basis(vrange, centres, float(sign), c.kappa, c.v_t))
        w, _ = nnls(basis, target)
        w = np.asarray(w)
        weights.append(w)
        errors.append(np.sqrt(np.mean((basis @ w - target) ** 2)) / np.max(np.abs(target)))
    return GateFit(np.stack(weights), signs, np.asarray(errors))


class ClassicalFit(NamedTuple):
    """The classical fit of a model's gates (SPEC 3 steps 1-3).

    Attributes:
        fits: one :class:`GateFit` per gate.
        weights: (G, 2, 7) sigmoid weights, 1/s, ``[gate][alpha, beta][j]``.
        s: the time factor; the chip runs ``scl_t = 1/s`` times faster than the model.
    """

    fits: list[GateFit]
    weights: np.ndarray
    s: float


def classical_fit(
    vrange: np.ndarray,
    alphas: np.ndarray,
    betas: np.ndarray,
    centres: np.ndarray,
    g: np.ndarray,
    c_ratio: float,
    i_master: float,
    consts: NDConstants | None = None,
) -> ClassicalFit:
    """NNLS sigmoid weights for every gate, then the time factor that fits the DACs.

    Args:
        vrange: (T,) fit voltages, V.
        alphas, betas: (G, T) each gate's rates over ``vrange``, 1/s.
        centres: (7,) sigmoid centres (:func:`fit_centres`), V.
        g: the model's maximal conductances (S/cm^2).
        c_ratio: ``C_HH / C_ND``.
        i_master: the chip's I_master (A).
    """
    c = consts or host_constants()
    fits = [fit_gate(vrange, a, b, centres, c) for a, b in zip(alphas, betas, strict=True)]
    weights = np.stack([f.weights for f in fits])
    return ClassicalFit(fits, weights, time_scale(weights * c.c_g * c.v_t, g, c_ratio, i_master, c))


def time_scale(
    i_b: np.ndarray, g: np.ndarray, c_ratio: float, i_master: float, consts: NDConstants | None = None
) -> float:
    """The factor ``s`` that brings the largest current to ``1023 I_master / 1024``.

    Args:
        i_b: sigmoid currents ``w C_g V_T`` (A), any shape.
        g: the model's maximal conductances (S/cm^2).
        c_ratio: ``C_HH / C_ND``.
        i_master: the chip's I_master (A).
    """
    c = consts or host_constants()
    i_max = 1023 * i_master / 1024
    i_g = np.max(np.asarray(g)) / c_ratio * c.v_t / c.kappa_lin
    return float(max(np.max(i_b), i_g) / i_max)


def analog_ib(weights, s: float, consts: NDConstants | None = None) -> np.ndarray:
    """Sigmoid currents ``I_b = w C_g V_T / s`` (A) of weights ``w`` (1/s), time-scaled by ``s``."""
    c = consts or host_constants()
    return np.asarray(weights, dtype=float) * c.c_g * c.v_t / s


def analog_g(g, s: float, c_ratio: float) -> np.ndarray:
    """Chip conductances ``g / s / C_ratio`` (S) of model conductances ``g`` (S/cm^2)."""
    return np.asarray(g, dtype=float) / s / c_ratio


def analog_e(e, scl_v: float, v_mean: float) -> np.ndarray:
    """Reversal offsets from ``V_ref``: ``E scl_v - V_mean`` (V) of unscaled SI reversals ``E``."""
    return np.asarray(e, dtype=float) * scl_v - v_mean


def chip_current(i_hh, scl_v: float, scl_t: float, c_base: float, capacitance_scaling: float,
                 c_hh: float = C_HH):  # fmt: skip
    """The chip current (A) that stands for an HH current density ``i_hh`` (A/cm^2).

    ``I_chip = I_HH scl_v scl_t C_ND / C_HH`` with ``C_ND = c_base capacitance_scaling``: the
    chip's membrane (F) runs ``scl_t`` times faster than the HH membrane (``C_HH``, F/cm^2) on a
    voltage axis ``scl_v`` times wider. Works on floats and arrays alike.
    """
    return i_hh * scl_v * scl_t * c_base * capacitance_scaling / c_hh


def to_words(name: str, analog: np.ndarray, warn: Callable[[str], None] | None = None) -> np.ndarray:
    """Round analog words (in LSBs) to integers and clip them to the DAC range, warning
    with the names and values of the clipped entries."""
    lo, hi = WORD_RANGES[name]
    words = np.round(np.asarray(analog, dtype=float))
    out = (words < lo) | (words > hi)
    if np.any(out):
        where = ", ".join(f"{name}{list(map(int, i))}={int(words[tuple(i)])}" for i in np.argwhere(out))
        msg = f"{name} words out of range {lo}..{hi} were clipped: {where}"
        (warn or (lambda m: warnings.warn(m, stacklevel=3)))(msg)
    return np.clip(words, lo, hi).astype(int)
