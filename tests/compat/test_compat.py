"""The guide's API: HHModel, NeuroDynModel, and the guide's own cells."""

import contextlib
import io

import jax
import matplotlib
import numpy as np
import pytest
from guide import guide_cells, guide_path, ndjax_imports
from helpers import crossings

import ndjax as nd
from ndjax import HHModel, NeuroDynModel

matplotlib.use("Agg")


@pytest.mark.skipif(guide_path() is None, reason="the guide (shared/seeds) is not beside this checkout")
def test_guide_cells_before_fitting_run_and_behave():
    """Every cell before the fitting section runs with only its imports changed."""
    import matplotlib.pyplot as plt

    cells = guide_cells(guide_path().read_text())
    first_fit = next(i for i, c in enumerate(cells) if "FitND" in c)
    assert first_fit >= 4
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in cells[:first_fit]:
            exec(compile(ndjax_imports(cell), "<guide>", "exec"), namespace)
    plt.close("all")
    # the text: the default neuron spikes at 10 uA, the scaled one spikes twice as often, 3x taller
    sol = namespace["sol"]
    assert sol.t.ndim == 1 and sol.y.shape == (4, sol.t.size)
    assert len(crossings(sol.t, sol.y[0], 180.0)) == 14
    default = namespace["hh_neuron"].simulate((0, 100), [0, 0, 0, 0], namespace["Iapp"])
    assert len(crossings(default.t, default.y[0], 60.0)) == 7
    # jax's global precision setting is untouched by the compat classes
    assert jax.config.jax_enable_x64  # (conftest turned it on; compat must not turn it off either)


def test_hh_model_api_matches_core():
    hh = HHModel(gna=100, Ena=50, scl_v=2, SI_units=True)
    assert hh.gna == pytest.approx(0.1) and hh.Ena == pytest.approx(0.1)
    v = np.linspace(-0.05, 0.2, 7).reshape(7, 1)
    alpha, beta = nd.hh_rates(np.float64(0.03), hh.params.gates)
    assert hh.m.alpha(0.03) == pytest.approx(float(alpha[0]), rel=1e-14)
    assert hh.h.beta(0.03) == pytest.approx(float(beta[1]), rel=1e-14)
    assert hh.n.inf(v).shape == (7, 1)
    np.testing.assert_allclose(hh.n.tau(v), 1 / (hh.n.alpha(v) + hh.n.beta(v)), rtol=1e-14)
    m, h, n = 0.3, 0.5, 0.4
    assert hh.Ina(0.02, m, h) == pytest.approx(hh.gna * m**3 * h * (0.02 - hh.Ena), rel=1e-13)
    assert hh.Ik(0.02, n) == pytest.approx(hh.gk * n**4 * (0.02 - hh.Ek), rel=1e-13)
    assert hh.Il(0.02) == pytest.approx(hh.gl * (0.02 - hh.El), rel=1e-13)
    total = hh.Ina(0.02, m, h) + hh.Ik(0.02, n) + hh.Il(0.02)
    assert hh.i_int(0.02, m, h, n) == pytest.approx(total, rel=1e-13)


@pytest.mark.slow
def test_neurodyn_model_defaults_simulate_and_vclamp():
    chip = NeuroDynModel()
    assert chip.V_ref == 0.9 and chip.I_voltage == 150e-9 and chip.I_master == 200e-9
    np.testing.assert_array_equal(chip.dg, [1023, 307, 3])
    sol = chip.simulate((0, 0.02), [0.7, 0, 0, 0], lambda t: 0.0)
    assert sol.y.shape == (4, sol.t.size) and sol.success
    assert int(nd.count_spikes(sol.y[0], 0.9, 0.05)) == 11
    clamp = chip.vclamp((0, 0.001), [0.7, 0, 0, 0], nd.step(0.95, 0.0002, 0.0008, baseline=0.7))
    assert clamp.y.shape == (3, clamp.t.size) and clamp.I.shape == (3, clamp.t.size)
    np.testing.assert_allclose(clamp.V[clamp.t < 0.0002], 0.7)
    np.testing.assert_allclose(clamp.Ina, chip.Ina(clamp.V, clamp.y[0], clamp.y[1]), rtol=1e-12)


