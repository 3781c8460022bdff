"""Regenerate the golden traces in this folder (run from the repository root):

    python tests/data/make_golden.py

Each trace is a tight Dopri8 solve (rtol 1e-12, atol 1e-14, float64) of one of SPEC's reference
cases, saved at a few points, so that a change of the equations shows up as a changed number
even where the spike counts of the reference tests still hold:

- ``hh_default_10uA.npz``: the default HH neuron (SPEC 1) at 10 uA/cm^2 from the zero state,
  20 ms, 41 points (ms, mV, classic units);
- ``nd_default_0nA.npz``: the default NeuroDyn words (SPEC 2) at 0 A from ``[0.7, 0, 0, 0]``,
  5 ms, 41 points (s, V).

The files were made with jax 0.10.2 / diffrax 0.7.2 on a CPU; the test compares them with the
default solver (Tsit5, rtol 1e-6, atol 1e-9) within tolerances tied to those.
"""

import pathlib

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import ndjax as nd  # noqa: E402

HERE = pathlib.Path(__file__).parent
PID = nd.default_controller(1e-12, 1e-14)
TIGHT = dict(solver=dfx.Dopri8(), stepsize_controller=PID, max_steps=1_000_000)

CASES = {
    "hh_default_10uA": (nd.HH, nd.hh_params(), 10.0, np.zeros(4), np.linspace(0.0, 20.0, 41)),
    "nd_default_0nA": (nd.NEURODYN, nd.chip_params(nd.nd_chip()), 0.0, np.array([0.7, 0.0, 0.0, 0.0]),
                       np.linspace(0.0, 5e-3, 41)),
}


def main():
    for name, (model, params, stim, y0, ts) in CASES.items():
        tr = nd.simulate(model, params, stim, jnp.asarray(y0), jnp.asarray(ts), **TIGHT)
        assert bool(tr.ok), name
        np.savez(HERE / f"{name}.npz", ts=np.asarray(ts), ys=np.asarray(tr.ys))
        print(name, np.asarray(tr.ys).shape)


if __name__ == "__main__":
    main()
