"""The mapping of a Hodgkin-Huxley model onto a NeuroDyn chip (SPEC 3), and its classical words.

A :class:`Target` says how the chip stands for the HH model: the chip with words ``w`` fed
``I0 scl_v scl_t C_ND / C_HH`` (A) should reproduce ``HHModel(scl_v=scl_v, scl_t=scl_t,
SI_units=True)`` fed ``I0`` (A/cm^2) on the same time axis, with ``V_chip = V_HH + V_ref - V_mean``.
:func:`make_target` builds it with the classical fit (NNLS, time scale: :mod:`._classical`) and
returns the analog NNLS words the end-to-end fit starts from; :func:`make_targets` gives the
candidates the calibration screens; :func:`target_from_words` reads one back from a words file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from .._simulate import HH, rates_over
from ..models._hh import HHParams, hh_params
from ..models._neurodyn import NDChip, NDWords, nd_biases, nd_constants, nominal_mismatch, word_units
from ._classical import (
    analog_e,
    analog_g,
    analog_ib,
    chip_current,
    classical_fit,
    fit_centres,
    host_constants,
)

__all__ = [
    "Target",
    "make_target",
    "make_targets",
    "auto_i_voltage",
    "target_from_words",
    "I_VOLTAGE_SEARCH",
]


@dataclasses.dataclass(frozen=True)
class Target:
    """How an HH model maps onto a chip (host-side description, SPEC 3).

    Attributes:
        hh: HH parameters in classic units (``gna gk gl`` mS/cm^2, ``ena ek el`` mV, rest at 0),
            before scaling.
        scl_v: voltage scale of the target (HH volts -> chip volts).
        scl_t: how many times faster than the SI HH model the chip runs.
        capacitance_scaling: the chip's membrane capacitor, a fraction of ``C_base``.
        i_voltage, i_master: the chip's bias currents (A).
        v_ref: the chip's reference voltage (V).
        v_mean: ``(E_K + E_Na)/2`` of the scaled SI model (V); it sits at ``v_ref`` on the chip.
    """

    hh: dict
    scl_v: float
    scl_t: float
    capacitance_scaling: float
    i_voltage: float
    i_master: float
    v_ref: float
    v_mean: float

    def hh_params(self) -> HHParams:
        """The target on the chip's time axis: SI, scaled by ``scl_v`` and ``scl_t``."""
        return hh_params(**self.hh, scl_v=self.scl_v, scl_t=self.scl_t, si_units=True)

    @property
    def v_shift(self) -> float:
        """``V_chip - V_HH = v_ref - v_mean`` (V)."""
        return self.v_ref - self.v_mean

    def chip_current(self, i0):
        """Chip current (A) for HH current densities ``i0`` (A/cm^2; a float or an array of any
        shape): ``I_chip = I0 scl_v scl_t C_ND / C_HH`` (:func:`ndjax.fit.chip_current`)."""
        return chip_current(i0, self.scl_v, self.scl_t, host_constants().c_base, self.capacitance_scaling)

    @property
    def threshold(self) -> float:
        """HH spike threshold (V, SI, rest at 0): 60 mV scaled by ``scl_v``."""
        return 0.06 * self.scl_v

    @property
    def hysteresis(self) -> float:
        """Re-arm distance below :attr:`threshold` (V): 20 mV scaled by ``scl_v``."""
        return 0.02 * self.scl_v

    def chip(self, words: NDWords) -> NDChip:
        """A nominal chip with these (float) words and the target's biases."""
        biases = nd_biases(v_ref=self.v_ref, i_voltage=self.i_voltage, i_master=self.i_master,
                           capacitance_scaling=self.capacitance_scaling)  # fmt: skip
        return NDChip(words, biases, nominal_mismatch(), nd_constants(), digital=True)


def auto_i_voltage(scl_v: float) -> float:
    """``I_voltage`` (A) for a target's voltage scale: 200 nA (the guide's) at ``scl_v = 3``, in
    proportion to ``scl_v`` (the reversal words and the sigmoid centres then span the same
    voltage range on the chip), clipped to the chip's 50-400 nA.

    Why proportional: "Why the defaults" in ``experiments/FIT_RESULTS.md``.
    """
    return float(np.clip(200e-9 * scl_v / 3.0, 50e-9, 400e-9))


