"""Both sides of a fit simulated from rest: the HH target and a chip, at a batch of currents.

The fit, its evaluation and the F-I curves compare the two on one time axis: the chip's, in
seconds (the HH target is solved as :meth:`Target.hh_params`, already ``scl_t`` times faster),
reported in ms of HH time. Voltages are saved alone (``save_fn``) since spikes are all that is
compared; the chip's are shifted back by :attr:`Target.v_shift` to HH volts (rest at 0).
"""

from __future__ import annotations

import functools

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np

from .._analysis import crossing_times, spike_times
from .._checks import require_solved, status_code
from .._simulate import HH, NEURODYN, default_controller, simulate
from .._stimulus import Constant
from ..models._hh import HHParams
from ..models._neurodyn import NDChip, NDWords, chip_params
from ._target import Target
from ._wordspace import quantize_words

__all__ = [
    "MAX_SPIKES",
    "SEARCH_RTOL",
    "SEARCH_ATOL",
    "chip_voltages",
    "hh_voltages",
    "eval_axis",
    "hh_crossings",
    "hh_spikes",
    "hh_spikes_from_rest",
    "chip_spikes_from_rest",
    "as_words",
]

#: Spike times kept per trace in the fixed-size (jitted) spike arrays; later crossings are dropped.
MAX_SPIKES = 24

#: Solver tolerances of the chip during the search (the evaluation uses simulate's defaults,
#: rtol 1e-6): spike scores agree at a fraction of the cost ("Why the defaults" in
#: ``experiments/FIT_RESULTS.md``).
SEARCH_RTOL, SEARCH_ATOL = 1e-4, 1e-7


def save_voltage(t, y, args):
    """``save_fn`` of the solves: the membrane voltage ``y[0]`` alone."""
    return y[0]


@functools.partial(jax.jit, static_argnames=("max_steps",))
def chip_voltages(chip: NDChip, i_chip, y0, ts, rtol=1e-6, atol=1e-9, max_steps=20_000):
    """The chip's voltage at constant currents.

    Args:
        chip: words (floats; rounded or not, as given), biases, mismatch.
        i_chip: (C,) chip currents, A.
        y0: (4,) initial state ``[V, m, h, n]`` (V on the chip's axis).
        ts: (T,) save times, s.
        rtol, atol: solver tolerances (``SEARCH_RTOL``/``SEARCH_ATOL`` during the search).
        max_steps: step budget of each solve.

    Returns:
        ``(v, ok)``: (C, T) chip voltages (V) and (C,) solve status (``Trace.ok``).
    """
    params = chip_params(chip)

    def one(i):
        tr = simulate(NEURODYN, params, Constant(i), y0, saveat=dfx.SaveAt(ts=ts, fn=save_voltage),
                      stepsize_controller=default_controller(rtol, atol), max_steps=max_steps)  # fmt: skip
        return tr.ys, tr.ok

    return jax.vmap(one)(i_chip)


@jax.jit
def hh_voltages(params: HHParams, i0, ts):
    """The HH model's voltage from rest at constant currents (tight tolerances: the reference).

    Args:
        params: SI HH parameters (:meth:`Target.hh_params`: on the chip's time axis).
        i0: (C,) current densities, A/cm^2.
        ts: (T,) save times, s.

    Returns:
        ``(v, status)``: (C, T) voltages (V, rest at 0) and (C,) :class:`ndjax.Status` codes of the
        solves (:func:`ndjax._checks.require_solved` turns a failure into an error naming the current).
    """

    def one(i):
        tr = simulate(HH, params, Constant(i), jnp.zeros(4), saveat=dfx.SaveAt(ts=ts, fn=save_voltage),
                      stepsize_controller=default_controller(1e-8, 1e-11), max_steps=50_000)  # fmt: skip
        return tr.ys, status_code(tr.ok, tr.max_steps_reached, jnp)

    return jax.vmap(one)(i0)


def _hh_solved(target: Target, currents_ua, status) -> None:
    """Every HH reference solve succeeded, else :class:`ndjax._checks.SolveFailedError` naming the
    current (nothing a chip is judged or trained against may come from a failed solve)."""
    require_solved(status, currents_ua, "the HH target", "uA/cm^2")


