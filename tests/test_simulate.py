"""simulate / vclamp: stimuli, jit, vmap, grad, failures and input errors."""

import dataclasses

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import central_difference, crossings
from reference import hh_reference_params, hh_rhs_ref, solve_reference

import ndjax as nd

Y0_ND = jnp.asarray([0.7, 0.0, 0.0, 0.0])
TS_ND = jnp.linspace(0.0, 0.005, 501)
TS_HH = jnp.linspace(0.0, 20.0, 401)
TIGHT = dict(stepsize_controller=nd.default_controller(1e-10, 1e-12))
TIGHT10 = dict(stepsize_controller=nd.default_controller(1e-10, 1e-10))


def _v_at(ts):
    return dfx.SaveAt(ts=ts, fn=_save_v)


def _save_v(t, y, args):
    return y[0]


# ---- stimuli -------------------------------------------------------------------------------


@pytest.mark.slow
def test_step_and_pulses_against_scipy():
    """Jumps are declared to the controller; the solution matches a tight solve with max_step."""
    ts = np.linspace(0.0, 30.0, 3001)
    for stim, f in [
        (nd.step(10.0, 5.0, 20.0), lambda t: 10.0 if 5.0 <= t < 20.0 else 0.0),
        (
            nd.pulses(15.0, 2.0, 1.0, 8.0, 3),
            lambda t: 15.0 if (t >= 2 and (t - 2) % 8 < 1 and t < 26) else 0.0,
        ),
    ]:
        pid = nd.default_controller(1e-9, 1e-9)
        tr = nd.simulate(nd.HH, nd.hh_params(), stim, jnp.zeros(4), ts, stepsize_controller=pid)
        assert bool(tr.ok)
        ref = solve_reference(
            hh_rhs_ref, hh_reference_params(), f, np.zeros(4), ts, rtol=1e-10, atol=1e-10, max_step=0.01
        )
        np.testing.assert_allclose(np.asarray(tr.ys[:, 0]), ref[:, 0], atol=2e-3)
        assert len(crossings(ts, ref[:, 0], 60.0)) >= 1


def test_stimulus_values():
    s = nd.step(2.0, 1.0, 3.0, baseline=0.5)
    assert [float(s(t)) for t in (0.0, 1.0, 2.9, 3.0)] == [0.5, 2.0, 2.0, 0.5]
    p = nd.pulses(1.0, 1.0, 0.5, 2.0, 2)
    assert [float(p(t)) for t in (0.9, 1.0, 1.4, 1.6, 3.2, 5.2)] == [0, 1, 1, 0, 1, 0]
    np.testing.assert_allclose(np.asarray(p.jump_ts), [1.0, 3.0, 1.5, 3.5])
    sm = nd.sampled([0.0, 1.0, 2.0], [0.0, 2.0, 0.0])
    assert float(sm(0.5)) == 1.0 and float(sm(5.0)) == 0.0
    # a callable that ignores t becomes a constant (no recompilation); others stay functions
    assert isinstance(nd._stimulus.as_stimulus(lambda t: 3.0), nd.Constant)
    assert isinstance(nd._stimulus.as_stimulus(lambda t: jnp.sin(t)), nd.Function)


# ---- vmap and jit ----------------------------------------------------------------------------


def _mismatched_chip(key):
    return dataclasses.replace(nd.nd_chip(), mismatch=nd.sample_mismatch(key, 0.15))


@pytest.mark.slow
def test_vmap_over_64_keys_equals_loop():
    keys = jax.random.split(jax.random.key(42), 64)

    def run(key):
        return nd.simulate(
            nd.NEURODYN, nd.chip_params(_mismatched_chip(key)), 0.0, Y0_ND, saveat=_v_at(TS_ND)
        )

    batched = jax.jit(jax.vmap(run))(keys)
    assert batched.ys.shape == (64, TS_ND.shape[0])
    assert bool(jnp.all(batched.ok))
    single = jax.jit(run)
    loop = np.stack([np.asarray(single(k).ys) for k in keys])
    np.testing.assert_allclose(np.asarray(batched.ys), loop, rtol=1e-9, atol=1e-12)
    # chips differ from one another, and the same key gives the same chip
    assert np.ptp(loop[:, -1]) > 1e-3
    np.testing.assert_array_equal(np.asarray(single(keys[3]).ys), loop[3])


