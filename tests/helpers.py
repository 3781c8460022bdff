"""Shared test utilities."""

from __future__ import annotations

import jax
import numpy as np


def tree_allclose(a, b, rtol=1e-12, atol=0.0) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    if len(la) != len(lb) or jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(
        np.allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol) for x, y in zip(la, lb, strict=True)
    )


def central_difference(f, x, i, h):
    """(f(x + h e_i) - f(x - h e_i)) / 2h for a flat float array x."""
    x = np.asarray(x, dtype=float)
    e = np.zeros_like(x)
    e.flat[i] = h
    return (float(f(x + e)) - float(f(x - e))) / (2 * h)


def crossings(ts, v, level):
    """Upward crossings of ``level`` by linear interpolation (plain NumPy)."""
    ts, v = np.asarray(ts), np.asarray(v)
    i = np.flatnonzero((v[:-1] < level) & (v[1:] >= level))
    return ts[i] + (level - v[i]) / (v[i + 1] - v[i]) * (ts[i + 1] - ts[i])


def assert_same_results(a, b, rtol=0.0):
    """Two study results (dicts of arrays) equal, wall times aside; ``rtol`` for float arrays only."""
    assert a.keys() == b.keys()
    for k in a:
        if k.endswith("seconds"):
            continue
        if rtol and np.issubdtype(a[k].dtype, np.floating):
            np.testing.assert_allclose(a[k], b[k], rtol=rtol, err_msg=k)
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def assert_grad_matches_fd(f, x, grad, *, eps, rtol, atol=0.0, seed=0):
    """``grad`` (a pytree like ``x``) against central differences of ``f`` along one random
    direction ``v``: ``<grad, v>`` within ``atol + rtol |fd|`` of ``(f(x + eps v) - f(x - eps v)) / 2 eps``.

    What ``jax.test_util.check_grads`` does in reverse mode, with ``f`` compiled once (its
    evaluations reuse one program) and the gradient given, so a test computes it once.
    """
    leaves, tree = jax.tree.flatten(x)
    rng = np.random.default_rng(seed)
    v = jax.tree.unflatten(tree, [rng.standard_normal(np.shape(leaf)) for leaf in leaves])
    jf = jax.jit(f)
    plus = jf(jax.tree.map(lambda a, b: a + eps * b, x, v))
    minus = jf(jax.tree.map(lambda a, b: a - eps * b, x, v))
    fd = (float(plus) - float(minus)) / (2 * eps)
    dot = sum(
        float(np.vdot(np.asarray(g), np.asarray(d)))
        for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(v), strict=True)
    )
    assert abs(dot - fd) <= atol + rtol * abs(fd), (dot, fd)
    return fd