def test_perturb_is_a_chip_property_and_reproducible_by_seed():
    a, b = NeuroDynModel(seed=5), NeuroDynModel(seed=5)
    a.perturb()
    b.perturb()
    np.testing.assert_array_equal(np.asarray(a.params.i_b), np.asarray(b.params.i_b))
    before = np.asarray(a.params.g)
    a.perturb()  # a new draw replaces the old one
    assert not np.allclose(np.asarray(a.params.g), before)
    # new words keep the chip's mismatch
    mm = a.chip.mismatch
    a.update_dg([1000, 300, 5])
    nominal = NeuroDynModel(dg=[1000, 300, 5])
    np.testing.assert_allclose(
        np.asarray(a.params.g), np.asarray(nominal.params.g) * np.asarray(mm.g), rtol=1e-15
    )
    a.update_dIb(np.full((3, 2, 7), 2))
    np.testing.assert_allclose(np.asarray(a.params.i_b), 2 * 200e-9 / 1024 * np.asarray(mm.i_b), rtol=1e-15)
    a.update_dErev([800, -800, -500])
    np.testing.assert_allclose(
        np.asarray(a.params.e_rev) - 0.9,
        np.array([800, -800, -500]) * 150e-9 / 1024 * 1.63e6 * np.asarray(mm.e_rev),
        rtol=1e-13,
    )
    # an explicit key gives the same chip whatever the seed
    c, d = NeuroDynModel(seed=1), NeuroDynModel(seed=2)
    c.perturb(key=jax.random.key(9))
    d.perturb(key=jax.random.key(9))
    np.testing.assert_array_equal(np.asarray(c.params.i_b), np.asarray(d.params.i_b))
    # without a seed, two models draw different chips
    e, f = NeuroDynModel(), NeuroDynModel()
    assert not np.allclose(np.asarray(e.perturb().params.g), np.asarray(f.perturb().params.g))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(dg=[1023, 307]), r"dg must have shape \(3,\), got \(2,\)"),
        (dict(dg=[1024, 307, 3]), r"dg words must lie in 0\.\.1023; entry \(0,\) is 1024"),
        (dict(dg=[10.5, 307, 3]), "dg must hold integer words"),
        (dict(dErev=[829, -1024, 0]), r"dErev words must lie in -1023\.\.1023"),
        (dict(dIb=np.zeros((3, 7))), r"dIb must have shape \(3, 2, 7\)"),
        (dict(dIb=np.full((3, 2, 7), -1)), r"dIb words must lie in 0\.\.1023"),
        (dict(dg=[np.nan, 1, 1]), "dg must be finite"),
        (dict(V_ref=2.5), "V_ref"),
        (dict(I_master=-1e-9), "I_master"),
        (dict(capacitance_scaling=0), "capacitance_scaling"),
        (dict(dg=[1e-6, 2e-6, -1e-9], digital_values=False), "dg physical values must be non-negative"),
    ],
)
def test_neurodyn_bad_words_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NeuroDynModel(**kwargs)


def test_update_and_simulate_errors():
    chip = NeuroDynModel()
    with pytest.raises(ValueError, match="dIb words must lie"):
        chip.update_dIb(np.full((3, 2, 7), 2000))
    with pytest.raises(ValueError, match="sigma"):
        chip.perturb(sigma=-0.1)
    with pytest.raises(ValueError, match=r"y0 must have shape \(4,\)"):
        chip.simulate((0, 0.01), [0.7, 0, 0], 0.0)
    with pytest.raises(ValueError, match="reversed"):
        chip.simulate((0.01, 0), [0.7, 0, 0, 0], 0.0)
    with pytest.raises(ValueError, match="trange"):
        chip.simulate(0.01, [0.7, 0, 0, 0], 0.0)
    with pytest.raises(TypeError, match="Iapp|stim"):
        chip.simulate((0, 0.01), [0.7, 0, 0, 0], "zero")
    with pytest.raises(RuntimeError, match="max_steps"):
        chip.simulate((0, 0.01), [0.7, 0, 0, 0], 0.0, max_steps=5)
    with pytest.raises(ValueError, match="gna must be >= 0"):
        HHModel(gna=-1)
    with pytest.raises(ValueError, match="scl_v must be > 0"):
        HHModel(scl_v=0)
    with pytest.raises(ValueError, match="Ena must be a finite number"):
        HHModel(Ena=float("inf"))