@pytest.mark.slow
def test_vmap_over_params_inputs_and_initial_states():
    # ulp-level differences between batched and single kernels can flip one accept/reject
    # decision of the step controller, which moves the result by about the tolerance: so
    # solve tightly and compare at a level far above it
    run = jax.jit(lambda p, i, y0: nd.simulate(nd.HH, p, nd.Constant(i), y0, saveat=_v_at(TS_HH), **TIGHT).ys)
    gks = jnp.asarray([30.0, 36.0, 42.0])
    currents = jnp.asarray([0.0, 5.0, 12.0])
    y0s = jnp.asarray([[0.0, 0.05, 0.6, 0.3], [5.0, 0.1, 0.5, 0.35], [-5.0, 0.0, 0.7, 0.3]])
    params = jax.vmap(
        lambda g: dataclasses.replace(
            nd.hh_params(), g=jnp.asarray([120.0, 1.0, 0.3]) * jnp.asarray([1.0, g, 1.0])
        )
    )(gks)
    batched = jax.vmap(run)(params, currents, y0s)
    for i in range(3):
        p = jax.tree.map(lambda leaf, i=i: leaf[i], params)
        np.testing.assert_allclose(batched[i], run(p, currents[i], y0s[i]), rtol=0, atol=1e-7)
    # one parameter set, many currents
    many = jax.vmap(run, in_axes=(None, 0, None))(nd.hh_params(), currents, jnp.zeros(4))
    np.testing.assert_allclose(many[2], run(nd.hh_params(), 12.0, jnp.zeros(4)), rtol=0, atol=1e-7)


# ---- gradients -------------------------------------------------------------------------------


@pytest.mark.slow
def test_grad_hh_every_parameter_matches_finite_differences():
    """Every leaf of HHParams gets a finite gradient of a trace loss (jit around grad, as a fit
    step does); the conductances, a reversal and a rate constant against central differences."""
    ts = jnp.linspace(0.0, 10.0, 201)
    target = np.asarray(nd.simulate(nd.HH, nd.hh_params(), 10.0, jnp.zeros(4), ts, **TIGHT).ys[:, 0])

    def loss(p):
        v = nd.simulate(nd.HH, p, 10.0, jnp.zeros(4), saveat=_v_at(ts), **TIGHT).ys
        return jnp.mean((v - target) ** 2)

    p0 = dataclasses.replace(nd.hh_params(), g=jnp.asarray([110.0, 40.0, 0.35]))
    grads = jax.jit(jax.grad(loss))(p0)
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(leaf)), jax.tree_util.keystr(path)
    loss_jit = jax.jit(loss)  # one program for every finite difference
    g0 = np.asarray(p0.g)
    for i in range(3):
        fd = central_difference(lambda g: loss_jit(dataclasses.replace(p0, g=jnp.asarray(g))), g0, i, 1e-3)
        assert float(grads.g[i]) == pytest.approx(fd, rel=1e-4), (i, float(grads.g[i]), fd)
    ek = lambda x: loss_jit(dataclasses.replace(p0, e_rev=p0.e_rev.at[1].set(x[0])))  # noqa: E731
    assert float(grads.e_rev[1]) == pytest.approx(central_difference(ek, [-12.0], 0, 1e-3), rel=1e-4)
    bn = lambda x: loss_jit(  # noqa: E731
        dataclasses.replace(p0, gates=dataclasses.replace(p0.gates, b_a=p0.gates.b_a.at[2].set(x[0])))
    )
    assert float(grads.gates.b_a[2]) == pytest.approx(central_difference(bn, [0.125], 0, 1e-5), rel=1e-4)


@pytest.mark.slow
def test_grad_neurodyn_every_parameter_matches_finite_differences():
    """Every leaf of an NDChip (words, biases, mismatch) gets a finite gradient of a trace loss at
    relaxed (real-valued) words; words of each kind and a bias against central differences."""
    ts = jnp.linspace(0.0, 0.004, 201)
    chip = nd.nd_chip()
    target = np.asarray(nd.simulate(nd.NEURODYN, nd.chip_params(chip), 0.0, Y0_ND, ts, **TIGHT).ys[:, 0])

    def loss(c):
        v = nd.simulate(nd.NEURODYN, nd.chip_params(c), 0.0, Y0_ND, saveat=_v_at(ts), **TIGHT).ys
        return jnp.mean((v - target) ** 2) * 1e6

    w = chip.words
    x0 = np.concatenate([np.asarray(w.g), np.asarray(w.e_rev), np.asarray(w.i_b).ravel()]) * 1.03 + 0.4

    def relaxed(flat):
        words = nd.NDWords(g=flat[:3], e_rev=flat[3:6], i_b=flat[6:].reshape(3, 2, 7))
        return dataclasses.replace(chip, words=words, mismatch=nd.sample_mismatch(jax.random.key(0)))

    c0 = relaxed(jnp.asarray(x0))
    grads = jax.jit(jax.grad(loss))(c0)
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(leaf)), jax.tree_util.keystr(path)
    flat_grad = np.concatenate(
        [np.ravel(np.asarray(x)) for x in (grads.words.g, grads.words.e_rev, grads.words.i_b)]
    )
    loss_jit = jax.jit(loss)  # one program for every finite difference
    # dg Na, dg K, dE Na, dE K, alpha_m top sigmoid, beta_n first sigmoid
    for i in (0, 1, 3, 4, 6 + 6, 6 + 2 * 14 + 7):
        fd = central_difference(lambda x: loss_jit(relaxed(jnp.asarray(x))), x0, i, 1e-2)
        assert flat_grad[i] == pytest.approx(fd, rel=1e-3, abs=1e-9), (i, flat_grad[i], fd)

    def with_i_voltage(x):
        return loss_jit(dataclasses.replace(c0, biases=dataclasses.replace(c0.biases, i_voltage=x[0])))

    fd = central_difference(with_i_voltage, [150e-9], 0, 1e-11)
    assert float(grads.biases.i_voltage) == pytest.approx(fd, rel=1e-4)


