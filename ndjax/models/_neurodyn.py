"""NeuroDyn analog chip: constants, biases, words, mismatch and vector field (SPEC section 2).

SI units throughout (V, s, A, S, F). State ``y = [V, m, h, n]``.

    C_ND dV/dt = -I_Na - I_K - I_L + I_app
    I(g, dV)   = 2 g (V_T / kappa_lin) tanh(kappa_lin dV / (2 V_T))
    I_Na = I(gNa m^p h^q, V - ENa),  I_K = I(gK n^r, V - EK),  I_L = I(gL, V - EL)
    dx/dt      = alpha(V) (1 - x) - beta(V) x
    alpha      = I_alpha / (C_g V_T),   beta = I_beta / (C_g V_T)
    I_rate(V)  = sum_j I_b,j / (1 + exp(s kappa (V_b,j - V) / V_T))
    V_b,j      = V_ref + (j - 3) 2 (1.85 MOhm) I_voltage / 7,   j = 0..6

Words to physical values (``dg``, ``dErev``, ``dIb``):

    g   = dg (kappa_lin / V_T) (I_master / 1024)
    E   = dE (I_voltage / 1024) R_rev + V_ref
    I_b = dIb I_master / 1024

A chip (:class:`NDChip`) holds the words, the chip-wide biases and its
transistor mismatch; :func:`chip_params` turns it into the physical
:class:`NDParams` the vector field reads. Mismatch enters where words become
physical values, so new words keep the chip's mismatch.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from .._math import clip_ste, round_ste, safe_pow
from ._kinetics import gate_derivative, ladder_centres, sigmoid_ladder

__all__ = [
    "BiasDefaults",
    "BIAS_DEFAULTS",
    "word_units",
    "physical_to_words",
    "WORD_RANGES",
    "WORD_SHAPES",
    "check_words",
    "quantize_ste",
    "NDConstants",
    "NDBiases",
    "NDWords",
    "Mismatch",
    "NDChip",
    "NDParams",
    "nd_constants",
    "nd_biases",
    "nd_chip",
    "nominal_mismatch",
    "sample_mismatch",
    "chip_params",
    "sigmoid_centres",
    "nd_rates",
    "nd_currents",
    "nd_vector_field",
    "ND_EXPONENTS",
    "RATE_SIGNS",
    "DEFAULT_DG",
    "DEFAULT_DEREV",
    "DEFAULT_DIB",
]

#: Inclusive integer range of each word kind.
WORD_RANGES = {"dg": (0, 1023), "dErev": (-1023, 1023), "dIb": (0, 1023)}
#: Shape of each word kind: dIb is [gate m,h,n][alpha,beta][sigmoid].
WORD_SHAPES = {"dg": (3,), "dErev": (3,), "dIb": (3, 2, 7)}


def check_words(name: str, value, digital: bool = True) -> np.ndarray:
    """Validate one word array; return it as float64 NumPy.

    Args:
        name: ``"dg"``, ``"dErev"`` or ``"dIb"`` (used in messages).
        value: array-like of the word's shape.
        digital: if True the entries must be integers within ``WORD_RANGES``;
            if False they are physical values and only need to be finite
            (and non-negative for ``dg`` and ``dIb``).

    Raises:
        ValueError: wrong shape, non-finite, non-integer or out-of-range entries.
        TypeError: non-numeric input.
    """
    shape = WORD_SHAPES[name]
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be numeric with shape {shape}, got {value!r}") from err
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} must be finite; entry {tuple(int(i) for i in bad)} is {arr[tuple(bad)]}")
    if digital:
        lo, hi = WORD_RANGES[name]
        if np.any(arr != np.round(arr)):
            bad = np.argwhere(arr != np.round(arr))[0]
            raise ValueError(
                f"{name} must hold integer words; entry {tuple(int(i) for i in bad)} is "
                f"{arr[tuple(bad)]} (pass digital_values=False for physical values)"
            )
        if np.any((arr < lo) | (arr > hi)):
            bad = np.argwhere((arr < lo) | (arr > hi))[0]
            raise ValueError(
                f"{name} words must lie in {lo}..{hi}; entry {tuple(int(i) for i in bad)} is "
                f"{int(arr[tuple(bad)])}"
            )
    elif name != "dErev" and np.any(arr < 0):
        bad = np.argwhere(arr < 0)[0]
        raise ValueError(
            f"{name} physical values must be non-negative; entry {tuple(int(i) for i in bad)} is "
            f"{arr[tuple(bad)]}"
        )
    return arr


def quantize_ste(x: jax.Array, name: str) -> jax.Array:
    """Relaxed words -> integer-valued words in range (forward), identity (backward)."""
    lo, hi = WORD_RANGES[name]
    return round_ste(clip_ste(x, lo, hi))


#: Nominal gate powers (p, q, r).
ND_EXPONENTS = (3.0, 1.0, 4.0)
#: Sigmoid sign s per gate (m, h, n) and rate (alpha, beta): +1 rises with V.
RATE_SIGNS = ((1.0, -1.0), (-1.0, 1.0), (1.0, -1.0))
#: SPEC section 2 hand-tuned words (a working HH emulation).
DEFAULT_DG = (1023, 307, 3)
DEFAULT_DEREV = (829, -829, -545)
DEFAULT_DIB = (
    ((0, 1, 11, 23, 0, 0, 870), (190, 4, 6, 0, 0, 0, 0)),
    ((3, 0, 0, 0, 0, 0, 0), (0, 0, 6, 3, 0, 0, 0)),
    ((0, 0, 2, 2, 3, 0, 0), (15, 0, 0, 0, 0, 0, 0)),
)
#: Standard deviation of the gate-exponent jitter of a mismatched chip (p, q, r).
EXPONENT_SIGMA = (0.2, 0.1, 0.2)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NDConstants:
    """Physical constants of the chip (scalars, SI)."""

    c_base: jax.Array  # membrane capacitance before capacitance_scaling, F (4 pF)
    c_g: jax.Array  # gate capacitance, F (5 pF)
    kappa: jax.Array  # subthreshold slope (0.7)
    kappa_lin: jax.Array  # linearised-amplifier slope (0.2)
    v_t: jax.Array  # thermal voltage, V (26 mV)
    r_rev: jax.Array  # reversal resistor, Ohm (1.63 MOhm)
    r_centre: jax.Array  # resistor setting the sigmoid spacing, Ohm (1.85 MOhm)


@dataclasses.dataclass(frozen=True)
class BiasDefaults:
    """SPEC section 2's bias settings: the one source of these defaults (``nd_biases``,
    ``nd_chip``, ``NeuroDynModel`` and the config schema read them)."""

    v_ref: float = 0.9  # V
    i_voltage: float = 150e-9  # A
    i_master: float = 200e-9  # A
    i_ref: float = 100e-9  # A
    capacitance_scaling: float = 1.0


BIAS_DEFAULTS = BiasDefaults()


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NDBiases:
    """Chip-wide analog bias settings (scalars, SI)."""

    v_ref: jax.Array  # V (0.9)
    i_voltage: jax.Array  # A (150 nA)
    i_master: jax.Array  # A (200 nA)
    i_ref: jax.Array  # A (100 nA); no effect on the equations
    capacitance_scaling: jax.Array  # multiplies C_ND (1)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NDWords:
    """The programmable values of one neuron, as floats.

    Digital chips: integer-valued words (or relaxed reals during a fit)
    ``g`` = dg (3,) in 0..1023, ``e_rev`` = dErev (3,) in -1023..1023,
    ``i_b`` = dIb (3, 2, 7) in 0..1023, indexed [gate m,h,n][alpha,beta][sigmoid].
    Analog chips (``NDChip.digital=False``): ``g`` in S, ``e_rev`` = E - V_ref in V,
    ``i_b`` in A.
    """

    g: jax.Array
    e_rev: jax.Array
    i_b: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Mismatch:
    """Transistor mismatch of one chip: factors (ones when nominal) and exponent offsets.

    ``centres`` and ``kappa`` are optional sources beyond SPEC section 2 (None: absent, the
    default): an offset of each sigmoid's centre and a factor on each sigmoid's slope ``kappa``.
    With either, each of the 42 sigmoids has its own centre and slope, which costs six times the
    logistic evaluations of the shared ladder.
    """

    g: jax.Array  # (3,) factor on each maximal conductance
    e_rev: jax.Array  # (3,) factor on each reversal offset E - V_ref
    i_b: jax.Array  # (3, 2, 7) factor on each sigmoid weight
    exponents: jax.Array  # (3,) added to the powers (3, 1, 4)
    centres: jax.Array | None = None  # (3, 2, 7) offset of each sigmoid's centre, V
    kappa: jax.Array | None = None  # (3, 2, 7) factor on each sigmoid's kappa


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NDChip:
    """One NeuroDyn neuron as programmed: words, biases, mismatch, constants.

    ``digital`` (static) says whether ``words`` are DAC words or physical values.
    """

    words: NDWords
    biases: NDBiases
    mismatch: Mismatch
    consts: NDConstants
    digital: bool = dataclasses.field(default=True, metadata=dict(static=True))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NDParams:
    """Physical parameters the vector field reads (SI)."""

    g: jax.Array  # (3,) maximal conductances [Na, K, L], S
    e_rev: jax.Array  # (3,) reversal potentials, V
    i_b: jax.Array  # (3, 2, 7) sigmoid weights, A
    v_b: jax.Array  # (7,) sigmoid centres, V; (3, 2, 7) with centre mismatch
    exponents: jax.Array  # (3,) gate powers p, q, r
    c_m: jax.Array  # membrane capacitance, F
    c_g: jax.Array
    kappa: jax.Array  # scalar; (3, 2, 7) with kappa mismatch
    kappa_lin: jax.Array
    v_t: jax.Array


def nd_constants(
    *,
    c_base: float = 4e-12,
    c_g: float = 5e-12,
    kappa: float = 0.7,
    kappa_lin: float = 0.2,
    v_t: float = 0.026,
    r_rev: float = 1.63e6,
    r_centre: float = 1.85e6,
) -> NDConstants:
    """SPEC section 2 chip constants as arrays of the caller's default float dtype."""
    vals = (c_base, c_g, kappa, kappa_lin, v_t, r_rev, r_centre)
    return NDConstants(*(jnp.asarray(v, dtype=float) for v in vals))


