"""Matplotlib figures for ndjax results (host side, NumPy).

matplotlib is imported inside the functions, so ``import ndjax`` never pulls
it in. When no display is available (and neither ``MPLBACKEND`` nor an earlier
``matplotlib.pyplot`` import chose a backend) the non-interactive Agg backend
is selected. Every function returns its ``Figure``; save it with
``fig.savefig(path)`` and release it with ``ndjax.plot.close(fig)``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from jax.typing import ArrayLike

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "TracePanel",
    "plot_traces",
    "plot_gate_fits",
    "plot_fit_traces",
    "plot_fi_curves",
    "plot_loss_history",
    "plot_rate_histograms",
    "plot_restored_vs_sigma",
    "close",
    "units",
]


class TracePanel(NamedTuple):
    """One voltage trace to draw.

    Attributes:
        t: (T,) times, in ``time_unit``.
        v: (T,) membrane voltage, in ``voltage_unit``; non-finite samples (after a
            failed solve) are left out.
        label: panel title / legend entry.
        time_unit: ``"ms"`` or ``"s"``.
        voltage_unit: ``"mV"`` or ``"V"``.
        threshold: spike threshold to draw as a dashed line (``None``: none).
        spike_times: (S,) detected spikes, marked on the threshold line and
            counted in the panel's right-hand title (``None``: not shown).
    """

    t: ArrayLike
    v: ArrayLike
    label: str = ""
    time_unit: str = "ms"
    voltage_unit: str = "mV"
    threshold: float | None = None
    spike_times: ArrayLike | None = None


def units(model_type: str, si_units: bool = False) -> tuple[str, str]:
    """(time unit, voltage unit) of a model: HH ``("ms", "mV")`` or, with SI units,
    ``("s", "V")``; NeuroDyn ``("s", "V")``."""
    if model_type == "hh" and not si_units:
        return "ms", "mV"
    return "s", "V"


def _has_display() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _pyplot():
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND") and not _has_display():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_traces(
    panels: TracePanel | Sequence[TracePanel],
    *,
    title: str | None = None,
    width: float = 8.0,
    panel_height: float = 2.6,
) -> Figure:
    """Voltage against time, one stacked panel per trace.

    Each panel has its own axes (models may use different units: HH in ms/mV,
    NeuroDyn and SI-unit HH in s/V), labelled with the panel's units. A single
    :class:`TracePanel` gives a one-panel figure.

    Args:
        panels: the traces, top to bottom.
        title: figure title.
        width: figure width, inches.
        panel_height: height of each panel, inches.

    Returns:
        The matplotlib ``Figure``.
    """
    if isinstance(panels, TracePanel):
        panels = [panels]
    if not panels:
        raise ValueError("plot_traces needs at least one TracePanel")
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(width, panel_height * len(panels) + 0.4), squeeze=False, layout="constrained"
    )
    for ax, p in zip(axes[:, 0], panels, strict=True):
        t, v = np.asarray(p.t, dtype=float), np.asarray(p.v, dtype=float)
        good = np.isfinite(t) & np.isfinite(v)  # a failed solve leaves inf after the failure
        t, v = t[good], v[good]
        ax.plot(t, v, lw=1.0, color="C0")
        notes = []
        if p.threshold is not None:
            ax.axhline(p.threshold, color="0.5", lw=0.8, ls="--")
            notes.append(f"threshold {p.threshold:g} {p.voltage_unit}")
        if p.spike_times is not None:
            st = np.asarray(p.spike_times, dtype=float)
            level = p.threshold if p.threshold is not None else float(np.nanmax(v)) if v.size else 0.0
            ax.plot(st, np.full_like(st, level), "v", color="C3", ms=5)
            notes.insert(0, f"{st.size} spike{'s' if st.size != 1 else ''}")
        if notes:
            ax.set_title(", ".join(notes), loc="right", fontsize="small", color="0.3")
        ax.set_title(p.label, loc="left", fontsize="medium")
        ax.set_xlabel(f"time ({p.time_unit})")
        ax.set_ylabel(f"V ({p.voltage_unit})")
        t_all = np.asarray(p.t, dtype=float)
        t_all = t_all[np.isfinite(t_all)]
        if t_all.size > 1:
            ax.set_xlim(t_all[0], t_all[-1])
    if title:
        fig.suptitle(title)
    return fig


def plot_gate_fits(
    v: ArrayLike,
    labels: Sequence[str],
    curves: dict[str, np.ndarray],
    *,
    kind: str = "alpha_beta",
    title: str | None = None,
) -> Figure:
    """The guide's fit figures: original, NNLS fit and quantised fit per gate.

    Args:
        v: (N,) voltages (V).
        labels: gate names, one per row.
        curves: ``{"original": arr, "fit": arr, "fit quantized": arr}``, each
            (n_gates, 2, N): [alpha, beta] (1/s) for ``kind="alpha_beta"``,
            [inf, tau (s)] for ``kind="inf_tau"``.
        kind: ``"alpha_beta"`` or ``"inf_tau"``.

    Returns:
        The ``Figure``: a row per gate, a column per function.
    """
    if kind not in ("alpha_beta", "inf_tau"):
        raise ValueError(f"kind must be 'alpha_beta' or 'inf_tau', got {kind!r}")
    names = ("alpha", "beta") if kind == "alpha_beta" else ("inf", "tau")
    units_ = ("1/s", "1/s") if kind == "alpha_beta" else ("", "s")
    plt = _pyplot()
    v = np.asarray(v, dtype=float)
    fig, axes = plt.subplots(len(labels), 2, figsize=(9, 2.4 * len(labels) + 0.4), squeeze=False,
                             layout="constrained")  # fmt: skip
    styles = {"original": dict(lw=2.0, color="C0"), "fit": dict(lw=1.2, color="C1"),
              "fit quantized": dict(lw=1.2, color="C2", ls="--")}  # fmt: skip
    for i, gate in enumerate(labels):
        for k in range(2):
            ax = axes[i, k]
            for name, arr in curves.items():
                ax.plot(v, np.asarray(arr)[i, k], label=name, **styles.get(name, {}))
            unit = f" ({units_[k]})" if units_[k] else ""
            ax.set_title(f"{names[k]}_{gate}", loc="left", fontsize="medium")
            ax.set_ylabel(f"{names[k]}{unit}")
            ax.set_xlabel("V (V)")
    axes[0, 0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def _held_out_mask(currents: np.ndarray, held_out: Sequence[float] | None) -> np.ndarray:
    if held_out is None:
        return np.zeros(currents.shape, dtype=bool)
    held = np.asarray(held_out, dtype=float)
    return np.isclose(currents[:, None], held[None, :], rtol=0.0, atol=1e-9).any(axis=1)


def plot_fit_traces(
    ts_ms: ArrayLike,
    currents: ArrayLike,
    v_hh: ArrayLike,
    v_chip: ArrayLike,
    *,
    held_out: Sequence[float] | None = None,
    counts: Sequence[tuple[int, int]] | None = None,
    threshold: float | None = None,
    chip_label: str = "chip",
    title: str | None = None,
    width: float = 8.0,
    panel_height: float = 2.2,
) -> Figure:
    """An HH target and a chip fitted to it, overlaid, one stacked panel per current.

    Args:
        ts_ms: (T,) times, ms of HH time.
        currents: (C,) applied HH currents, uA/cm^2 (panel titles).
        v_hh: (C, T) HH voltage, V (the scaled SI target's frame, rest at 0).
        v_chip: (C, T) chip voltage shifted into the HH frame, V; non-finite
            samples (a failed solve) are left out.
        held_out: currents the fit never saw (marked "held out" in the title).
        counts: per panel ``(hh_spikes, chip_spikes)`` for the right-hand title.
        threshold: spike threshold (V) drawn as a dashed line.
        chip_label: legend entry of the chip.
        title: figure title.

    Returns:
        The matplotlib ``Figure``.
    """
    t = np.asarray(ts_ms, dtype=float)
    cur = np.atleast_1d(np.asarray(currents, dtype=float))
    vh = np.atleast_2d(np.asarray(v_hh, dtype=float))
    vc = np.atleast_2d(np.asarray(v_chip, dtype=float))
    if vh.shape != (cur.size, t.size) or vc.shape != vh.shape:
        raise ValueError(
            f"v_hh and v_chip must have shape (n_currents, n_times) = {(cur.size, t.size)}, "
            f"got {vh.shape} and {vc.shape}"
        )
    if cur.size == 0:
        raise ValueError("plot_fit_traces needs at least one current")
    held = _held_out_mask(cur, held_out)
    plt = _pyplot()
    fig, axes = plt.subplots(
        cur.size,
        1,
        figsize=(width, panel_height * cur.size + 0.5),
        squeeze=False,
        sharex=True,
        layout="constrained",
    )
    for k, ax in enumerate(axes[:, 0]):
        good = np.isfinite(vc[k])
        ax.plot(t, vh[k], lw=1.4, color="C0", label="HH")
        ax.plot(t[good], vc[k][good], lw=1.0, color="C1", ls="--", label=chip_label)
        if threshold is not None:
            ax.axhline(threshold, color="0.6", lw=0.7, ls=":")
        tag = "held out" if held[k] else "fit"
        ax.set_title(f"{cur[k]:g} uA/cm^2 ({tag})", loc="left", fontsize="medium")
        if counts is not None:
            n_hh, n_chip = counts[k]
            ax.set_title(
                f"spikes: HH {n_hh}, {chip_label} {n_chip}", loc="right", fontsize="small", color="0.3"
            )
        ax.set_ylabel("V (V, HH frame)")
        if t.size > 1:
            ax.set_xlim(t[0], t[-1])
    axes[0, 0].legend(fontsize="small", loc="upper right")
    axes[-1, 0].set_xlabel("time (ms, HH time)")
    if title:
        fig.suptitle(title)
    return fig


_ONSET_LS = (0, (7, 2, 1, 2))  # dash-dot, unlike any curve's style


def plot_fi_curves(
    currents: ArrayLike,
    rates: Mapping[str, ArrayLike],
    *,
    held_out: Sequence[float] | None = None,
    marks: Sequence[float] | None = None,
    onsets: Mapping[str, float] | None = None,
    ylabel: str = "firing rate (Hz, HH time)",
    title: str | None = None,
) -> Figure:
    """Firing rate against applied current, one line per model.

    Args:
        currents: (C,) applied HH currents, uA/cm^2 (any order; drawn sorted).
        rates: model name -> (C,) firing rates (non-finite entries left out).
        held_out: currents the fit never saw: drawn with open markers.
        marks: the currents that get markers (``None``: all of them), e.g. the evaluation
            currents on a dense F-I curve.
        onsets: model name (a key of ``rates``) -> its onset of repetitive firing, drawn as a
            dash-dotted vertical line in the model's colour (non-finite entries left out).
        ylabel, title: axis label and figure title.

    Returns:
        The matplotlib ``Figure``.
    """
    cur = np.atleast_1d(np.asarray(currents, dtype=float))
    if not rates:
        raise ValueError("plot_fi_curves needs at least one curve")
    unknown = sorted(set(onsets or {}) - set(rates))
    if unknown:
        raise ValueError(f"plot_fi_curves: onsets for unknown curves {unknown}; curves are {list(rates)}")
    order = np.argsort(cur, kind="stable")
    held = _held_out_mask(cur, held_out)[order]
    marked = np.ones(cur.shape, bool) if marks is None else _held_out_mask(cur, marks)
    marked = marked[order]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    styles = ("-", "--", ":", "-.")
    for k, (name, r) in enumerate(rates.items()):
        r = np.atleast_1d(np.asarray(r, dtype=float))
        if r.shape != cur.shape:
            raise ValueError(f"rates[{name!r}] must have shape {cur.shape}, got {r.shape}")
        x, y = cur[order], r[order]
        good = np.isfinite(y)
        color = f"C{k}"
        ax.plot(x[good], y[good], ls=styles[k % len(styles)], color=color, lw=1.3, label=name)
        ax.plot(x[good & marked & ~held], y[good & marked & ~held], "o", color=color, ms=5)
        ax.plot(x[good & marked & held], y[good & marked & held], "o", mfc="white", mec=color, ms=6)
        onset = (onsets or {}).get(name, np.nan)
        if np.isfinite(onset):
            ax.axvline(onset, color=color, ls=_ONSET_LS, lw=0.9)
    if onsets and any(np.isfinite(v) for v in onsets.values()):
        ax.plot([], [], ls=_ONSET_LS, lw=0.9, color="0.3", label="onset of repetitive firing")
    if (held & marked).any():
        ax.plot([], [], "o", mfc="white", mec="0.3", label="held-out current")
        ax.plot([], [], "o", color="0.3", label="fit current")
    ax.set_xlabel("applied current (uA/cm^2)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def plot_loss_history(
    history: Mapping[str, Sequence[float]],
    *,
    seconds: Mapping[str, float] | None = None,
    ylabels: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """Objective against iteration, one panel per optimisation stage (their objectives differ).

    Args:
        history: stage name -> objective values in order (an empty stage is drawn as "skipped").
        seconds: stage name -> wall time, added to the panel title.
        ylabels: stage name -> y-axis label (default "objective").
        title: figure title.

    Returns:
        The matplotlib ``Figure``; axes with positive values only are log-scaled.
    """
    if not history:
        raise ValueError("plot_loss_history needs at least one stage")
    plt = _pyplot()
    n = len(history)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n + 0.4, 3.4), squeeze=False, layout="constrained")
    for k, (ax, (stage, values)) in enumerate(zip(axes[0], history.items(), strict=True)):
        y = np.asarray(values, dtype=float)
        label = stage
        if seconds is not None and stage in seconds:
            label += f" ({seconds[stage]:.1f} s)"
        ax.set_title(label, loc="left", fontsize="medium")
        ax.set_xlabel("iteration")
        ax.set_ylabel((ylabels or {}).get(stage, "objective"))
        good = np.isfinite(y)
        if not good.any():
            ax.text(0.5, 0.5, "skipped", ha="center", va="center", transform=ax.transAxes, color="0.4")
            continue
        x = np.arange(y.size)
        ax.plot(x[good], y[good], ".-", color=f"C{k}", lw=1.0, ms=3)
        if np.all(y[good] > 0) and y[good].max() > 3 * y[good].min():
            ax.set_yscale("log")
    if title:
        fig.suptitle(title)
    return fig


def plot_rate_histograms(
    rates: Mapping[str, ArrayLike],
    reference: ArrayLike,
    current_labels: Sequence[str],
    *,
    rate_tol: float = 0.05,
    title: str = "",
) -> Figure:
    """Histograms of firing rate relative to the reference, one panel per current.

    Args:
        rates: label -> (N, C) rates in Hz (NaN: failed solve, left out), e.g.
            ``{"uncompensated": ..., "offset": ...}``; the first is drawn filled in grey (so that
            the others, overlaid as step histograms, cannot hide it), the others as steps.
        reference: (C,) reference rates (Hz); a current where it is 0 shows absolute rates.
        current_labels: (C,) panel titles.
        rate_tol: the band drawn around the reference.
    """
    plt = _pyplot()
    reference = np.asarray(reference, dtype=float)
    c = reference.size
    fig, axes = plt.subplots(1, c, figsize=(3.6 * c, 3.2), squeeze=False)
    for j, ax in enumerate(axes[0]):
        ref = reference[j]
        for k, (label, r) in enumerate(rates.items()):
            x = np.asarray(r, dtype=float)[:, j]
            x = x[np.isfinite(x)]
            if ref > 0:
                x = x / ref
            style = dict(histtype="stepfilled", color="0.55", alpha=0.45) if k == 0 else dict(histtype="step")
            if x.size:
                lo, hi = (0.0, 2.0) if ref > 0 else (0.0, max(float(x.max()), 1.0))
                ax.hist(np.clip(x, lo, hi), bins=40, range=(lo, hi), label=label, **style)
        if ref > 0:
            ax.axvspan(1 - rate_tol, 1 + rate_tol, color="#d9f0d3", zorder=0)  # the "behaves" band
            ax.set_xlabel("rate / reference rate")
        else:
            ax.set_xlabel("rate (Hz); reference silent")
        ax.set_title(current_labels[j], fontsize=9)
        ax.set_ylabel("chips")
    if axes[0][0].get_legend_handles_labels()[0]:  # nothing drawn when every solve failed
        axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_restored_vs_sigma(sigmas: Sequence[float], fractions: Mapping[str, Sequence[float]]) -> Figure:
    """Fraction of chips that behave like the reference against the mismatch spread, per method."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for label, f in fractions.items():
        ax.plot(sigmas, f, "o-", label=label)
    ax.set_xlabel("mismatch sigma")
    ax.set_ylabel("fraction of chips behaving")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    """Release a figure made here (pyplot keeps every figure alive until closed)."""
    _pyplot().close(fig)
