"""Test set-up: float64 and strict rank promotion before ndjax is imported."""

import os
import sys

os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

sys.path.insert(0, os.path.dirname(__file__))  # tests/helpers.py, tests/reference.py

import pytest  # noqa: E402


@pytest.fixture
def key():
    return jax.random.key(0)