def nd_biases(
    *,
    v_ref: float = BIAS_DEFAULTS.v_ref,
    i_voltage: float = BIAS_DEFAULTS.i_voltage,
    i_master: float = BIAS_DEFAULTS.i_master,
    i_ref: float = BIAS_DEFAULTS.i_ref,
    capacitance_scaling: float = BIAS_DEFAULTS.capacitance_scaling,
) -> NDBiases:
    """Chip-wide bias settings (SPEC defaults) as arrays."""
    vals = (v_ref, i_voltage, i_master, i_ref, capacitance_scaling)
    return NDBiases(*(jnp.asarray(v, dtype=float) for v in vals))


def nominal_mismatch() -> Mismatch:
    """The mismatch of an ideal chip: unit factors, zero exponent offsets."""
    return Mismatch(g=jnp.ones(3), e_rev=jnp.ones(3), i_b=jnp.ones((3, 2, 7)), exponents=jnp.zeros(3))


def sample_mismatch(
    key: jax.Array,
    sigma: ArrayLike = 0.15,
    exponent_sigma: ArrayLike = EXPONENT_SIGMA,
    *,
    centre_sigma: float | None = None,
    kappa_sigma: float | None = None,
) -> Mismatch:
    """Draw one chip's mismatch (SPEC section 2, optionally more).

    Every sigmoid weight, maximal conductance and reversal offset gets its own
    factor ``1 + sigma N(0, 1)``; the gate powers become ``(3, 1, 4) +
    exponent_sigma N(0, 1)`` (SPEC: 0.2, 0.1, 0.2, independent of ``sigma``).

    Args:
        key: a ``jax.random`` key; the same key gives the same chip.
        sigma: relative spread of the currents.
        exponent_sigma: (3,) spread of the exponents p, q, r.
        centre_sigma: beyond SPEC, off by default: each of the 42 sigmoid centres is offset by
            ``centre_sigma N(0, 1)`` volts (differential-pair offsets; about 0.015 V is physical).
        kappa_sigma: beyond SPEC, off by default: each sigmoid's ``kappa`` is multiplied by
            ``1 + kappa_sigma N(0, 1)``.

    ``centre_sigma`` and ``kappa_sigma`` are Python numbers (they decide the pytree's
    structure); None or 0 leaves the source out. Turning them on does not change the other
    draws of a key: a chip keeps its SPEC mismatch and gains the new sources.
    """
    k_g, k_e, k_b, k_x = jax.random.split(key, 4)
    dtype = jnp.result_type(float)
    extra = {}
    sources = (("centres", "centre_sigma", centre_sigma, 0.0), ("kappa", "kappa_sigma", kappa_sigma, 1.0))
    for tag, (field, arg, spread, base) in enumerate(sources):
        if spread is not None and not float(spread) >= 0:
            raise ValueError(f"{arg} must be >= 0 (or None), got {spread!r}")
        if spread:
            draw = jax.random.normal(jax.random.fold_in(key, 0xC0FFEE + tag), (3, 2, 7), dtype)
            extra[field] = base + float(spread) * draw
    return Mismatch(
        g=1 + sigma * jax.random.normal(k_g, (3,), dtype),
        e_rev=1 + sigma * jax.random.normal(k_e, (3,), dtype),
        i_b=1 + sigma * jax.random.normal(k_b, (3, 2, 7), dtype),
        exponents=jnp.asarray(exponent_sigma, dtype) * jax.random.normal(k_x, (3,), dtype),
        **extra,
    )


