"""The fit's stages, each alone from a given start, and fit_words composing them."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ndjax as nd
from ndjax import fit
from ndjax.fit import CalibrateSettings, FitSettings, GradientSettings, PolishSettings, _gradient
from ndjax.fit import _wordspace as W
from ndjax.fit._objectives import word_scores
from ndjax.fit._polish import MIN_GAIN
from ndjax.fit._simulate_pair import as_words
from ndjax.models._neurodyn import NDWords


def test_polish_moves_are_distinct_in_range_single_word_steps():
    flat = np.zeros(48)
    flat[0], flat[1], flat[3], flat[6], flat[7] = 1023, 500, -1023, 20, 1  # dg, dErev, dIb
    steps, word = fit.polish_moves(flat)
    moved = flat[None] + steps
    assert np.all(np.count_nonzero(steps, axis=1) == 1)
    np.testing.assert_array_equal(word, np.argmax(steps != 0, axis=1))
    assert np.all(moved >= W.WORD_LO) and np.all(moved <= W.WORD_HI)
    assert len(np.unique(steps, axis=0)) == len(steps)  # no duplicates, and no no-op
    # 1023: only down (-1, -31); 500: +-1 and +-15; 20 and 1: +-1 only; 0 (dIb): +1 only
    assert sorted(steps[word == 0, 0]) == [-31.0, -1.0]
    assert sorted(steps[word == 1, 1]) == [-15.0, -1.0, 1.0, 15.0]
    assert sorted(steps[word == 6, 6]) == [-1.0, 1.0] and sorted(steps[word == 7, 7]) == [-1.0, 1.0]
    assert sorted(steps[word == 3, 3]) == [1.0, 31.0]  # dErev at -1023
    assert sorted(steps[word == 8, 8]) == [1.0]
    # dErev words at 0 can move both ways
    assert sorted(steps[word == 4, 4]) == [-1.0, 1.0]


def test_each_stage_checks_its_settings_before_it_solves_anything():
    with pytest.raises(ValueError, match="calibrate: invalid settings: population must be >= 2"):
        fit.calibrate([None], [None], CalibrateSettings(population=1))
    with pytest.raises(ValueError, match="calibrate: expected one start per problem, got 0 for 1"):
        fit.calibrate([None], [], CalibrateSettings())
    with pytest.raises(ValueError, match="gradient: invalid settings: learning_rate must be > 0"):
        fit.gradient(None, None, GradientSettings(learning_rate=0.0))
    with pytest.raises(ValueError, match="polish: invalid settings: sweeps must be >= 0"):
        fit.polish(None, [None], PolishSettings(sweeps=-1))
    with pytest.raises(ValueError, match="polish: expected at least one start"):
        fit.polish(None, [], PolishSettings())


def _quadratic(words, fixed):
    _quadratic.traces += 1  # runs only while jax traces the step
    return jnp.sum((W.flatten_words(words) - fixed) ** 2), None


def test_the_gradient_step_compiles_once_and_moves_only_the_trusted_words():
    # the stage's optimiser, state, mask and projection on a cheap loss: four steps, one trace.
    # Words from NumPy, as the stage gets them (make_target, apply_factors): weakly typed words
    # (jnp.full(3, 10.0)) come back strongly typed from the first step, and the second compiles again
    _quadratic.traces = 0
    words = NDWords(*(jnp.asarray(x) for x in (np.full(3, 10.0), np.zeros(3), np.full((3, 2, 7), 5.0))))
    optim = fit.adam()
    state = fit.init_optimizer(optim, words, 1.0)
    trust = jax.tree.map(lambda x: jnp.abs(jnp.round(x)) >= GradientSettings().min_word, words)
    for _ in range(4):
        words, state, value, _ = fit.optax_step(_quadratic, optim, words, state, jnp.zeros(48), trust,
                                                project=_gradient.in_word_box)  # fmt: skip
    assert _quadratic.traces == 1
    # Adam's steps are the learning rate (1 LSB) times m/sqrt(v), just under 1 here as the gradient
    # 2 (g - 0) shrinks from step to step; untrusted words stay exactly where they were
    assert np.all((words.g > 6.0) & (words.g < 6.1))
    np.testing.assert_array_equal(words.e_rev, 0.0)
    np.testing.assert_array_equal(words.i_b, 5.0)


# ---- the stages on a tiny problem (one compile of each batch shape: slow on a CPU) --------------
# Every test below uses the same problem and the same batch shapes (a population of 4 in 2 CMA-ES
# runs, polish candidates of one sweep), so that each jitted score and step compiles once for all.

CURRENTS, SPAN_MS, N_SAVE = [0.0, 10.0], 10.0, 100
CALIBRATE = CalibrateSettings(generations=2, population=4, restarts=2, extend=0)


@pytest.fixture(scope="module")
def tiny():
    """The guide's target at 0 and 10 uA/cm^2 for 10 ms of HH time (HH fires once at 10)."""
    target, words0 = fit.make_target()
    return fit.prepare_problem(target, CURRENTS, SPAN_MS, N_SAVE), words0


