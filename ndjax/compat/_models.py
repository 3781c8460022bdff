"""The guide's NumPy-style classes: ``HHModel`` and ``NeuroDynModel``.

Thin shells over the functional core: each object holds one immutable
parameter pytree and swaps it whole when changed; every equation lives in
``ndjax._hh`` / ``ndjax._neurodyn`` and every solve in ``ndjax.simulate``.

Precision: every method runs inside ``jax.enable_x64(True)`` (a scoped
context, not a global switch), so results are float64 like the NumPy
original, and importing these classes changes nothing in the caller's JAX
configuration.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._simulate import (
    DEFAULT_ATOL,
    DEFAULT_MAX_STEPS,
    DEFAULT_RTOL,
    HH,
    NEURODYN,
    Model,
    check_trace,
    currents_over,
    default_controller,
    rates_over,
    simulate,
    vclamp,
)
from ..models._hh import HH_DEFAULTS, HHParams, hh_gate_kinetics, hh_params
from ..models._kinetics import steady_state, time_constant
from ..models._neurodyn import (
    BIAS_DEFAULTS,
    DEFAULT_DEREV,
    DEFAULT_DG,
    DEFAULT_DIB,
    NDChip,
    NDParams,
    check_words,
    chip_params,
    nd_chip,
    sample_mismatch,
    sigmoid_centres,
)

__all__ = ["HHModel", "NeuroDynModel", "Gate", "SimulationResult", "ClampResult"]

#: Save points of ``simulate``/``vclamp`` when no ``t_eval`` is given.
DEFAULT_N_POINTS = 4001


def _x64(method: Callable) -> Callable:
    """Run a method with float64 enabled (scoped)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True):
            return method(*args, **kwargs)

    return wrapper


@dataclasses.dataclass(frozen=True)
class SimulationResult:
    """Like ``scipy.integrate.solve_ivp``'s result.

    Attributes:
        t: (T,) times.
        y: (4, T) states ``[V, m, h, n]``.
        success: True (a failed solve raises instead).
        message: a short description.
        n_steps: accepted solver steps.
    """

    t: np.ndarray
    y: np.ndarray
    success: bool
    message: str
    n_steps: int


@dataclasses.dataclass(frozen=True)
class ClampResult:
    """Voltage-clamp result.

    Attributes:
        t: (T,) times.
        V: (T,) the clamp voltage.
        y: (3, T) gates ``[m, h, n]``.
        I: (3, T) ionic currents ``[I_Na, I_K, I_L]`` from those gates.
        n_steps: accepted solver steps.
    """

    t: np.ndarray
    V: np.ndarray
    y: np.ndarray
    I: np.ndarray  # noqa: E741 - the guide's name for a current
    n_steps: int

    @property
    def Ina(self) -> np.ndarray:
        return self.I[0]

    @property
    def Ik(self) -> np.ndarray:
        return self.I[1]

    @property
    def Il(self) -> np.ndarray:
        return self.I[2]


class Gate:
    """One gating variable of a model: ``alpha``, ``beta``, ``inf``, ``tau`` of ``V``.

    Each accepts a number or an array of voltages (any shape) and returns
    NumPy arrays of the same shape, in the model's units.
    """

    def __init__(self, model: _Base, index: int, name: str):
        self._model, self._index, self.name = model, index, name

    @_x64
    def _rates(self, v):
        v = np.asarray(v, dtype=float)
        alpha, beta = rates_over(self._model._core, self._model.params, jnp.asarray(v.ravel()))
        i = self._index
        return np.asarray(alpha[:, i]).reshape(v.shape), np.asarray(beta[:, i]).reshape(v.shape)

    def alpha(self, V):
        """Opening rate alpha(V)."""
        return self._rates(V)[0]

    def beta(self, V):
        """Closing rate beta(V)."""
        return self._rates(V)[1]

    def inf(self, V):
        """Steady state alpha / (alpha + beta)."""
        a, b = self._rates(V)
        return steady_state(a, b)

    def tau(self, V):
        """Time constant 1 / (alpha + beta)."""
        a, b = self._rates(V)
        return time_constant(a, b)

    def __repr__(self):
        return f"Gate({self.name!r} of {type(self._model).__name__})"


def _span(trange) -> tuple[float, float]:
    try:
        t0, t1 = (float(t) for t in trange)
    except (TypeError, ValueError) as err:
        raise ValueError(f"trange must be a pair (t0, t1) of numbers, got {trange!r}") from err
    return t0, t1


