"""Shared by the ``ndjax`` command's tests: calling ``main`` and one short simulate run."""

import contextlib
import io
import os

import pytest

from ndjax.cli import _main

# Short spans keep this to seconds: the default HH neuron at 10 uA/cm^2 first crosses 60 mV at
# 2.46 ms and next at 16.41 ms (SPEC 1), so 5 ms hold one spike; the default NeuroDyn chip from
# [0.7, 0, 0, 0] peaks first at 1.65 ms and next 1.82 ms later (SPEC 2), so 2 ms hold one.
SHORT = """
kind = "simulate"
seed = 0

[solver]
n_save = 501

[[models]]
type = "hh"
label = "HH short"
t1 = 5.0
[models.input]
amplitude = 10.0

[[models]]
type = "neurodyn"
label = "ND short"
t1 = 2e-3
"""


def run_main(argv):
    """main(argv) -> (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = _main.main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def short_run(tmp_path_factory):
    """One run of SHORT with the default output folder (runs/<stem>-<timestamp> under the cwd)."""
    work = tmp_path_factory.mktemp("work")
    config = work / "short.toml"
    config.write_text(SHORT)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        status, stdout, stderr = run_main(["run", config])
    finally:
        os.chdir(cwd)
    runs = list((work / "runs").iterdir())
    assert status == 0, stderr
    assert len(runs) == 1
    return config, runs[0], stdout
