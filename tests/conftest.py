"""Test set-up: float64 and strict rank promotion before ndjax is imported."""

import os
import sys

os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
# One compilation cache on disk for the run's workers (pytest-xdist): a kernel that two test files
# use (the study kernel, the fit's scores, simulate) is compiled once, not once per worker and
# process. It starts empty on a fresh clone; NDJAX_TEST_JAX_CACHE="" turns it off.
_CACHE = os.environ.get("NDJAX_TEST_JAX_CACHE", os.path.join(os.path.dirname(__file__), ".jax-cache"))
if _CACHE:
    jax.config.update("jax_compilation_cache_dir", _CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

sys.path.insert(0, os.path.dirname(__file__))  # tests/helpers.py, tests/reference.py

import pytest  # noqa: E402


@pytest.fixture
def key():
    return jax.random.key(0)