def _save_times(t0, t1, t_eval, n_points):
    if t_eval is not None:
        return np.asarray(t_eval, dtype=float)
    if not isinstance(n_points, int | np.integer) or n_points < 2:
        raise ValueError(f"n_points must be an integer >= 2, got {n_points!r}")
    return np.linspace(t0, t1, int(n_points)) if t1 > t0 else np.asarray([t0, t1])


class _Base:
    """What HHModel and NeuroDynModel share: gates, currents, simulate, vclamp."""

    _core: Model
    params: Any
    _state_unit: str

    def __init__(self):
        self.m = Gate(self, 0, "m")
        self.h = Gate(self, 1, "h")
        self.n = Gate(self, 2, "n")

    @_x64
    def _currents(self, V, m, h, n):
        arrays = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (V, m, h, n)))
        shape = arrays[0].shape
        v = jnp.asarray(arrays[0].ravel())
        x = jnp.stack([jnp.asarray(a.ravel()) for a in arrays[1:]], axis=1)
        out = np.asarray(currents_over(self._core, self.params, v, x))
        return out.T.reshape((3, *shape))

    def Ina(self, V, m, h):
        """Sodium current at V with gates m, h (broadcast)."""
        return self._currents(V, m, h, 0.0)[0]

    def Ik(self, V, n):
        """Potassium current at V with gate n (broadcast)."""
        return self._currents(V, 0.0, 0.0, n)[1]

    def Il(self, V):
        """Leak current at V."""
        return self._currents(V, 0.0, 0.0, 0.0)[2]

    def i_int(self, V, m, h, n):
        """Total internal (ionic) current I_Na + I_K + I_L."""
        return self._currents(V, m, h, n).sum(axis=0)

    @_x64
    def simulate(
        self,
        trange,
        x0,
        Iapp,
        *,
        t_eval=None,
        n_points: int = DEFAULT_N_POINTS,
        rtol: float = DEFAULT_RTOL,
        atol: float = DEFAULT_ATOL,
        max_steps: int = DEFAULT_MAX_STEPS,
        solver=None,
        dt0=None,
    ) -> SimulationResult:
        """Simulate from ``x0`` over ``trange`` with applied current ``Iapp``.

        Args:
            trange: ``(t0, t1)``, ``t0 < t1``.
            x0: initial state ``[V0, m0, h0, n0]``.
            Iapp: a number, an ndjax stimulus (``ndjax.step``, ``ndjax.pulses``),
                or a JAX-traceable function of ``t``. A function that ignores
                ``t`` is treated as a constant; any other new function object
                costs a new compilation (about a second).
            t_eval: save times (default ``n_points`` equally spaced).
            rtol, atol, max_steps, solver, dt0: solver settings (Tsit5, PID).

        Returns:
            :class:`SimulationResult` with ``t`` (T,) and ``y`` (4, T).

        Raises:
            ValueError/TypeError: bad span, state, or input.
            RuntimeError: the solve hit ``max_steps`` or became non-finite.
        """
        t0, t1 = _span(trange)
        ts = _save_times(t0, t1, t_eval, n_points)
        trace = simulate(
            self._core, self.params, Iapp, x0, ts, t0=t0, t1=t1,
            stepsize_controller=default_controller(rtol, atol), max_steps=max_steps, solver=solver, dt0=dt0,
        )  # fmt: skip
        check_trace(trace, max_steps)
        return SimulationResult(
            t=np.asarray(trace.ts),
            y=np.asarray(trace.ys).T,
            success=True,
            message="The solver successfully reached the end of the integration interval.",
            n_steps=int(trace.n_steps),
        )

    @_x64
    def vclamp(
        self,
        trange,
        x0,
        V,
        *,
        t_eval=None,
        n_points: int = DEFAULT_N_POINTS,
        rtol: float = DEFAULT_RTOL,
        atol: float = DEFAULT_ATOL,
        max_steps: int = DEFAULT_MAX_STEPS,
        solver=None,
    ) -> ClampResult:
        """Voltage clamp: the gates evolve while the membrane follows ``V(t)``.

        Args:
            trange: ``(t0, t1)``.
            x0: initial gates ``[m0, h0, n0]`` (a 4-element ``[V0, m0, h0, n0]``
                is accepted too; its ``V0`` is ignored since ``V`` is clamped).
            V: clamp voltage: a number, an ndjax stimulus (``ndjax.step(...)`` for
                a step clamp) or a traceable function of ``t``.

        Returns:
            :class:`ClampResult` with the gates and the currents they give.
        """
        t0, t1 = _span(trange)
        x0 = np.asarray(x0, dtype=float)
        if x0.shape == (4,):
            x0 = x0[1:]
        ts = _save_times(t0, t1, t_eval, n_points)
        trace = vclamp(
            self._core, self.params, V, x0, ts, t0=t0, t1=t1,
            stepsize_controller=default_controller(rtol, atol), max_steps=max_steps, solver=solver,
        )  # fmt: skip
        check_trace(trace, max_steps)
        return ClampResult(
            t=np.asarray(trace.ts),
            V=np.asarray(trace.v),
            y=np.asarray(trace.gates).T,
            I=np.asarray(trace.currents).T,
            n_steps=int(trace.n_steps),
        )