def _score(problem, words) -> float:
    """The score of the rounded chip (NDWords or an integer tuple), as the stages judge it."""
    words = as_words(words)
    flat = np.concatenate([np.ravel(x) for x in W.integer_words(words)]).astype(float)
    return float(word_scores(problem.template, jnp.asarray(flat)[None], problem.data)[0])


@pytest.mark.slow
def test_calibrate_alone_scores_its_start_and_keeps_the_best_run(tiny):
    problem, words0 = tiny
    still = fit.calibrate([problem], [words0], dataclasses.replace(CALIBRATE, generations=0))
    assert still.index == 0 and len(still.runs) == 2 and still.trace == still.scores
    for score, words in still.runs:  # nothing moved: every run is at the start
        assert score == still.trace[0]
        for a, b in zip(jax.tree.leaves(words), jax.tree.leaves(words0), strict=True):
            np.testing.assert_array_equal(a, b)
    assert still.trace[0] == pytest.approx(_score(problem, words0), rel=1e-12)  # the same chip, scored
    moved = fit.calibrate([problem], [words0], CALIBRATE, seed=3)
    assert len(moved.trace) == 3 and moved.trace[0] == still.trace[0]
    assert moved.trace[2] <= moved.trace[1] <= moved.trace[0]
    scores = [s for s, _ in moved.runs]
    assert scores == sorted(scores) and scores[0] == moved.trace[-1]


@pytest.mark.slow
def test_gradient_alone_keeps_the_best_rounded_chip_and_traces_its_loss_once(tiny, monkeypatch):
    problem, words0 = tiny
    still = fit.gradient(problem, words0, GradientSettings(steps=0))
    assert still.words is words0 and still.losses == [] and len(still.scores) == 1
    traces, original = [], _gradient.grad_loss

    def counted(words, fixed):
        traces.append(1)  # runs only while jax traces the step
        return original(words, fixed)

    monkeypatch.setattr(_gradient, "grad_loss", counted)
    moved = fit.gradient(problem, words0, GradientSettings(steps=3))
    assert len(traces) == 1  # three steps, one compiled step
    assert len(moved.losses) == 3 and all(np.isfinite(moved.losses))
    assert len(moved.scores) == 2 and moved.scores[0] == still.scores[0]  # the start, then step 3
    assert _score(problem, moved.words) == pytest.approx(min(moved.scores), rel=1e-12)


