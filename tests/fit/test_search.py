"""The calibration's CMA-ES: convergence on known optima, reproducibility, errors."""

import numpy as np
import pytest

from ndjax.fit import CMAES


def _ellipsoid(x):
    scales = 10.0 ** np.linspace(0, 3, x.shape[-1])  # condition number 1e6
    return np.sum(scales * (x - 1.0) ** 2, axis=-1)


def _rosenbrock(x):
    return np.sum(100 * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1 - x[..., :-1]) ** 2, axis=-1)


def _run(es, f, generations):
    for _ in range(generations):
        cands = es.ask()
        es.tell(cands, f(cands))
    return es


@pytest.mark.parametrize("f, generations", [(_ellipsoid, 250), (_rosenbrock, 900)])
def test_cmaes_finds_the_minimum_of_ill_conditioned_problems(f, generations):
    es = _run(CMAES(8, 16, 0.5, restarts=2, seed=3), f, generations)
    np.testing.assert_allclose(es.best_x, np.ones((2, 8)), atol=1e-4)
    assert np.all(es.best < 1e-8)


def test_cmaes_learns_the_scale_of_the_problem():
    # a step much too small for a far optimum grows; near the optimum it shrinks
    es = _run(CMAES(4, 8, 1e-3, seed=0), lambda x: np.sum((x - 50.0) ** 2, axis=-1), 40)
    assert es.sigma[0] > 1e-1
    es = _run(es, lambda x: np.sum((x - 50.0) ** 2, axis=-1), 200)
    assert es.sigma[0] < 1e-3 and abs(es.best_x[0] - 50).max() < 1e-3


def test_cmaes_runs_depend_on_seed_and_run_index_only():
    one = _run(CMAES(5, 10, 0.3, restarts=1, seed=7), _ellipsoid, 30)
    three = _run(CMAES(5, 10, 0.3, restarts=3, seed=7), _ellipsoid, 30)
    np.testing.assert_array_equal(one.best_x[0], three.best_x[0])
    assert not np.array_equal(three.best_x[0], three.best_x[1])
    other = _run(CMAES(5, 10, 0.3, restarts=1, seed=8), _ellipsoid, 30)
    assert not np.array_equal(one.best_x[0], other.best_x[0])


def test_cmaes_treats_non_finite_scores_as_worst():
    def f(x):
        out = _ellipsoid(x)
        return np.where(x[..., 0] > 2.0, np.nan, out)  # a failed solve beyond x0 = 2

    es = _run(CMAES(3, 8, 1.0, seed=1), f, 150)
    assert np.isfinite(es.best[0]) and es.best[0] < 1e-8


def test_cmaes_rejects_a_population_below_two_and_no_runs():
    with pytest.raises(ValueError, match="population"):
        CMAES(3, 1, 0.1)
    with pytest.raises(ValueError, match="restarts"):
        CMAES(3, 4, 0.1, restarts=0)