def physical_mismatch(mismatch: Mismatch, xp=np):
    """Whether each chip's mismatch keeps the physics: every factor (conductances, reversal
    offsets, sigmoid weights, slopes) > 0 and every gate power ``(3, 1, 4) + offset`` > 0.

    ``1 + sigma N(0, 1)`` factors go negative with probability ``Phi(-1/sigma)`` each: about 1e-11
    at sigma 0.15, 2% at 0.5, 16% at 1 (:func:`unphysical_fraction`).

    Args:
        mismatch: one chip's or a batch's (any leading shape).
        xp: ``numpy`` (host) or ``jax.numpy`` (traced).

    Returns:
        A bool array of the leading shape.
    """
    parts = [
        (mismatch.g, 1), (mismatch.e_rev, 1), (mismatch.i_b, 3),
        (xp.asarray(ND_EXPONENTS) + xp.asarray(mismatch.exponents), 1),
    ]  # fmt: skip
    if mismatch.kappa is not None:
        parts.append((mismatch.kappa, 3))
    ok = None
    for x, trailing in parts:
        x = xp.asarray(x)
        positive = xp.all(x > 0, axis=tuple(range(x.ndim - trailing, x.ndim)))
        ok = positive if ok is None else ok & positive
    return ok


def unphysical_fraction(sigma: float, exponent_sigma=EXPONENT_SIGMA, kappa_sigma: float = 0.0) -> float:
    """The expected fraction of chips with a factor <= 0 (:func:`physical_mismatch`) under
    :func:`sample_mismatch`: 48 factors ``1 + sigma N(0, 1)``, the three gate powers and, with
    ``kappa_sigma``, 42 slope factors ``1 + kappa_sigma N(0, 1)``."""
    from math import erfc, sqrt

    def below_zero(mean: float, spread: float) -> float:  # P(mean + spread N(0, 1) <= 0)
        return 0.0 if spread <= 0 else 0.5 * erfc(mean / (spread * sqrt(2.0)))

    p_ok = (1.0 - below_zero(1.0, float(sigma))) ** 48 * (1.0 - below_zero(1.0, float(kappa_sigma))) ** 42
    for power, spread in zip(ND_EXPONENTS, exponent_sigma, strict=True):
        p_ok *= 1.0 - below_zero(float(power), float(spread))
    return 1.0 - p_ok