class HHModel(_Base):
    """Hodgkin-Huxley neuron with the guide's constructor (SPEC section 1).

    Args:
        gna, gk, gl: maximal conductances (mS/cm^2).
        Ena, Ek, El: reversal potentials (mV, rest at 0 mV).
        C: membrane capacitance (uF/cm^2).
        scl_v, scl_t: voltage and time scaling (SPEC 1); the applied current
            is multiplied by ``scl_v * scl_t``.
        SI_units: convert to V, s, A/cm^2, S/cm^2, F/cm^2.

    Attributes:
        params: the :class:`ndjax.HHParams` pytree every method uses.
        m, h, n: :class:`Gate` objects.
        gna, gk, gl, Ena, Ek, El, C: effective (scaled, unit-converted) values.
    """

    _core = HH

    @_x64
    def __init__(
        self,
        gna: float = HH_DEFAULTS.gna,
        gk: float = HH_DEFAULTS.gk,
        gl: float = HH_DEFAULTS.gl,
        Ena: float = HH_DEFAULTS.ena,
        Ek: float = HH_DEFAULTS.ek,
        El: float = HH_DEFAULTS.el,
        C: float = HH_DEFAULTS.c,
        scl_v: float = 1,
        scl_t: float = 1,
        SI_units: bool = False,
    ):
        named = dict(gna=gna, gk=gk, gl=gl, Ena=Ena, Ek=Ek, El=El, C=C, scl_v=scl_v, scl_t=scl_t)
        for name, value in named.items():
            arr = np.asarray(value, dtype=float) if np.isscalar(value) else np.asarray(value)
            if arr.shape != () or not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        for name in ("gna", "gk", "gl"):
            if named[name] < 0:
                raise ValueError(f"{name} must be >= 0, got {named[name]}")
        for name in ("C", "scl_v", "scl_t"):
            if not named[name] > 0:
                raise ValueError(f"{name} must be > 0, got {named[name]}")
        self.scl_v, self.scl_t, self.SI_units = float(scl_v), float(scl_t), bool(SI_units)
        self.params: HHParams = hh_params(
            gna=gna, gk=gk, gl=gl, ena=Ena, ek=Ek, el=El, c=C,
            scl_v=scl_v, scl_t=scl_t, si_units=SI_units, gates=hh_gate_kinetics(),
        )  # fmt: skip
        super().__init__()

    gna = property(lambda self: float(self.params.g[0]))
    gk = property(lambda self: float(self.params.g[1]))
    gl = property(lambda self: float(self.params.g[2]))
    Ena = property(lambda self: float(self.params.e_rev[0]))
    Ek = property(lambda self: float(self.params.e_rev[1]))
    El = property(lambda self: float(self.params.e_rev[2]))
    C = property(lambda self: float(self.params.c_m))

    def __repr__(self):
        return f"HHModel(scl_v={self.scl_v}, scl_t={self.scl_t}, SI_units={self.SI_units})"


