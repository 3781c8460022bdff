"""Shared by the ``ndjax`` command's tests (tests/cli/): calling ``main`` and one short simulate run."""

import contextlib
import io

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

#: A mismatch config's tables that turn every compensation off (the uncompensated chips only).
NO_COMPENSATION = "".join(
    f"[compensation.{m}]\nenabled = false\n" for m in ("offset", "rebalance", "retune", "robust")
)


def run_main(argv):
    """main(argv) -> (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = _main.main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()