def sigmoid_centres(biases: NDBiases, consts: NDConstants) -> jax.Array:
    """V_b,j = V_ref + (j - 3) 2 R I_voltage / 7, j = 0..6 (V), shape (7,) (:func:`ladder_centres`)."""
    return ladder_centres(biases.v_ref, biases.i_voltage, consts.r_centre)


def word_units(i_master, i_voltage, consts):
    """One LSB of each word kind in physical units (the DACs, SPEC 2): ``(g_unit, e_unit, i_unit)``.

        g   = dg (kappa_lin / V_T) (I_master / 1024)     S per LSB
        E   = dE (I_voltage / 1024) R_rev + V_ref        V per LSB (of E - V_ref)
        I_b = dIb I_master / 1024                        A per LSB

    Args:
        i_master, i_voltage: the biases (A); floats or arrays.
        consts: an :class:`NDConstants` (or anything with ``kappa_lin v_t r_rev``).
    """
    g_unit = (consts.kappa_lin / consts.v_t) * (i_master / 1024)
    return g_unit, (i_voltage / 1024) * consts.r_rev, i_master / 1024


def physical_to_words(g, e_offset, i_b, i_master, i_voltage, consts):
    """Physical values -> (unrounded) words, the inverse of :func:`word_units`' maps.

    Args:
        g: (3,) maximal conductances, S.
        e_offset: (3,) reversal offsets ``E - V_ref``, V.
        i_b: (3, 2, 7) sigmoid weights, A.
        i_master, i_voltage, consts: as :func:`word_units`.

    Returns:
        ``(dg, dErev, dIb)`` in LSBs, not rounded or clipped.
    """
    g_unit, e_unit, i_unit = word_units(i_master, i_voltage, consts)
    return g / g_unit, e_offset / e_unit, i_b / i_unit


