"""Shared by the ``ndjax`` command's tests: calling ``main`` and one short simulate run."""

import os

import pytest
from cli_support import SHORT, run_main  # noqa: F401  (tests/ is on sys.path)


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
