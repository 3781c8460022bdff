"""Shared by the ``ndjax`` command's tests: calling ``main`` and one short simulate run."""

import os

import pytest
from cli_support import NO_COMPENSATION, SHORT, run_main  # noqa: F401  (tests/ is on sys.path)


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


#: The least a mismatch run can be (seconds, not minutes): 2 chips in 2 chunks, one current, 2 ms,
#: given spike levels (no nominal solve to find them), no compensation, no traces. 401 samples and
#: the default solver settings, as test_kind_mismatch.py's runs: the study kernel they compile is
#: this one (the files share an xdist group, so it compiles once).
TINY_MISMATCH = (
    """
kind = "mismatch"
[chip]
words = "words.json"
[currents]
values = [0.5]
span_ms = 2.0
n_save = 401
[spikes]
threshold = 0.82
hysteresis = 0.05
[study]
n_chips = 2
chunk = 1
"""
    + NO_COMPENSATION
    + """[report]
example_chips = 0
dpi = 30
"""
)


def write_tiny_mismatch(folder):
    """TINY_MISMATCH as ``folder/tiny.toml``, its ``words.json`` (SPEC 2's default words and
    biases) beside it; returns the config's path."""
    import numpy as np

    import ndjax
    from ndjax.models._neurodyn import BIAS_DEFAULTS, DEFAULT_DEREV, DEFAULT_DG, DEFAULT_DIB

    b = BIAS_DEFAULTS
    ndjax.save_words(
        folder / "words.json", dg=np.asarray(DEFAULT_DG), dErev=np.asarray(DEFAULT_DEREV),
        dIb=np.asarray(DEFAULT_DIB), v_ref=b.v_ref, i_voltage=b.i_voltage, i_master=b.i_master,
        i_ref=b.i_ref, capacitance_scaling=b.capacitance_scaling, scl_t=1.0, scl_v=1.0,
    )  # fmt: skip
    config = folder / "tiny.toml"
    config.write_text(TINY_MISMATCH)
    return config


@pytest.fixture(scope="session")
def tiny_mismatch(tmp_path_factory):
    """A finished run of TINY_MISMATCH: the folder holding ``tiny.toml``, ``words.json`` and the
    run folder ``out/``. Tests copy it (``shutil.copytree``) before changing anything."""
    work = tmp_path_factory.mktemp("tiny")
    config = write_tiny_mismatch(work)
    status, _, stderr = run_main(["run", config, "--out", work / "out"])
    assert status == 0, stderr
    return work
