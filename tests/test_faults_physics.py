"""Faults of the solve itself (issue 13): a state that turns non-finite ends the solve within a few
steps with its own status, an initial state outside the model's states is refused, and ``simulate``
under an outer ``jit``/``vmap`` takes concrete closed-over parameters and a traced stimulus."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ndjax as nd
from ndjax import studies
from ndjax._checks import status_code

TS_HH = jnp.linspace(0.0, 50.0, 11)


# ---- a non-finite state ends the solve -----------------------------------------------------------


def test_a_non_finite_state_from_the_start_stops_within_a_few_steps():
    """c = 0: every trial step is inf. Before, the controller rejected steps until max_steps and
    reported a step limit; now 300 steps are more than enough to end with the non-finite status."""
    tr = nd.simulate(nd.HH, nd.hh_params(c=0.0), nd.step(10.0, 0.0), jnp.zeros(4), TS_HH, max_steps=300)
    assert not bool(tr.ok) and not bool(tr.max_steps_reached)
    assert int(status_code(tr.ok, tr.max_steps_reached)) == nd.Status.NOT_FINITE
    with pytest.raises(RuntimeError, match=r"non-finite \(NaN or inf\) before the first save time"):
        nd.check_trace(tr, 300)


def test_a_state_that_turns_non_finite_mid_solve_stops_there():
    """A step to 1e308 at t = 5 ms makes the state inf there: 40 accepted steps, then a stop (not a
    stall until max_steps); the message says where (the same compiled solve as above)."""
    tr = nd.simulate(nd.HH, nd.hh_params(), nd.step(1e308, 5.0), jnp.zeros(4), TS_HH, max_steps=300)
    assert not bool(tr.ok) and not bool(tr.max_steps_reached) and int(tr.n_steps) > 0
    with pytest.raises(RuntimeError, match=r"non-finite \(NaN or inf\) after t = 0 \(the last save time"):
        nd.check_trace(tr)


# ---- initial states outside [0, 1] ---------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: nd.simulate(nd.HH, nd.hh_params(), 10.0, jnp.array([0.0, 1.5, 0, 0]), TS_HH),
            r"y0\[1\] \(gate m\) must lie in \[0, 1\].*got 1.5",
        ),
        (
            lambda: nd.simulate(nd.NEURODYN, nd.chip_params(nd.nd_chip()), 0.0, [0.7, 0, 0, -0.2], TS_HH),
            r"y0\[3\] \(gate n\) must lie in \[0, 1\]",
        ),
        (
            lambda: nd.vclamp(nd.HH, nd.hh_params(), 10.0, jnp.array([0.0, 1.01, 0.0]), TS_HH),
            r"x0\[1\] \(gate h\) must lie in \[0, 1\]",
        ),
        (lambda: nd.HHModel().simulate((0, 1), [0, 0, 2, 0], 10.0), r"y0\[2\] \(gate h\)"),
        (lambda: nd.NeuroDynModel(seed=0).simulate((0, 1e-3), [0.7, -1, 0, 0], 0.0), r"y0\[1\] \(gate m\)"),
    ],  # fmt: skip
)
def test_gates_outside_zero_one_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_study_refuses_gates_outside_zero_one():
    chip = nd.nd_chip()
    with pytest.raises(ValueError, match=r"y0\[3\] \(gate n\) must lie in \[0, 1\]"):
        studies.Study(words=chip.words, biases=chip.biases, currents=np.array([0.0]),
                      ts=np.linspace(0, 1e-3, 3), y0=np.array([0.7, 0, 0, 1.01]), threshold=0.9,
                      hysteresis=0.05)  # fmt: skip


# ---- simulate under an outer jit/vmap --------------------------------------------------------------


def test_simulate_under_an_outer_jit_and_vmap():
    """Concrete parameters closed over, the current traced: both crashed in the boundary checks."""
    p = nd.chip_params(nd.nd_chip())
    y0, ts = jnp.array([0.7, 0.0, 0.0, 0.0]), jnp.linspace(0.0, 2e-3, 5)
    currents = jnp.array([0.0, 1e-10])
    v, ok = jax.jit(
        jax.vmap(lambda i: (lambda tr: (tr.ys[:, 0], tr.ok))(nd.simulate(nd.NEURODYN, p, i, y0, ts)))
    )(currents)
    assert v.shape == (2, 5) and bool(np.all(ok)) and np.all(np.isfinite(np.asarray(v)))
    bad = jax.tree.map(lambda x: x * jnp.nan, p)  # concrete bad parameters are still refused, at trace time
    with pytest.raises(ValueError, match="is not finite"):
        jax.jit(jax.vmap(lambda i: nd.simulate(nd.NEURODYN, bad, i, y0, ts).ys[:, 0]))(currents)


# ---- a failed reference is never used as data ----------------------------------------------------
# The default HH target stalls at -100 uA/cm^2 (step limit of its tight reference solve), a current
# the fit kind's schema allows; the nominal chip fails with a step budget of 50.

TARGET, WORDS0 = nd.make_target()


def test_the_hh_reference_raises_naming_the_current():
    from ndjax.fit._objectives import prepare_problem

    with pytest.raises(
        nd.SolveFailedError, match=r"the HH target failed at -100 uA/cm\^2 \(step limit"
    ) as info:
        prepare_problem(TARGET, [0.0, -100.0], 100.0, 2)
    assert info.value.index == 1 and info.value.status == nd.Status.MAX_STEPS
    # the HH reference of a study: the chip's words do not matter, only the target and the currents
    currents = np.asarray(TARGET.chip_current(np.array([0.0, -100e-6])))
    study = studies.Study(words=nd.nd_chip().words, biases=TARGET.chip(WORDS0).biases,
                          y0=np.array([TARGET.v_shift, 0, 0, 0]), currents=currents,
                          ts=np.linspace(0.0, 0.1 / TARGET.scl_t, 2), threshold=0.9,
                          hysteresis=0.05)  # fmt: skip
    with pytest.raises(nd.SolveFailedError, match=r"failed at -100 uA/cm\^2"):
        studies.hh_reference(study, TARGET)


NOMINAL_FAILS = """
kind = "mismatch"
[currents]
values = [0.0, 0.5]
span_ms = 5.0
n_save = 11
[spikes]
threshold = 0.9
hysteresis = 0.05
[solver]
max_steps = 50
"""


def test_a_study_refuses_a_failed_nominal_reference():
    from ndjax.cli._main import parse_config
    from ndjax.cli._schema import ConfigError
    from ndjax.cli.kinds import mismatch

    with pytest.raises(ConfigError) as info:
        mismatch.prepare(parse_config(NOMINAL_FAILS))
    ((path, message),) = info.value.errors
    assert path == "currents.values[0]"
    assert message.startswith(
        "the nominal chip failed at 0 nA (step limit reached): the solver hit max_steps"
    )


def test_the_fit_kind_refuses_currents_where_hh_fails():
    from ndjax.cli._main import validate_config
    from ndjax.cli._schema import ConfigError
    from ndjax.cli.kinds import fit

    for currents, key in [
        ({"fit": [0.0, -100.0, 10.0]}, "currents.fit[1]"),
        ({"fit": [0.0, 10.0], "evaluate": [-100.0, 2.5, 5.0, 20.0]}, "currents.evaluate[0]"),
    ]:
        with pytest.raises(ConfigError) as info:
            fit.prepare(validate_config({"kind": "fit", "currents": currents}))
        ((path, message),) = info.value.errors
        assert path == key and "the HH target failed at -100 uA/cm^2" in message


# ---- current lists and spans at the fit's API boundary -------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: nd.fit_words(TARGET, WORDS0, [0.0, float("nan")]),
            r"fit_words: currents_ua\[1\] must be a finite",
        ),
        (lambda: nd.fit_words(TARGET, WORDS0, []), r"fit_words: currents_ua must be a non-empty"),
        (
            lambda: nd.fit_words(TARGET, WORDS0, [1.0], t_hh_ms=float("inf")),
            r"fit_words: t_hh_ms must be > 0 and finite",
        ),
        (lambda: nd.evaluate_words(TARGET, WORDS0, [float("inf")]), r"evaluate_words: currents_ua\[0\]"),
        (lambda: nd.evaluate_words(TARGET, WORDS0, []), r"evaluate_words: currents_ua must be a non-empty"),
        (lambda: nd.fit.prepare_problem(TARGET, [[1.0]], 100.0, 10), r"prepare_problem: currents_ua must be"),
        (
            lambda: nd.fit.prepare_problem(TARGET, [1.0], 100.0, 1),
            r"prepare_problem: n_save must be an integer >= 2",
        ),
        (lambda: nd.fit.fi_curve(TARGET, WORDS0, t_hh_ms=float("nan")), r"fi_curve: t_hh_ms must be > 0"),
        (
            lambda: nd.fit.auto_currents(TARGET, t_hh_ms=-1.0),
            r"auto_currents: t_hh_ms must be > 0 and finite",
        ),
        (lambda: nd.fit.auto_currents(TARGET, n_save=0), r"auto_currents: n_save must be an integer >= 2"),
    ],  # fmt: skip
)
def test_the_fit_api_refuses_meaningless_currents_and_spans(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---- list-valued config keys are never empty -----------------------------------------------------


def test_an_empty_list_is_refused_by_the_schema():
    from ndjax.cli._main import parse_config
    from ndjax.cli._schema import ConfigError

    for text, key in [('kind = "mismatch"\n[study]\nsigma = []\n', "study.sigma"),
                      ('kind = "fit"\n[currents]\nevaluate = []\n', "currents.evaluate"),
                      ('kind = "fit"\n[currents]\nfit = []\n', "currents.fit")]:  # fmt: skip
        with pytest.raises(ConfigError) as info:
            parse_config(text)
        assert (key, "expected at least 1 value(s), got an empty array") in info.value.errors


# ---- mismatch that makes a factor <= 0 -----------------------------------------------------------


def test_unphysical_chips_are_as_frequent_as_the_normal_tails_say():
    """physical_mismatch on 20,000 drawn chips against the analytic fraction (48 factors
    1 + sigma N(0, 1) and 3 powers): within 4 binomial standard errors at each sigma."""
    from ndjax.models import physical_mismatch, unphysical_fraction

    n = 20_000
    for sigma in (0.15, 0.3, 0.5):
        mm = jax.vmap(lambda i, s=sigma: nd.sample_mismatch(jax.random.fold_in(jax.random.key(7), i), s))(
            jnp.arange(n)
        )
        seen = float(np.mean(~np.asarray(physical_mismatch(jax.tree.map(np.asarray, mm)))))
        expected = unphysical_fraction(sigma)
        assert abs(seen - expected) <= 4 * np.sqrt(expected * (1 - expected) / n) + 1e-12, (sigma, seen)
    assert unphysical_fraction(0.15) < 1e-8 and 0.6 < unphysical_fraction(0.5) < 0.7  # most chips at 0.5
    assert unphysical_fraction(0.15, kappa_sigma=0.5) > unphysical_fraction(0.15)


# ---- sizes that would exhaust memory -------------------------------------------------------------


def test_sizes_beyond_the_memory_are_refused_with_the_estimate(monkeypatch):
    from ndjax import _memory
    from ndjax._memory import BYTES_PER_SAMPLE, format_bytes, memory_problem
    from ndjax.cli._main import validate_config
    from ndjax.cli._schema import ConfigError
    from ndjax.cli.kinds import fit, mismatch, simulate

    assert memory_problem(10, 100, "x", "k", available=10 * 100 * BYTES_PER_SAMPLE) is None
    message = memory_problem(512, 1_000_000, "512 jobs", "solver.block", available=10**9)
    assert "about 16.4 GB" in message and "1 GB available" in message and "lower solver.block" in message
    assert format_bytes(1.5e12) == "1.5 TB"
    cases = [
        (mismatch, {"kind": "mismatch", "currents": {"n_save": 1_000_000}, "solver": {"block": 1_000_000}},
         "solver.block"),
        (fit, {"kind": "fit", "optimizer": {"n_save": 10_000_000, "calibrate": {"population": 1000}}},
         "optimizer"),
        (simulate, {"kind": "simulate", "solver": {"n_save": 10_000_000},
                    "models": [{"type": "hh", "t1": 100.0}]}, "solver.n_save"),
    ]  # fmt: skip
    assert _memory.available_bytes() > 0  # this machine's, read from the OS
    monkeypatch.setattr(_memory, "available_bytes", lambda: 10**9)  # a 1 GB machine, whatever this one is
    for module, raw, key in cases:
        with pytest.raises(ConfigError) as info:
            module.prepare(validate_config(raw))  # refused before anything is solved
        (path, msg), *_ = info.value.errors
        assert path == key and "save points would hold about" in msg and "available" in msg, msg
