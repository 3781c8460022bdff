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