@pytest.mark.slow
def test_polish_alone_returns_its_start_without_sweeps_and_improves_with_them(tiny):
    problem, words0 = tiny
    still = fit.polish(problem, [words0, words0], PolishSettings(sweeps=0))
    for a, b in zip(still.words, W.integer_words(words0), strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(still.scores) == 1 and still.start_scores == [still.scores]  # the twin start polished once
    moved = fit.polish(problem, [words0], PolishSettings(sweeps=1, combine=3))
    assert len(moved.scores) in (1, 2) and moved.scores[0] == still.scores[0]
    if len(moved.scores) == 2:  # a sweep is kept only when it gains more than MIN_GAIN
        assert moved.scores[1] < moved.scores[0] - MIN_GAIN
    assert _score(problem, moved.words) == pytest.approx(moved.scores[-1], rel=1e-12)


@pytest.mark.slow
def test_short_fit_lowers_its_objective_and_returns_words_in_range(tiny):
    _, words0 = tiny
    target, _ = fit.make_target()
    # retry_above 0: the whole fit runs again with the next seed and the better one is kept
    # extend_above 0: the calibration goes on by 2 generations while that gains 5%, to 8 at most
    settings = FitSettings(
        n_save=N_SAVE, retry_above=0.0, retries=1,
        calibrate=dataclasses.replace(CALIBRATE, generations=4, extend=2, extend_above=0.0, extend_max=1.0),
        gradient=GradientSettings(steps=3), polish=PolishSettings(sweeps=2),
    )  # fmt: skip
    out = fit.fit_words(target, words0, CURRENTS, t_hh_ms=SPAN_MS, settings=settings, progress=None)
    es = out.history["es"]
    assert len(es) - 1 in (6, 8)
    assert (es[6] > 0.95 * es[4]) == (len(es) - 1 == 6)  # stopped after an extension that gained < 5%
    (seed0, score0), (seed1, score1) = out.history["attempts"]
    assert (seed0, seed1) == (0, 1) and score0 != score1  # another seed, another fit
    assert out.history["polish"][-1] == min(score0, score1)
    assert out.history["es"][-1] < out.history["es"][0]
    assert out.history["polish"][-1] <= out.history["es"][-1]
    assert all(np.isfinite(out.history["grad"]))
    assert list(out.history) == ["es", "grad", "polish", "grad_score", "polish_starts", "attempts"]
    assert set(out.seconds) == {"calibrate", "gradient", "polish"} and out.currents == tuple(CURRENTS)
    dg, de, dib = out.words
    assert dg.shape == (3,) and de.shape == (3,) and dib.shape == (3, 2, 7)
    assert dg.dtype.kind == "i" and dg.min() >= 0 and dg.max() <= 1023
    assert de.min() >= -1023 and de.max() <= 1023 and dib.min() >= 0 and dib.max() <= 1023
    # the returned words are a chip ndjax accepts, and the NNLS-rounded words are kept beside them
    nd.NeuroDynModel(dg, de, dib, 0.9, target.i_voltage, target.i_master,
                     capacitance_scaling=target.capacitance_scaling)  # fmt: skip
    assert len(out.nnls_words) == 3


@pytest.mark.slow
def test_compat_fit_end_to_end_maps_the_guides_objects_onto_the_fit():
    from ndjax.compat import FitND, HHModel

    # a model that is not the default, on its own time scale: the fit's target is the same model in
    # classic units at scl_t 1, with FitND's biases; no stage runs, so the NNLS words come back rounded
    hh = HHModel(gna=132, scl_v=2.5, scl_t=2.0, SI_units=True)
    out = FitND(hh, I_voltage=150e-9).fit_end_to_end(
        CURRENTS, t_hh_ms=SPAN_MS, progress=None,  # the shapes above: nothing new to compile
        settings=FitSettings(n_save=N_SAVE, retries=0, calibrate=CalibrateSettings(generations=0),
                             gradient=GradientSettings(steps=0), polish=PolishSettings(sweeps=0)),
    )  # fmt: skip
    outcome = out["outcome"]
    target = outcome.target
    assert target.hh == pytest.approx(dict(gna=132.0, gk=36.0, gl=0.3, ena=120.0, ek=-12.0, el=10.6))
    assert (target.scl_v, target.i_voltage, target.i_master, target.v_ref) == (2.5, 150e-9, 150e-9, 0.9)
    assert out["capacitance_scaling"] == target.capacitance_scaling == 0.03
    assert (out["scl_t"], out["scl_v"], out["I_voltage"], out["V_ref"]) == (target.scl_t, 2.5, 150e-9, 0.9)
    for key, word in zip(("dg", "dErev", "dIb"), outcome.words, strict=True):
        np.testing.assert_array_equal(out[key], word)
        assert out[key].dtype.kind == "i"
    for word, nnls in zip(outcome.words, outcome.nnls_words, strict=True):
        np.testing.assert_array_equal(word, np.round(nnls))
    # the largest conductance word at full scale ("conductance" speed), the documented current mapping
    assert out["dg"].max() == 1023
    assert target.chip_current(1e-6) == pytest.approx(2.5 * target.scl_t * 4e-12 * 0.03)