def chip_params(chip: NDChip) -> NDParams:
    """Physical parameters of a chip: words through the DACs, times the mismatch.

    Differentiable in the (relaxed) words, the biases and the mismatch.
    """
    w, b, mm, c = chip.words, chip.biases, chip.mismatch, chip.consts
    g_unit, e_unit, i_unit = word_units(b.i_master, b.i_voltage, c) if chip.digital else (1.0, 1.0, 1.0)
    return NDParams(
        g=w.g * g_unit * mm.g,
        e_rev=w.e_rev * e_unit * mm.e_rev + b.v_ref,
        i_b=w.i_b * i_unit * mm.i_b,
        v_b=sigmoid_centres(b, c)
        if mm.centres is None
        else sigmoid_centres(b, c)[None, None, :] + mm.centres,
        exponents=jnp.asarray(ND_EXPONENTS, dtype=jnp.result_type(mm.exponents)) + mm.exponents,
        c_m=c.c_base * b.capacitance_scaling,
        c_g=c.c_g,
        kappa=c.kappa if mm.kappa is None else c.kappa * mm.kappa,
        kappa_lin=c.kappa_lin,
        v_t=c.v_t,
    )


def nd_rates(v: jax.Array, params: NDParams) -> tuple[jax.Array, jax.Array]:
    """alpha and beta (1/s) of m, h, n at voltage ``v`` (scalar): two arrays of shape (3,)."""
    if params.v_b.ndim == 1 and jnp.ndim(params.kappa) == 0:
        # one ladder (7,) serves the six rates
        rising = params.i_b @ sigmoid_ladder(v, params.v_b, 1.0, params.kappa, params.v_t)  # (3, 2)
        falling = params.i_b @ sigmoid_ladder(v, params.v_b, -1.0, params.kappa, params.v_t)
    else:  # each sigmoid its own centre or slope (optional mismatch): (3, 2, 7)
        v_b = jnp.broadcast_to(params.v_b, params.i_b.shape)
        rising = jnp.sum(params.i_b * sigmoid_ladder(v, v_b, 1.0, params.kappa, params.v_t), axis=-1)
        falling = jnp.sum(params.i_b * sigmoid_ladder(v, v_b, -1.0, params.kappa, params.v_t), axis=-1)
    signs = jnp.asarray(RATE_SIGNS, dtype=rising.dtype)
    rates = jnp.where(signs > 0, rising, falling) / (params.c_g * params.v_t)
    return rates[:, 0], rates[:, 1]