def make_target(
    *,
    gna: float = 120.0,
    gk: float = 36.0,
    gl: float = 0.3,
    ena: float = 120.0,
    ek: float = -12.0,
    el: float = 10.6,
    scl_v: float = 3.0,
    capacitance_scaling: float = 0.03,
    i_voltage: float | str = "auto",
    i_master: float = 150e-9,
    v_ref: float = 0.9,
    speedup: float | None = None,
) -> tuple[Target, NDWords]:
    """The classical fit (FitND) of an HH model, as a :class:`Target` and analog words.

    The gates' rates over ``E_K .. E_Na/2`` are fitted by non-negative sums of the chip's seven
    sigmoids (exact NNLS), the time factor ``s`` brings the largest current to the DAC's full
    scale, and the words are ``dg = g_SI / s / C_ratio``, ``dE = E scl_v - V_mean`` and
    ``dIb = w C_g V_T / s``, each over its LSB (SPEC 3), times ``speedup`` for the rate and
    conductance words (the chip then runs ``speedup / s`` times faster than the SI model).

    Args:
        gna, gk, gl: maximal conductances, mS/cm^2 (classic units).
        ena, ek, el: reversal potentials, mV, rest at 0.
        scl_v: voltage scale.
        capacitance_scaling: the chip's capacitor, a fraction of ``C_base``. With the
            conductance words at full scale, a smaller capacitor makes the chip proportionally
            faster and every rate word gains LSBs, until the largest rate words clip at 1023
            (measured per value: "Why the defaults" in ``experiments/FIT_RESULTS.md``).
        i_voltage: A, or ``"auto"``: :func:`auto_i_voltage` of ``scl_v``.
        i_master: A.
        v_ref: the chip's reference voltage, V.
        speedup: run the chip this many times faster than FitND's time scale (rate and
            conductance words grow by it). ``None``: the factor that brings the largest
            conductance word to 1023; FitND's time scale also fits the largest sigmoid weight,
            which below ``scl_v = 3`` is the limit and leaves the conductance words with few
            LSBs, while the largest weights describe rates where their gate is saturated anyway
            (they are clipped to 1023 here, and the fit reshapes them).

    Returns:
        ``(target, words)``: the mapping and the unrounded NNLS words (floats, clipped to the
        word ranges; ``g`` (3,), ``e_rev`` (3,), ``i_b`` (3, 2, 7), in LSBs).

    Raises:
        ValueError: ``i_voltage`` is a string other than ``"auto"``.
    """
    if isinstance(i_voltage, str):
        if i_voltage != "auto":
            raise ValueError(
                f"make_target: i_voltage must be a current in A or 'auto', got {i_voltage!r}"
                + (" ('search' gives several targets: make_targets)" if i_voltage == "search" else "")
            )
        i_voltage = auto_i_voltage(scl_v)
    consts = host_constants()
    with jax.enable_x64(True):  # a host-side one-off in float64, like the guide's FitND
        hh = hh_params(gna=gna, gk=gk, gl=gl, ena=ena, ek=ek, el=el, scl_v=scl_v, si_units=True)
        ena_si, ek_si = float(hh.e_rev[0]), float(hh.e_rev[1])
        v_mean = (ek_si + ena_si) / 2
        vrange = np.arange(ek_si, ena_si / 2, 5e-4).T
        alpha, beta = (np.asarray(r).T for r in rates_over(HH, hh, jnp.asarray(vrange)))
        c_ratio = float(hh.c_m) / (consts.c_base * capacitance_scaling)
        centres = fit_centres(v_mean, i_voltage, consts)
        g_model = np.array([float(x) for x in hh.g])
        fit = classical_fit(vrange, alpha, beta, centres, g_model, c_ratio, i_master, consts)
    g_unit, e_unit, i_unit = word_units(i_master, i_voltage, consts)
    g_si = np.array([gna, gk, gl]) * 1e-3
    e_si = np.array([ena, ek, el]) * 1e-3
    if speedup is None:
        speedup = 1023.0 / float(np.max(analog_g(g_si, fit.s, c_ratio) / g_unit))
    dib = analog_ib(fit.weights, fit.s, consts) * speedup / i_unit
    dg = analog_g(g_si, fit.s, c_ratio) * speedup / g_unit
    de = analog_e(e_si, scl_v, v_mean) / e_unit
    target = Target(
        hh=dict(gna=gna, gk=gk, gl=gl, ena=ena, ek=ek, el=el), scl_v=float(scl_v),
        scl_t=float(speedup * (1.0 / fit.s)), capacitance_scaling=float(capacitance_scaling),
        i_voltage=float(i_voltage), i_master=float(i_master), v_ref=float(v_ref), v_mean=float(v_mean),
    )  # fmt: skip
    words = NDWords(
        g=jnp.clip(jnp.asarray(dg), 0, 1023),
        e_rev=jnp.clip(jnp.asarray(de), -1023, 1023),
        i_b=jnp.clip(jnp.asarray(dib), 0, 1023),
    )
    return target, words


