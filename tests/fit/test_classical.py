"""The classical fit (FitND, SPEC section 3) and the exact NNLS."""

import contextlib
import io
import warnings

import matplotlib
import numpy as np
import pytest
import scipy.optimize
from guide import guide_cells, guide_path, ndjax_imports
from hypothesis import given, settings
from hypothesis import strategies as st

import ndjax as nd
import ndjax.plot
from ndjax.fit import nnls
from ndjax.models._kinetics import sigmoid_basis

matplotlib.use("Agg")

G0 = [120e-3, 36e-3, 0.3e-3]
E0 = [120e-3, -12e-3, 10.6e-3]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), m=st.sampled_from([7, 25, 60]), positive=st.booleans())
def test_nnls_matches_scipy_on_random_problems(seed, m, positive):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(m, 7))
    a = np.abs(a) if positive else a
    b = rng.normal(size=m) * rng.uniform(0.1, 10)
    x, res = nnls(a, b)
    x_ref, res_ref = scipy.optimize.nnls(a, b)
    assert np.all(np.asarray(x) >= 0)
    assert float(res) == pytest.approx(res_ref, rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(np.asarray(x), x_ref, rtol=1e-6, atol=1e-8 * np.abs(x_ref).max())


@pytest.mark.parametrize("scl_v", [1.0, 3.0])
def test_nnls_matches_scipy_on_the_guide_problems(scl_v):
    hh = nd.HHModel(scl_v=scl_v, SI_units=True)
    fit = nd.FitND(hh)
    v = fit.vrange
    fit.fitHH()
    for gate, gfit in zip((hh.m, hh.h, hh.n), fit.fits, strict=True):
        for k, target in enumerate((gate.alpha(v), gate.beta(v))):
            a = np.asarray(sigmoid_basis(v, fit.centres, gfit.signs[k], 0.7, 0.026))
            x_ref, res_ref = scipy.optimize.nnls(a, target, maxiter=1000)
            res = np.linalg.norm(a @ gfit.weights[k] - target)
            assert res == pytest.approx(res_ref, rel=1e-8)
            np.testing.assert_allclose(gfit.weights[k], x_ref, rtol=1e-5, atol=1e-6 * x_ref.max())


# SPEC 3 table: scl_v -> (worst alpha/beta NNLS error, get_scl_t())
SPEC_TABLE = {1.0: (0.12, 0.083), 1.5: (0.09, 0.49), 2.0: (0.07, 1.02), 3.0: (0.06, 2.40), 4.0: (0.006, 2.40)}


@pytest.mark.parametrize("scl_v", sorted(SPEC_TABLE))
def test_fit_quality_and_time_scale_match_spec_table(scl_v):
    err, scl_t = SPEC_TABLE[scl_v]
    fit = nd.FitND(nd.HHModel(scl_v=scl_v, SI_units=True))
    fit.fitHH()
    worst = max(float(f.rel_rms.max()) for f in fit.fits)
    assert worst == pytest.approx(err, abs=0.005 if err > 0.01 else 0.0005)
    assert fit.get_scl_t() == pytest.approx(scl_t, abs=0.005)


def test_guide_case_words_and_conversions():
    fit = nd.FitND(nd.HHModel(scl_v=3, SI_units=True))
    weights = fit.fitHH()
    assert weights.shape == (3, 2, 7) and np.all(weights >= 0)
    np.testing.assert_array_equal(fit.get_digital_E(E0), [622, -622, -409])
    np.testing.assert_array_equal(fit.get_digital_g(G0), [1023, 307, 3])
    dib = fit.get_digital_Ib(weights)
    assert dib.dtype.kind == "i" and dib.shape == (3, 2, 7)
    np.testing.assert_array_equal(dib[2][1], 0)  # SPEC 3: every beta_n word rounds to 0
    # activation gates m, n: alpha rises; h: alpha falls
    assert [tuple(f.signs) for f in fit.fits] == [(1, -1), (-1, 1), (1, -1)]
    s = 1 / fit.get_scl_t()
    assert fit.convert_I(8e-6) == pytest.approx(8e-6 * 3 / s / (1e-6 / 4e-12), rel=1e-14)


def test_digital_chip_equals_analog_fit_to_half_an_lsb():
    fit = nd.FitND(nd.HHModel(scl_v=3, SI_units=True))
    weights = fit.fitHH()
    digital = nd.NeuroDynModel(fit.get_digital_g(G0), fit.get_digital_E(E0), fit.get_digital_Ib(weights), 0.9,
                               fit.I_voltage, fit.I_master).params  # fmt: skip
    analog = nd.NeuroDynModel(fit.get_analog_g(G0), fit.get_analog_E(E0), fit.get_analog_Ib(weights), 0.9,
                              fit.I_voltage, fit.I_master, digital_values=False).params  # fmt: skip
    g_lsb = 0.2 / 0.026 * fit.I_master / 1024
    e_lsb = fit.I_voltage / 1024 * 1.63e6
    i_lsb = fit.I_master / 1024
    assert np.all(np.abs(np.asarray(digital.g) - np.asarray(analog.g)) <= 0.5 * g_lsb * (1 + 1e-9))
    assert np.all(np.abs(np.asarray(digital.e_rev) - np.asarray(analog.e_rev)) <= 0.5 * e_lsb * (1 + 1e-9))
    assert np.all(np.abs(np.asarray(digital.i_b) - np.asarray(analog.i_b)) <= 0.5 * i_lsb * (1 + 1e-9))


def test_out_of_range_words_are_clipped_with_a_warning_naming_them():
    fit = nd.FitND(nd.HHModel(scl_v=3, SI_units=True))
    fit.fitHH()
    with pytest.warns(UserWarning, match=r"dg words out of range 0\.\.1023 were clipped: dg\[0\]=2046"):
        words = fit.get_digital_g([240e-3, 36e-3, 0.3e-3])
    assert words[0] == 1023
    with pytest.warns(UserWarning, match=r"dErev\[0\]"):
        assert fit.get_digital_E([0.5, -12e-3, 10.6e-3])[0] == 1023


def test_fit_errors():
    with pytest.raises(ValueError, match="SI_units=True"):
        nd.FitND(nd.HHModel())
    with pytest.raises(RuntimeError, match="fitHH"):
        nd.FitND(nd.HHModel(SI_units=True)).get_scl_t()
    with pytest.raises(ValueError, match="I_master"):
        nd.FitND(nd.HHModel(SI_units=True), I_master=-1)
    with pytest.raises(TypeError, match="alpha"):
        nd.FitND(nd.HHModel(SI_units=True)).fit([object()])


def test_fit_plots_are_figures():
    fit = nd.FitND(nd.HHModel(scl_v=3, SI_units=True))
    fit.fitHH(plot_alpha_beta=True, plot_inf_tau=True)
    for name in ("alpha_beta", "inf_tau"):
        fig = fit.figures[name]
        assert len(fig.axes) == 6
        assert [ln.get_label() for ln in fig.axes[0].lines] == ["original", "fit", "fit quantized"]
        nd.plot.close(fig)


@pytest.mark.slow
@pytest.mark.skipif(guide_path() is None, reason="the guide (shared/seeds) is not beside this checkout")
def test_every_guide_cell_runs():
    """All the guide's cells, with only their imports changed."""
    import matplotlib.pyplot as plt

    ns: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cell in guide_cells(guide_path().read_text()):
            exec(compile(ndjax_imports(cell), "<guide>", "exec"), ns)
    plt.close("all")
    assert "The time scaling scl_t is 2.40" in out.getvalue()
    np.testing.assert_array_equal(ns["dE"], [622, -622, -409])
    assert ns["sol"].y.shape[0] == 4
    # the last cells: a perturbed chip, then new conductance words on the same chip
    assert not np.allclose(ns["ND"].chip.mismatch.g, 1.0)
    np.testing.assert_array_equal(ns["ND"].dg, [1023, 307, 3])