class NeuroDynModel(_Base):
    """NeuroDyn neuron with the guide's constructor (SPEC section 2, SI units).

    Args:
        dg: [dgna, dgk, dgl] conductance words (0..1023).
        dErev: [dEna, dEk, dEl] reversal words (-1023..1023).
        dIb: [dIb_m, dIb_h, dIb_n], each ``[dIb_alpha, dIb_beta]`` of 7 words (0..1023).
        V_ref, I_voltage, I_master, I_ref: bias settings (V, A).
        capacitance_scaling: multiplies C_ND = 4 pF.
        digital_values: False to pass physical values instead of words
            (g in S, E - V_ref in V, I_b in A).
        seed: seeds the key stream that :meth:`perturb` draws from when given
            no key (``None``: a fresh random seed, so each ``perturb()`` is a
            new chip, as re-running the guide's cell is).

    Attributes:
        chip: the :class:`ndjax.NDChip` (words, biases, mismatch).
        params: its physical :class:`ndjax.NDParams`.
    """

    _core = NEURODYN

    @_x64
    def __init__(
        self,
        dg=DEFAULT_DG,
        dErev=DEFAULT_DEREV,
        dIb=DEFAULT_DIB,
        V_ref: float = BIAS_DEFAULTS.v_ref,
        I_voltage: float = BIAS_DEFAULTS.i_voltage,
        I_master: float = BIAS_DEFAULTS.i_master,
        I_ref: float = BIAS_DEFAULTS.i_ref,
        capacitance_scaling: float = BIAS_DEFAULTS.capacitance_scaling,
        digital_values: bool = True,
        seed: int | None = None,
    ):
        self.chip: NDChip = nd_chip(
            dg, dErev, dIb, v_ref=V_ref, i_voltage=I_voltage, i_master=I_master, i_ref=I_ref,
            capacitance_scaling=capacitance_scaling, digital=digital_values,
        )  # fmt: skip
        self.seed = secrets.randbits(63) if seed is None else int(seed)
        self._key = jax.random.key(self.seed)
        super().__init__()

    @property
    def params(self) -> NDParams:  # type: ignore[override]
        with jax.enable_x64(True):
            return chip_params(self.chip)

    digital_values = property(lambda self: self.chip.digital)
    dg = property(lambda self: np.asarray(self.chip.words.g))
    dErev = property(lambda self: np.asarray(self.chip.words.e_rev))
    dIb = property(lambda self: np.asarray(self.chip.words.i_b))
    V_ref = property(lambda self: float(self.chip.biases.v_ref))
    I_voltage = property(lambda self: float(self.chip.biases.i_voltage))
    I_master = property(lambda self: float(self.chip.biases.i_master))
    I_ref = property(lambda self: float(self.chip.biases.i_ref))
    capacitance_scaling = property(lambda self: float(self.chip.biases.capacitance_scaling))

    @_x64
    def sigmoid_centres(self) -> np.ndarray:
        """The seven shared sigmoid centres V_b,j (V)."""
        return np.asarray(sigmoid_centres(self.chip.biases, self.chip.consts))

    @_x64
    def perturb(self, sigma: float = 0.15, key: jax.Array | None = None) -> NeuroDynModel:
        """Make this a freshly drawn mismatched chip (SPEC section 2).

        The new mismatch replaces any earlier one (a perturbation is the chip's,
        not cumulative) and stays when words are changed afterwards.

        Args:
            sigma: relative spread of the currents (default 0.15).
            key: a ``jax.random`` key; without one the model's own key stream
                (seeded by ``seed``) is used, so each call draws a new chip.

        Returns:
            self, for chaining.
        """
        s = np.asarray(sigma, dtype=float)
        if s.shape != () or not np.isfinite(s) or s < 0:
            raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
        if key is None:
            self._key, key = jax.random.split(self._key)
        self.chip = dataclasses.replace(self.chip, mismatch=sample_mismatch(key, float(s)))
        return self

    def _update_words(self, **changes):
        self.chip = dataclasses.replace(self.chip, words=dataclasses.replace(self.chip.words, **changes))

    @_x64
    def update_dg(self, dg) -> None:
        """Program new conductance words; the chip's mismatch stays."""
        self._update_words(g=jnp.asarray(check_words("dg", dg, self.digital_values)))

    @_x64
    def update_dErev(self, dErev) -> None:
        """Program new reversal words; the chip's mismatch stays."""
        self._update_words(e_rev=jnp.asarray(check_words("dErev", dErev, self.digital_values)))

    @_x64
    def update_dIb(self, dIb) -> None:
        """Program new sigmoid-weight words; the chip's mismatch stays."""
        self._update_words(i_b=jnp.asarray(check_words("dIb", dIb, self.digital_values)))

    def __repr__(self):
        kind = "digital" if self.digital_values else "analog"
        return (
            f"NeuroDynModel({kind}, V_ref={self.V_ref}, I_voltage={self.I_voltage}, I_master={self.I_master})"
        )