#: ``i_voltage="search"``: these multiples of :func:`auto_i_voltage` are screened by the calibration.
I_VOLTAGE_SEARCH = (1.0, 0.75)


def make_targets(
    speedup: float | str = "conductance", i_voltage: float | str = "search", **kwargs
) -> list[tuple[Target, NDWords]]:
    """Candidates for :func:`ndjax.fit.fit_words` (the first, plus ``alternatives``).

    Args:
        speedup: ``"conductance"`` (the default): the time scale with the largest conductance
            word at 1023; ``"auto"``: FitND's own time scale and that one (one pair if they
            coincide to 1%); a number: that one (as :func:`make_target`).
        i_voltage: ``"search"`` (the default): each of those at :func:`auto_i_voltage` and at
            3/4 of it (:data:`I_VOLTAGE_SEARCH`, clipped to 50-400 nA), highest first, which the
            calibration screens (``CalibrateSettings.screen``); ``"auto"`` or a current in A: one.
        **kwargs: the other arguments of :func:`make_target`.

    Returns:
        ``[(target, words0), ...]`` as :func:`make_target` returns them.
    """
    if isinstance(i_voltage, str) and i_voltage == "search":
        base = auto_i_voltage(kwargs.get("scl_v", 3.0))
        values = sorted({float(np.clip(base * f, 50e-9, 400e-9)) for f in I_VOLTAGE_SEARCH}, reverse=True)
        return [p for v in values for p in make_targets(speedup=speedup, i_voltage=v, **kwargs)]
    kwargs["i_voltage"] = i_voltage
    if speedup == "conductance":
        return [make_target(speedup=None, **kwargs)]
    if speedup != "auto":
        return [make_target(speedup=float(speedup), **kwargs)]
    pairs = [make_target(speedup=1.0, **kwargs), make_target(speedup=None, **kwargs)]
    if abs(pairs[1][0].scl_t / pairs[0][0].scl_t - 1) < 0.01:
        pairs = pairs[:1]
    return pairs


#: Keys of a words mapping (:func:`ndjax.load_words`) that a :class:`Target` is read from.
_WORDS_KEYS = ("hh", "scl_v", "scl_t", "capacitance_scaling", "I_voltage", "I_master", "V_ref", "V_mean")


def target_from_words(words: Mapping) -> Target:
    """The :class:`Target` a fit saved in a words file (the mapping :func:`ndjax.load_words` returns).

    Args:
        words: with keys ``hh`` (``gna gk gl ena ek el``, classic units), ``scl_v``, ``scl_t``,
            ``capacitance_scaling``, ``I_voltage`` (A), ``I_master`` (A), ``V_ref`` (V) and
            ``V_mean`` (V), as ``ndjax run``'s fit writes them.

    Raises:
        KeyError: a key is missing (a words file written without an HH target); the message
            names every missing key.
    """
    missing = [k for k in _WORDS_KEYS if k not in words]
    if missing:
        raise KeyError(f"target_from_words: the words have no {', '.join(missing)} (no HH target saved)")
    return Target(
        hh=dict(words["hh"]), scl_v=words["scl_v"], scl_t=words["scl_t"],
        capacitance_scaling=words["capacitance_scaling"], i_voltage=words["I_voltage"],
        i_master=words["I_master"], v_ref=words["V_ref"], v_mean=words["V_mean"],
    )  # fmt: skip
