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


#: Test files whose tests share compiled programs (the same problem shapes, the same jitted
#: functions): each group runs in one pytest-xdist worker (``--dist loadgroup``), so a program is
#: compiled once for the group, not once per worker. Compilation is most of the suite's time.
SHARED_COMPILES = {
    "fit/test_stages.py": "fit",
    "cli/test_kind_fit.py": "fit",
    "fit/test_currents.py": "fit",
    "fit/test_checkpoint.py": "fit",
    "studies/test_compensate.py": "studies",
    "studies/test_run.py": "studies",
    "studies/test_kernel.py": "studies",
    "cli/test_kind_mismatch.py": "studies",
    "cli/test_run_folder.py": "studies",  # the tiny mismatch run of tests/cli/conftest.py
    "cli/test_faults.py": "studies",
}


def pytest_collection_modifyitems(config, items):
    """Every test in an xdist group: its file's (whole files per worker, so module fixtures are
    computed once), or the group of :data:`SHARED_COMPILES`."""
    root = os.path.dirname(__file__)
    for item in items:
        name = os.path.relpath(str(item.path), root).replace(os.sep, "/")
        item.add_marker(pytest.mark.xdist_group(SHARED_COMPILES.get(name, name)))