# ---- voltage clamp ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["hh", "neurodyn"])
def test_vclamp_constant_voltage_is_exponential_relaxation(model):
    """At fixed V the gates obey x(t) = x_inf + (x0 - x_inf) exp(-t / tau): exact."""
    if model == "hh":
        core, params, v, ts = nd.HH, nd.hh_params(), 40.0, jnp.linspace(0.0, 10.0, 101)
        alpha, beta = nd.hh_rates(v, params.gates)
    else:
        core, params, v, ts = nd.NEURODYN, nd.chip_params(nd.nd_chip()), 0.95, jnp.linspace(0.0, 0.002, 101)
        alpha, beta = nd.nd_rates(v, params)
    x0 = jnp.asarray([0.05, 0.6, 0.3])
    tr = nd.vclamp(core, params, v, x0, ts, **TIGHT)
    assert bool(tr.ok)
    x_inf, tau = alpha / (alpha + beta), 1 / (alpha + beta)
    exact = x_inf[None, :] + (x0 - x_inf)[None, :] * jnp.exp(-ts[:, None] / tau[None, :])
    np.testing.assert_allclose(np.asarray(tr.gates), np.asarray(exact), atol=1e-8)
    np.testing.assert_allclose(np.asarray(tr.v), v)
    want = jax.vmap(core.currents, in_axes=(None, 0, None))(v, tr.gates, params)
    np.testing.assert_allclose(np.asarray(tr.currents), np.asarray(want), rtol=1e-14)


def test_vclamp_replaying_a_trace_reproduces_its_gates():
    """Clamping V to a recorded HH trace gives back that trace's gates."""
    ts = jnp.linspace(0.0, 10.0, 4001)
    tr = nd.simulate(nd.HH, nd.hh_params(), 10.0, jnp.zeros(4), ts, **TIGHT10)
    clamp = nd.vclamp(nd.HH, nd.hh_params(), nd.sampled(ts, tr.ys[:, 0]), jnp.zeros(3), ts, **TIGHT10)
    np.testing.assert_allclose(np.asarray(clamp.gates), np.asarray(tr.ys[:, 1:]), atol=2e-3)


# ---- failures and bad input ------------------------------------------------------------------


def test_max_steps_is_reported_not_truncated():
    tr = nd.simulate(nd.HH, nd.hh_params(), 10.0, jnp.zeros(4), TS_HH, max_steps=20)
    assert not bool(tr.ok) and bool(tr.max_steps_reached)
    with pytest.raises(RuntimeError, match="max_steps"):
        nd.check_trace(tr, 20)


def test_non_finite_blow_up_is_reported():
    bad = dataclasses.replace(nd.hh_params(), c_m=jnp.asarray(-1e-9))  # negative capacitance explodes
    tr = nd.simulate(nd.HH, bad, 10.0, jnp.zeros(4), TS_HH)
    assert not bool(tr.ok)
    with pytest.raises(RuntimeError):
        nd.check_trace(tr)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(ts=None, t0=5.0, t1=1.0), ValueError, "reversed"),
        (dict(ts=None, t0=1.0, t1=1.0), ValueError, "empty"),
        (dict(ts=np.array([0.0, 2.0, 1.0])), ValueError, "non-decreasing"),
        (dict(ts=np.array([0.0, np.nan])), ValueError, "finite"),
        (dict(y0=np.zeros(3)), ValueError, r"y0 must have shape \(4,\)"),
        (dict(y0=np.array([0.0, np.inf, 0, 0])), ValueError, "y0 must be finite"),
        (dict(stim="ten"), TypeError, "stim must be a number"),
        (dict(stim=lambda t: jnp.ones(2)), ValueError, "must return a scalar"),
        (dict(stim=float("nan")), ValueError, "finite"),
        (dict(max_steps=0), ValueError, "max_steps"),
        (
            dict(params=dataclasses.replace(nd.hh_params(), g=jnp.asarray([120.0, np.nan, 0.3]))),
            ValueError,
            r"parameter \.g is not finite",
        ),
    ],
)
def test_bad_input_raises_naming_the_argument(kwargs, exc, match):
    args = dict(params=nd.hh_params(), stim=10.0, y0=np.zeros(4), ts=np.linspace(0, 1, 11))
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        nd.simulate(nd.HH, args.pop("params"), args.pop("stim"), args.pop("y0"), **args)


