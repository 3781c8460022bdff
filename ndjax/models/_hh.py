"""Hodgkin-Huxley membrane: parameters, kinetics and vector field (SPEC section 1).

State ``y = [V, m, h, n]``. Classic units (mV, ms, uA/cm^2, mS/cm^2,
uF/cm^2) with rest shifted to 0 mV, or SI units (V, s, A/cm^2, S/cm^2,
F/cm^2) after :func:`hh_params` with ``si_units=True``.

    C dV/dt = -gNa m^3 h (V - ENa) - gK n^4 (V - EK) - gL (V - EL) + I_app
    dx/dt   = alpha_x(V) (1 - x) - beta_x(V) x,        x in m, h, n

Activation gates (m, n):   alpha = A (Vh - V) / (exp((Vh - V)/K) - 1),
                           beta  = bA exp((bVh - V)/bK)
Inactivation gate (h):     alpha = aA exp((aVh - V)/aK),
                           beta  = bA / (exp((bVh - V)/bK) + 1)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .._math import exprel, logistic
from ._kinetics import gate_derivative

__all__ = [
    "HHDefaults",
    "HH_DEFAULTS",
    "GateKinetics",
    "HHParams",
    "hh_gate_kinetics",
    "hh_params",
    "hh_rates",
    "hh_currents",
    "hh_vector_field",
    "HH_EXPONENTS",
    "HH_KINETICS",
]

#: Gate powers (p, q, r) of m, h, n in the sodium and potassium currents.
HH_EXPONENTS = (3, 1, 4)

#: SPEC section 1 table, per gate m, h, n: (aVh, aA, aK, bVh, bA, bK).
HH_KINETICS = {
    "m": (25.0, 0.1, 10.0, 0.0, 4.0, 18.0),
    "h": (0.0, 0.07, 20.0, 30.0, 1.0, 10.0),
    "n": (10.0, 0.01, 10.0, 0.0, 0.125, 80.0),
}


@dataclasses.dataclass(frozen=True)
class HHDefaults:
    """SPEC section 1's membrane, classic units with rest at 0 mV: the one source of these
    defaults (``hh_params``, ``HHModel``, the fit's target and the config schema read them)."""

    gna: float = 120.0  # mS/cm^2
    gk: float = 36.0  # mS/cm^2
    gl: float = 0.3  # mS/cm^2
    ena: float = 120.0  # mV
    ek: float = -12.0  # mV
    el: float = 10.6  # mV
    c: float = 1.0  # uF/cm^2


HH_DEFAULTS = HHDefaults()


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GateKinetics:
    """Six numbers per gate; every leaf has shape (3,), ordered m, h, n.

    m and n use the activation shapes, h the inactivation shapes (see the
    module docstring). Voltages (``*_vh``, ``*_k``) in the model's voltage
    unit, prefactors in 1/time, except the activation alpha prefactor
    ``a_a[m, n]``, in 1/(time voltage).
    """

    a_vh: jax.Array
    a_a: jax.Array
    a_k: jax.Array
    b_vh: jax.Array
    b_a: jax.Array
    b_k: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class HHParams:
    """Hodgkin-Huxley membrane, rest at 0 mV.

    Attributes:
        g: (3,) maximal conductances [Na, K, L].
        e_rev: (3,) reversal potentials [Na, K, L].
        gates: m, h, n kinetics.
        c_m: () membrane capacitance.
        i_scale: () factor on the applied current, ``scl_v * scl_t``.
    """

    g: jax.Array
    e_rev: jax.Array
    gates: GateKinetics
    c_m: jax.Array
    i_scale: jax.Array


def hh_gate_kinetics(**overrides: tuple[float, ...]) -> GateKinetics:
    """The SPEC kinetics table, with rows replaced by ``m=(aVh, aA, aK, bVh, bA, bK)`` etc."""
    unknown = set(overrides) - set(HH_KINETICS)
    if unknown:
        raise ValueError(f"unknown gate(s) {sorted(unknown)}; gates are 'm', 'h', 'n'")
    table = {**HH_KINETICS, **overrides}
    for name, row in table.items():
        if len(row) != 6:
            raise ValueError(f"gate {name!r} needs 6 numbers (aVh, aA, aK, bVh, bA, bK), got {len(row)}")
    cols = jnp.asarray([table["m"], table["h"], table["n"]], dtype=float).T
    return GateKinetics(*cols)


def hh_params(
    *,
    gna: float = HH_DEFAULTS.gna,
    gk: float = HH_DEFAULTS.gk,
    gl: float = HH_DEFAULTS.gl,
    ena: float = HH_DEFAULTS.ena,
    ek: float = HH_DEFAULTS.ek,
    el: float = HH_DEFAULTS.el,
    c: float = HH_DEFAULTS.c,
    scl_v: float = 1.0,
    scl_t: float = 1.0,
    si_units: bool = False,
    gates: GateKinetics | None = None,
) -> HHParams:
    """Build :class:`HHParams` in classic units, then scale and convert.

    Scaling (SPEC 1): every voltage (E's, Vh's, K's) times ``scl_v``;
    conductances and rate prefactors times ``scl_t``, except the activation
    alpha prefactor, times ``scl_t / scl_v``; the applied current enters as
    ``I_app * scl_v * scl_t``. A model scaled so reproduces the unscaled one
    with ``V -> V scl_v`` and ``t -> t / scl_t``.

    SI units: C x1e-6, g x1e-3, voltages x1e-3, rate prefactors x1e3, the
    activation alpha prefactor x1e6; time is then in seconds.

    Conversion happens at call time, so the dtype follows the caller's x64
    setting. No validation here (it is traceable); the checked entry points
    are :class:`ndjax.HHModel` and the ``ndjax run`` config.
    """
    gates = hh_gate_kinetics() if gates is None else gates
    act = jnp.asarray([1.0, 0.0, 1.0])  # activation alpha prefactors scale differently
    v_unit, g_unit, c_unit, rate_unit = (1e-3, 1e-3, 1e-6, 1e3) if si_units else (1.0, 1.0, 1.0, 1.0)
    a_a_scale = act * (scl_t / scl_v) * rate_unit / v_unit + (1 - act) * scl_t * rate_unit
    gates = GateKinetics(
        a_vh=gates.a_vh * scl_v * v_unit,
        a_a=gates.a_a * a_a_scale,
        a_k=gates.a_k * scl_v * v_unit,
        b_vh=gates.b_vh * scl_v * v_unit,
        b_a=gates.b_a * scl_t * rate_unit,
        b_k=gates.b_k * scl_v * v_unit,
    )
    return HHParams(
        g=jnp.asarray([gna, gk, gl], dtype=float) * scl_t * g_unit,
        e_rev=jnp.asarray([ena, ek, el], dtype=float) * scl_v * v_unit,
        gates=gates,
        c_m=jnp.asarray(c, dtype=float) * c_unit,
        i_scale=jnp.asarray(scl_v * scl_t, dtype=float),
    )


def _activation_alpha(v, vh, a, k):
    return a * k / exprel((vh - v) / k)  # A (Vh - V)/(exp((Vh - V)/K) - 1), limit A K


def _exp_rate(v, vh, a, k):
    return a * jnp.exp((vh - v) / k)


def _logistic_rate(v, vh, a, k):
    return a * logistic((v - vh) / k)  # A / (exp((Vh - V)/K) + 1)


def hh_rates(v: jax.Array, gates: GateKinetics) -> tuple[jax.Array, jax.Array]:
    """alpha and beta of m, h, n at voltage ``v`` (scalar): two arrays of shape (3,)."""
    g = gates
    alpha = jnp.stack(
        [
            _activation_alpha(v, g.a_vh[0], g.a_a[0], g.a_k[0]),
            _exp_rate(v, g.a_vh[1], g.a_a[1], g.a_k[1]),
            _activation_alpha(v, g.a_vh[2], g.a_a[2], g.a_k[2]),
        ]
    )
    beta = jnp.stack(
        [
            _exp_rate(v, g.b_vh[0], g.b_a[0], g.b_k[0]),
            _logistic_rate(v, g.b_vh[1], g.b_a[1], g.b_k[1]),
            _exp_rate(v, g.b_vh[2], g.b_a[2], g.b_k[2]),
        ]
    )
    return alpha, beta


def hh_currents(v: jax.Array, x: jax.Array, params: HHParams) -> jax.Array:
    """Ionic currents [I_Na, I_K, I_L], shape (3,), at voltage ``v`` and gates ``x = [m, h, n]``."""
    p, q, r = HH_EXPONENTS
    m, h, n = x[0], x[1], x[2]
    open_frac = jnp.stack([m**p * h**q, n**r, jnp.ones_like(m)])
    return params.g * open_frac * (v - params.e_rev)


def hh_vector_field(t: jax.Array, y: jax.Array, args) -> jax.Array:
    """d[V, m, h, n]/dt for ``args = (params: HHParams, stim)``; ``stim(t)`` is I_app."""
    params, stim = args
    v, x = y[0], y[1:]
    alpha, beta = hh_rates(v, params.gates)
    i_ion = jnp.sum(hh_currents(v, x, params))
    dv = (params.i_scale * stim(t) - i_ion) / params.c_m
    return jnp.concatenate([dv[None], gate_derivative(x, alpha, beta)])
