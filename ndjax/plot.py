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
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from jax.typing import ArrayLike

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["TracePanel", "plot_traces", "plot_gate_fits", "close", "units"]


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


def close(fig: Figure) -> None:
    """Release a figure made here (pyplot keeps every figure alive until closed)."""
    _pyplot().close(fig)