# ---- any pytree state ---------------------------------------------------------------------------


def _pair_state(params):
    one = jax.ShapeDtypeStruct((4,), jnp.result_type(float))
    return {"a": one, "b": one}


def _pair_field(t, y, args):
    """Two uncoupled HH neurons, the second at twice the current: a state that is not one array."""
    params, stim = args
    double = nd.Constant(2.0 * stim(t))
    return {
        "a": nd.hh_vector_field(t, y["a"], (params, stim)),
        "b": nd.hh_vector_field(t, y["b"], (params, double)),
    }


PAIR = nd.Model("pair", _pair_field, nd.HH.rates, nd.HH.currents, _pair_state)


def test_a_pytree_state_solves_like_its_parts():
    ts = jnp.linspace(0.0, 10.0, 21)
    y0 = {"a": jnp.zeros(4), "b": jnp.zeros(4)}
    pair = nd.simulate(PAIR, nd.hh_params(), 5.0, y0, ts, **TIGHT)
    assert bool(pair.ok) and pair.ys["a"].shape == pair.ys["b"].shape == (21, 4)
    for key, amp in (("a", 5.0), ("b", 10.0)):
        alone = nd.simulate(nd.HH, nd.hh_params(), amp, jnp.zeros(4), ts, **TIGHT)
        # the pair's steps are chosen for both neurons together: agreement to the tolerance, not bits
        np.testing.assert_allclose(np.asarray(pair.ys[key]), np.asarray(alone.ys), atol=1e-6)


@pytest.mark.parametrize(
    "y0, message",
    [
        ({"a": jnp.zeros(4)}, "must be a pytree of the structure"),
        ({"a": jnp.zeros(4), "b": jnp.zeros(3)}, r"y0\['b'\] must have shape \(4,\), got \(3,\)"),
        ({"a": jnp.zeros(4), "b": jnp.array([0.0, jnp.nan, 0, 0])}, r"y0\['b'\] must be finite"),
    ],
)
def test_a_pytree_state_is_checked_leaf_by_leaf(y0, message):
    with pytest.raises(ValueError, match=message):
        nd.simulate(PAIR, nd.hh_params(), 5.0, y0, jnp.linspace(0.0, 1.0, 3))


def test_saveat_other_than_ts_fn_dense_is_refused():
    with pytest.raises(ValueError, match="only SaveAt"):
        nd.simulate(nd.HH, nd.hh_params(), 5.0, jnp.zeros(4), saveat=dfx.SaveAt(t0=True, t1=True))
    with pytest.raises(TypeError, match="saveat must be a diffrax.SaveAt"):
        nd.simulate(nd.HH, nd.hh_params(), 5.0, jnp.zeros(4), jnp.linspace(0, 1, 3), saveat=[0.0, 1.0])


_TRACES = []


def _counting_field(t, y, args):
    _TRACES.append(1)  # runs once per trace, not per step
    return nd.hh_vector_field(t, y, args)


COUNTING = nd.Model("counting", _counting_field, nd.HH.rates, nd.HH.currents)


def test_new_currents_and_tolerances_do_not_recompile():
    ts = jnp.linspace(0.0, 2.0, 5)
    nd.simulate(COUNTING, nd.hh_params(), 5.0, jnp.zeros(4), ts)
    first = len(_TRACES)
    for amp, rtol in ((7.0, 1e-6), (3.0, 1e-7)):
        nd.simulate(
            COUNTING,
            nd.hh_params(),
            amp,
            jnp.zeros(4),
            ts,
            stepsize_controller=nd.default_controller(rtol),
        )
    assert first >= 1 and len(_TRACES) == first


def test_vclamp_checks_its_step_budget_like_simulate():
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        nd.vclamp(nd.HH, nd.hh_params(), 10.0, jnp.zeros(3), jnp.linspace(0.0, 1.0, 3), max_steps=0)
