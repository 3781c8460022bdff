"""Evolution strategies: a (1 + lambda) strategy with a fixed step, and a small CMA-ES.

(1 + lambda): each generation draws ``lambda`` candidates ``mean + sigma N(0, I)`` around the
best point so far and moves there when one scores better (:func:`es_key`, :func:`es_candidates`,
:func:`es_select`). It is the search of a study's per-chip retune (many independent runs, one per
chip, drawn in one jitted call) and of its robust word set. The draws of a run depend only on a
key path ``(seed, stream, run, generation)``, so results do not depend on how runs are batched.

CMA-ES, host-side NumPy:

The fit's calibration searches a dozen global factors on a score made of spike
counts, rates and spike times: not differentiable, with plateaus and many local
optima. CMA-ES (Hansen's standard (mu/mu_w, lambda) form with rank-one and
rank-mu updates and cumulative step-size adaptation) learns the scale and the
correlations of the factors from the ranking alone. Several independent
strategies run side by side so their candidates can be evaluated in one batch:
:meth:`CMAES.ask` gives each strategy's candidates, :meth:`CMAES.tell` takes
their scores.

Reference for the update rules and default constants: N. Hansen, "The CMA
Evolution Strategy: A Tutorial", arXiv:1604.00772 (2016).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = ["CMAES", "es_key", "es_candidates", "es_select"]


def es_key(seed: ArrayLike, stream: int, *path: ArrayLike) -> jax.Array:
    """The key of one (1 + lambda) draw: ``fold_in`` of ``key(seed)`` with ``stream`` (which search),
    then with each entry of ``path`` (e.g. a chip index, then a generation). jit/vmap safe.

    Args:
        seed: the study's or fit's seed (an int, or a traced () integer).
        stream: a constant that separates searches of the same seed.
        path: integers (or traced () integers) naming the run and the generation.
    """
    key = jax.random.fold_in(jax.random.key(seed), stream)
    for p in path:
        key = jax.random.fold_in(key, p)
    return key


def es_candidates(key: jax.Array, mean: ArrayLike, sigma: ArrayLike, population: int) -> jax.Array:
    """(1 + lambda) candidates: ``mean + sigma z`` with ``z ~ N(0, I)`` drawn from ``key``.

    Args:
        key: from :func:`es_key`.
        mean: (D,) the best point so far (its dtype is the draws' dtype).
        sigma: () step size, in the units of ``mean``.
        population: lambda, the number of candidates (static).

    Returns:
        (population, D) candidates.
    """
    mean = jnp.asarray(mean)
    return mean[None, :] + sigma * jax.random.normal(key, (population, mean.shape[-1]), dtype=mean.dtype)


def es_select(
    scores: np.ndarray, best: np.ndarray, accept: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Host-side: the (1 + lambda) selection of ``R`` independent runs.

    Each run picks its lowest-scoring candidate (the first of equal ones) or, where ``accept``
    marks candidates that already meet the goal, the first of those; it moves there when the
    pick scores lower than its best so far, or is accepted.

    Args:
        scores: (R, P) candidate scores, lower is better.
        best: (R,) each run's best score so far.
        accept: optional (R, P) bool, candidates that meet the goal.

    Returns:
        ``(pick, move)``: (R,) index of the chosen candidate and (R,) whether the run moves to it.
    """
    scores = np.asarray(scores)
    pick = np.argmin(scores, axis=1)
    if accept is not None:
        done = accept.any(axis=1)
        pick = np.where(done, np.argmax(accept, axis=1), pick)
    move = scores[np.arange(scores.shape[0]), pick] < best
    if accept is not None:
        move = done | move
    return pick, move


class CMAES:
    """``restarts`` independent CMA-ES runs in ``dim`` dimensions, ``population`` candidates each.

    Args:
        dim: number of parameters.
        population: candidates per generation and run (lambda, >= 2).
        sigma: initial step size (same in every direction).
        restarts: independent runs side by side.
        seed: the runs' draws depend on ``(seed, run index, generation)`` only.
        mean: initial mean, ``(dim,)`` or ``(restarts, dim)`` (default zeros).

    The best candidate each run has seen is kept in ``best`` / ``best_x``.
    """

    def __init__(self, dim: int, population: int, sigma: float, restarts: int = 1, seed: int = 0, mean=None):
        if population < 2:
            raise ValueError(f"population must be at least 2, got {population}")
        if restarts < 1 or dim < 1:
            raise ValueError(f"restarts and dim must be at least 1, got restarts={restarts}, dim={dim}")
        n, lam, r = int(dim), int(population), int(restarts)
        self.n, self.lam, self.r, self.seed = n, lam, r, int(seed)
        mu = lam // 2
        w = np.log(mu + 0.5) - np.log(np.arange(1, mu + 1))
        self.w = w / w.sum()
        self.mu_eff = 1.0 / np.sum(self.w**2)
        me = self.mu_eff
        self.c_c = (4 + me / n) / (n + 4 + 2 * me / n)
        self.c_s = (me + 2) / (n + me + 5)
        self.c_1 = 2 / ((n + 1.3) ** 2 + me)
        self.c_mu = min(1 - self.c_1, 2 * (me - 2 + 1 / me) / ((n + 2) ** 2 + me))
        self.d_s = 1 + 2 * max(0.0, np.sqrt((me - 1) / (n + 1)) - 1) + self.c_s
        self.chi_n = np.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n**2))
        self.mean = np.broadcast_to(np.zeros(n) if mean is None else np.asarray(mean, float), (r, n)).copy()
        self.sigma = np.full(r, float(sigma))
        self.cov = np.broadcast_to(np.eye(n), (r, n, n)).copy()
        self.p_c = np.zeros((r, n))
        self.p_s = np.zeros((r, n))
        self.generation = 0
        self.best = np.full(r, np.inf)
        self.best_x = self.mean.copy()
        self._y = None

    def ask(self) -> np.ndarray:
        """Candidates of this generation, ``(restarts, population, dim)``."""
        z = np.stack([
            np.random.default_rng([self.seed, i, self.generation]).standard_normal((self.lam, self.n))
            for i in range(self.r)
        ])  # fmt: skip
        vals, vecs = np.linalg.eigh(self.cov)
        root = vecs * np.sqrt(np.maximum(vals, 1e-20))[:, None, :]  # B D
        self._y = np.einsum("rij,rlj->rli", root, z)  # rows ~ N(0, C)
        self._inv_root = vecs / np.sqrt(np.maximum(vals, 1e-20))[:, None, :] @ np.swapaxes(vecs, 1, 2)
        return self.mean[:, None] + self.sigma[:, None, None] * self._y

    def tell(self, candidates: np.ndarray, scores: np.ndarray) -> None:
        """Update every run from the scores (lower is better) of :meth:`ask`'s candidates."""
        scores = np.asarray(scores, float).reshape(self.r, self.lam)
        scores = np.where(np.isfinite(scores), scores, np.inf)
        order = np.argsort(scores, axis=1, kind="stable")
        rows = np.arange(self.r)
        top = scores[rows, order[:, 0]]
        better = top < self.best
        self.best = np.where(better, top, self.best)
        self.best_x = np.where(better[:, None], candidates[rows, order[:, 0]], self.best_x)

        mu = len(self.w)
        y_sel = np.take_along_axis(self._y, order[:, :mu, None], axis=1)  # (r, mu, n)
        y_w = np.einsum("m,rmn->rn", self.w, y_sel)
        self.mean = self.mean + self.sigma[:, None] * y_w
        c_s, c_c, me = self.c_s, self.c_c, self.mu_eff
        self.p_s = (1 - c_s) * self.p_s + np.sqrt(c_s * (2 - c_s) * me) * np.einsum(
            "rij,rj->ri", self._inv_root, y_w
        )
        norm_ps = np.linalg.norm(self.p_s, axis=1)
        g = self.generation + 1
        h_s = (norm_ps / np.sqrt(1 - (1 - c_s) ** (2 * g)) < (1.4 + 2 / (self.n + 1)) * self.chi_n).astype(
            float
        )
        self.p_c = (1 - c_c) * self.p_c + (h_s * np.sqrt(c_c * (2 - c_c) * me))[:, None] * y_w
        rank_one = np.einsum("ri,rj->rij", self.p_c, self.p_c)
        rank_one += ((1 - h_s) * c_c * (2 - c_c))[:, None, None] * self.cov
        rank_mu = np.einsum("m,rmi,rmj->rij", self.w, y_sel, y_sel)
        self.cov = (1 - self.c_1 - self.c_mu) * self.cov + self.c_1 * rank_one + self.c_mu * rank_mu
        self.cov = 0.5 * (self.cov + np.swapaxes(self.cov, 1, 2))
        self.sigma = self.sigma * np.exp((c_s / self.d_s) * (norm_ps / self.chi_n - 1))
        self.generation = g