def nd_currents(v: jax.Array, x: jax.Array, params: NDParams) -> jax.Array:
    """Amplifier currents [I_Na, I_K, I_L] (A), shape (3,), at ``v`` and gates ``x = [m, h, n]``."""
    p, q, r = params.exponents[0], params.exponents[1], params.exponents[2]
    m, h, n = x[0], x[1], x[2]
    open_frac = jnp.stack([safe_pow(m, p) * safe_pow(h, q), safe_pow(n, r), jnp.ones_like(m)])
    half_lin = params.kappa_lin / (2 * params.v_t)
    return params.g * open_frac * jnp.tanh(half_lin * (v - params.e_rev)) / half_lin


def nd_vector_field(t: jax.Array, y: jax.Array, args) -> jax.Array:
    """d[V, m, h, n]/dt for ``args = (params: NDParams, stim)``; ``stim(t)`` is I_app in A."""
    params, stim = args
    v, x = y[0], y[1:]
    alpha, beta = nd_rates(v, params)
    i_ion = jnp.sum(nd_currents(v, x, params))
    dv = (stim(t) - i_ion) / params.c_m
    return jnp.concatenate([dv[None], gate_derivative(x, alpha, beta)])


def _positive_scalar(name: str, value, lo: float = 0.0, hi: float = float("inf")) -> float:
    arr = np.asarray(value, dtype=float)
    if arr.shape != () or not np.isfinite(arr) or not lo < arr <= hi:
        rng = f"({lo}, {hi}]" if hi != float("inf") else f"> {lo}"
        raise ValueError(f"{name} must be a finite scalar {rng}, got {value!r}")
    return float(arr)


def nd_chip(
    dg=DEFAULT_DG,
    de_rev=DEFAULT_DEREV,
    dib=DEFAULT_DIB,
    *,
    v_ref: float = BIAS_DEFAULTS.v_ref,
    i_voltage: float = BIAS_DEFAULTS.i_voltage,
    i_master: float = BIAS_DEFAULTS.i_master,
    i_ref: float = BIAS_DEFAULTS.i_ref,
    capacitance_scaling: float = BIAS_DEFAULTS.capacitance_scaling,
    digital: bool = True,
    mismatch: Mismatch | None = None,
    consts: NDConstants | None = None,
) -> NDChip:
    """Build a validated :class:`NDChip` (the checked entry point of the core).

    Args:
        dg: (3,) conductance words [Na, K, L], integers in 0..1023.
        de_rev: (3,) reversal words [Na, K, L], integers in -1023..1023.
        dib: (3, 2, 7) sigmoid-weight words [gate m,h,n][alpha,beta][j], 0..1023.
        v_ref, i_voltage, i_master, i_ref, capacitance_scaling: biases (SI).
        digital: False to pass physical values (g in S, E - V_ref in V, I_b in A).
        mismatch: the chip's mismatch (default: nominal).
        consts: chip constants (default: SPEC).

    Raises:
        ValueError: a word of the wrong shape, non-integer, out of range or
            non-finite; a bias that is not finite or out of its range.
    """
    words = NDWords(
        g=jnp.asarray(check_words("dg", dg, digital)),
        e_rev=jnp.asarray(check_words("dErev", de_rev, digital)),
        i_b=jnp.asarray(check_words("dIb", dib, digital)),
    )
    # V_ref lies within the chip's 0..1.8 V supply; currents are positive
    biases = nd_biases(
        v_ref=_positive_scalar("V_ref", v_ref, lo=-1e-300, hi=1.8),
        i_voltage=_positive_scalar("I_voltage", i_voltage),
        i_master=_positive_scalar("I_master", i_master),
        i_ref=_positive_scalar("I_ref", i_ref),
        capacitance_scaling=_positive_scalar("capacitance_scaling", capacitance_scaling),
    )
    return NDChip(
        words=words,
        biases=biases,
        mismatch=nominal_mismatch() if mismatch is None else mismatch,
        consts=nd_constants() if consts is None else consts,
        digital=bool(digital),
    )