def as_words(words) -> NDWords:
    """:class:`NDWords` as given, or built from a ``(dg, dErev, dIb)`` tuple (floats)."""
    if isinstance(words, NDWords):
        return words
    dg, de, dib = words
    return NDWords(jnp.asarray(dg, float), jnp.asarray(de, float), jnp.asarray(dib, float))


def eval_axis(target: Target, t_hh_ms: float, n_save: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ts, ts_ms)``: (n_save,) save times on the chip's axis (s) and the same on HH's (ms),
    for a span of ``t_hh_ms`` ms of HH time."""
    ts = np.linspace(0.0, t_hh_ms * 1e-3 / target.scl_t, n_save)
    return ts, ts * target.scl_t * 1e3


def hh_spikes_from_rest(target: Target, currents_ua, t_hh_ms: float, n_save: int):
    """HH at each current (uA/cm^2, (C,)) from rest: ``(ts_ms, v, times)`` with ``ts_ms`` (T,) ms of
    HH time, ``v`` (C, T) HH volts and ``times`` a list of C arrays of spike times (ms)."""
    ts, ts_ms = eval_axis(target, t_hh_ms, n_save)
    i0 = np.asarray(currents_ua, dtype=float) * 1e-6
    v, status = hh_voltages(target.hh_params(), jnp.asarray(i0), ts)
    _hh_solved(target, currents_ua, status)
    v_hh = np.asarray(v)
    return ts_ms, v_hh, [spike_times(ts_ms, v, target.threshold, target.hysteresis) for v in v_hh]


def chip_spikes_from_rest(target: Target, words, currents_ua, t_hh_ms: float, n_save: int):
    """The chip with ``words`` (:class:`NDWords` or a ``(dg, dErev, dIb)`` tuple; rounded and
    clipped here) at each current, as :func:`hh_spikes_from_rest` (voltages in HH volts); a
    failed solve has no spikes."""
    words = as_words(words)
    ts, ts_ms = eval_axis(target, t_hh_ms, n_save)
    i0 = np.asarray(currents_ua, dtype=float) * 1e-6
    y0 = jnp.asarray([target.v_shift, 0.0, 0.0, 0.0])
    chip = target.chip(quantize_words(words))
    v_c, ok_c = chip_voltages(chip, jnp.asarray(target.chip_current(i0)), y0, ts)
    v_c = np.asarray(v_c) - target.v_shift
    chip_ms = [spike_times(ts_ms, v, target.threshold, target.hysteresis) if ok else np.array([])
               for v, ok in zip(v_c, np.asarray(ok_c), strict=True)]  # fmt: skip
    return ts_ms, v_c, chip_ms


def hh_crossings(target: Target, currents_ua, ts, *, voltages: bool = False):
    """The HH target from rest at each current (uA/cm^2, (C,)), on the chip's time axis ``ts``
    (T,) s: spike times ``(C, MAX_SPIKES)`` s (rows padded with ``ts[-1]``) and counts ``(C,)``,
    and the voltages ``(C, T)`` (V) if ``voltages``; NumPy arrays."""
    i0 = np.asarray(currents_ua, dtype=float) * 1e-6
    v_hh, status = hh_voltages(target.hh_params(), jnp.asarray(i0), ts)
    _hh_solved(target, currents_ua, status)
    th, nh = jax.vmap(lambda v: crossing_times(ts, v, target.threshold, target.hysteresis, MAX_SPIKES))(v_hh)
    out = np.asarray(th), np.asarray(nh)
    return (*out, np.asarray(v_hh)) if voltages else out


def hh_spikes(target: Target, currents_ua, t_hh_ms: float, n_save: int) -> tuple[np.ndarray, np.ndarray]:
    """HH spike times (ms of HH time, padded rows of :data:`MAX_SPIKES`) and counts from rest."""
    th, nh = hh_crossings(target, currents_ua, eval_axis(target, t_hh_ms, n_save)[0])
    return th * target.scl_t * 1e3, nh
