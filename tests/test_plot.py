"""ndjax.plot: figures come back labelled in each model's units."""

import sys

import numpy as np
import pytest

from ndjax import plot


def test_plot_traces_stacked_panels_with_units():
    t = np.linspace(0.0, 5.0, 51)
    hh = plot.TracePanel(t, 50 * np.sin(t), label="HH", threshold=60.0, spike_times=[2.5])
    nd = plot.TracePanel(t * 1e-3, 0.9 + 0.05 * np.sin(t), label="ND", time_unit="s", voltage_unit="V")
    fig = plot.plot_traces([hh, nd], title="both")
    try:
        top, bottom = fig.axes
        assert (top.get_xlabel(), top.get_ylabel()) == ("time (ms)", "V (mV)")
        assert (bottom.get_xlabel(), bottom.get_ylabel()) == ("time (s)", "V (V)")
        assert top.get_title(loc="left") == "HH" and "1 spike" in top.get_title(loc="right")
        assert top.get_xlim() == (0.0, 5.0)
        assert fig.get_suptitle() == "both"
    finally:
        plot.close(fig)


def test_plot_traces_skips_the_non_finite_tail_of_a_failed_solve():
    t = np.array([0.0, 1.0, 2.0, np.inf])
    v = np.array([0.0, 1.0, np.inf, np.inf])
    fig = plot.plot_traces(plot.TracePanel(t, v))
    try:
        (ax,) = fig.axes
        np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0.0, 1.0])
        assert ax.get_xlim() == (0.0, 2.0)
    finally:
        plot.close(fig)


def test_units():
    assert plot.units("hh") == ("ms", "mV")
    assert plot.units("hh", si_units=True) == ("s", "V")
    assert plot.units("neurodyn") == ("s", "V")


def test_plot_traces_needs_a_panel():
    with pytest.raises(ValueError, match="at least one"):
        plot.plot_traces([])


def test_importing_ndjax_does_not_import_matplotlib():
    import subprocess

    code = "import ndjax, ndjax.plot, ndjax.cli._main, sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fit_plots_check_their_inputs():
    t = np.linspace(0.0, 10.0, 11)
    with pytest.raises(ValueError, match="v_hh and v_chip must have shape"):
        plot.plot_fit_traces(t, [1.0, 2.0], np.zeros((2, 11)), np.zeros((1, 11)))
    with pytest.raises(ValueError, match=r"rates\['chip'\] must have shape"):
        plot.plot_fi_curves([0.0, 1.0], {"chip": [1.0]})
    with pytest.raises(ValueError, match=r"onsets for unknown curves \['hh'\]"):
        plot.plot_fi_curves([0.0, 1.0], {"chip": [0.0, 1.0]}, onsets={"hh": 0.5})
    # a dense curve: markers only at the marked currents (open where held out), the onset a line
    grid = np.linspace(0.0, 2.0, 9)
    fig = plot.plot_fi_curves(grid, {"HH": grid, "chip": grid}, marks=[0.5, 1.0, 2.0], held_out=[1.0],
                              onsets={"HH": 0.75, "chip": np.nan})  # fmt: skip
    try:
        (ax,) = fig.axes
        filled = [ln for ln in ax.lines if ln.get_marker() == "o" and ln.get_mfc() != "white"]
        hollow = [ln for ln in ax.lines if ln.get_marker() == "o" and ln.get_mfc() == "white"]
        assert (
            sum(len(ln.get_xdata()) for ln in filled) == 4 and sum(len(ln.get_xdata()) for ln in hollow) == 2
        )
        vlines = [
            ln for ln in ax.lines if len(ln.get_xdata()) == 2 and ln.get_xdata()[0] == ln.get_xdata()[1]
        ]
        assert [float(ln.get_xdata()[0]) for ln in vlines] == [0.75]
    finally:
        plot.close(fig)
    fig = plot.plot_loss_history({"es": [3.0, 2.0], "grad": []}, seconds={"es": 1.5})
    try:
        left, right = fig.axes
        assert left.get_title(loc="left") == "es (1.5 s)"
        assert right.texts[0].get_text() == "skipped"
    finally:
        plot.close(fig)
