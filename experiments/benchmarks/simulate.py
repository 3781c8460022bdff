"""Benchmark: ndjax NeuroDyn simulation against a NumPy + scipy ``solve_ivp`` baseline.

Everything in the printed table is measured in one run of this script:

1. one chip (default words, ``x0 = [0.7, 0, 0, 0]``, ``I_app = 0``, 20 ms):
   ndjax's first call (compilation + one solve), its wall time after compilation,
   and one scipy RK45 solve of the same equations;
2. batches of mismatched chips (``sample_mismatch(key, 0.15)``) simulated by one
   jitted ``jax.vmap`` / ``jax.lax.map`` of ``ndjax.simulate`` saving only V,
   as chip-seconds simulated per wall second, against the per-chip cost of a
   scipy loop measured on a sample of the same chips;
3. the spike count of every sampled chip from both sides.

The baseline is an independent implementation of SPEC section 2 in plain NumPy
(it reads only the chip's physical numbers from ``ndjax.chip_params``, so both
sides simulate exactly the same chip). Both sides use rtol 1e-6, atol 1e-9 on
every state; ndjax uses its default solver (Tsit5, PID step-size control).

Usage::

    python experiments/benchmarks/simulate.py [--chips 1000 10000] [--sample 20]
        [--seed 0] [--repeats 3] [--batch-size 1000] [--sweep 0 100 250 500] [--quick]

The script always exits 0: it is a measurement, and a missed target is printed
as FAIL, not raised.
"""

import diffrax as dfx
import jax

# an entry point: float64 first, before any array exists (STYLE.md, "dtype")
jax.config.update("jax_enable_x64", True)

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

import ndjax  # noqa: E402

T1 = 0.02  # s: 20 ms
N_SAVE = 2001  # save points, every 10 us
Y0 = (0.7, 0.0, 0.0, 0.0)  # [V (V), m, h, n]
RTOL = 1e-6
ATOL = 1e-9  # V for the membrane, dimensionless for the gates
SIGMA = 0.15  # mismatch spread (SPEC section 2)
THRESHOLD = 0.9  # V: spike detection (default-word spikes peak near 0.95 V)
HYSTERESIS = 0.05  # V
# targets
TARGET_BATCH_RATIO = 50.0  # largest batch vs the scipy loop, per-chip throughput
TARGET_SINGLE_RATIO = 20.0  # one chip after compilation vs one scipy solve
#: Chips per vmapped chunk of ``jax.lax.map`` (0: the whole batch in one vmap).
#: ``--sweep 0 100 250 500`` on the 1,000-chip batch: one vmap of all 1,000 was
#: fastest; on 10,000 chips, chunks of 1,000 beat one vmap of 10,000 (RESULTS.md).
DEFAULT_BATCH_SIZE = 1000


# ----------------------------------------------------------------------------
# The baseline: SPEC section 2 in plain NumPy, integrated by scipy's RK45
# ----------------------------------------------------------------------------


class NumpyNeuroDyn:
    """Host-side (NumPy): the NeuroDyn vector field written from SPEC section 2.

    Takes the physical numbers of one chip (an ``ndjax.NDParams`` whose leaves
    are converted to NumPy here); none of ndjax's model functions is called.

        C dV/dt  = -I_Na - I_K - I_L + I_app
        I(g, dV) = 2 g (V_T / kappa_lin) tanh(kappa_lin dV / (2 V_T))
        I_Na = I(gNa m^p h^q, V - ENa),  I_K = I(gK n^r, V - EK),  I_L = I(gL, V - EL)
        dx/dt    = alpha (1 - x) - beta x,  alpha = I_alpha / (C_g V_T), beta likewise
        I_rate   = sum_j I_b,j / (1 + exp(s kappa (V_b,j - V) / V_T))

    Sign s = +1 (rising with V) for alpha_m, beta_h, alpha_n; s = -1 for
    beta_m, alpha_h, beta_n.
    """

    def __init__(self, params, i_app: float = 0.0):
        g = np.asarray(params.g, dtype=float)
        e_rev = np.asarray(params.e_rev, dtype=float)
        i_b = np.asarray(params.i_b, dtype=float)  # (gate m,h,n; alpha,beta; j)
        self.v_b = np.asarray(params.v_b, dtype=float)  # (7,)
        self.p, self.q, self.r = (float(x) for x in np.asarray(params.exponents))
        self.c_m = float(params.c_m)
        c_g, v_t = float(params.c_g), float(params.v_t)
        self.kappa_over_vt = float(params.kappa) / v_t
        # the tanh amplifier: 2 g (V_T/kappa_lin) tanh(kappa_lin dV/(2 V_T)) = g tanh(a dV) / a
        self.a = float(params.kappa_lin) / (2 * v_t)
        self.g_na, self.g_k, self.g_l = (float(x) for x in g)
        self.e_na, self.e_k, self.e_l = (float(x) for x in e_rev)
        # weights of the rising and of the falling sigmoids, already divided by C_g V_T,
        # rows (alpha_m, beta_h, alpha_n) and (beta_m, alpha_h, beta_n)
        scale = 1.0 / (c_g * v_t)
        self.w_rise = np.stack([i_b[0, 0], i_b[1, 1], i_b[2, 0]]) * scale
        self.w_fall = np.stack([i_b[0, 1], i_b[1, 0], i_b[2, 1]]) * scale
        self.i_app = float(i_app)

    def __call__(self, t, y):
        v, m, h, n = y
        z = self.kappa_over_vt * (self.v_b - v)  # (7,)
        rise = 1.0 / (1.0 + np.exp(z))  # s = +1
        fall = 1.0 / (1.0 + np.exp(-z))  # s = -1
        alpha_m, beta_h, alpha_n = self.w_rise @ rise
        beta_m, alpha_h, beta_n = self.w_fall @ fall
        # gates start at 0 and 0^p = 0 (the exponents of a mismatched chip are not integers)
        m_p = m**self.p if m > 0 else 0.0
        h_q = h**self.q if h > 0 else 0.0
        n_r = n**self.r if n > 0 else 0.0
        a = self.a
        i_na = self.g_na * m_p * h_q * math.tanh(a * (v - self.e_na)) / a
        i_k = self.g_k * n_r * math.tanh(a * (v - self.e_k)) / a
        i_l = self.g_l * math.tanh(a * (v - self.e_l)) / a
        return np.array(
            [
                (self.i_app - i_na - i_k - i_l) / self.c_m,
                alpha_m * (1 - m) - beta_m * m,
                alpha_h * (1 - h) - beta_h * h,
                alpha_n * (1 - n) - beta_n * n,
            ]
        )


def scipy_solve(params, ts: np.ndarray):
    """One RK45 solve of one chip over [0, T1], evaluated at ``ts``; returns (wall s, solution)."""
    rhs = NumpyNeuroDyn(params)
    start = time.perf_counter()
    sol = solve_ivp(rhs, (0.0, T1), np.asarray(Y0), method="RK45", rtol=RTOL, atol=ATOL, t_eval=ts)
    wall = time.perf_counter() - start
    if sol.status != 0:
        raise RuntimeError(f"scipy solve failed: {sol.message}")
    return wall, sol


# ----------------------------------------------------------------------------
# ndjax side
# ----------------------------------------------------------------------------


def save_v(t, y, args):
    """Save only the membrane voltage (module-level: a static argument of the solve)."""
    return y[0]


def chip_from_key(key):
    """Physical parameters of the nominal chip with the mismatch drawn from ``key``."""
    chip = dataclasses.replace(ndjax.nd_chip(), mismatch=ndjax.sample_mismatch(key, SIGMA))
    return ndjax.chip_params(chip)


def make_batch_fn(ts: np.ndarray, batch_size: int):
    """A jitted study: keys (n,) -> (V (n, T), ok (n,), accepted steps (n,)).

    ``batch_size`` 0 (or >= n) vmaps the whole batch at once; otherwise
    ``jax.lax.map`` runs vmapped chunks of ``batch_size`` chips one after the other.
    """
    y0 = jnp.asarray(Y0)
    ts_j = jnp.asarray(ts)

    def one(key):
        saveat = dfx.SaveAt(ts=ts_j, fn=save_v)
        trace = ndjax.simulate(ndjax.NEURODYN, chip_from_key(key), 0.0, y0, saveat=saveat)
        return trace.ys, trace.ok, trace.n_steps

    def study(keys):
        if batch_size <= 0 or batch_size >= keys.shape[0]:
            return jax.vmap(one)(keys)
        return jax.lax.map(one, keys, batch_size=batch_size)

    return jax.jit(study)


def lockstep_efficiency(n_steps: np.ndarray, batch_size: int) -> float:
    """Useful steps / steps executed: a vmapped chunk steps until its slowest chip is done."""
    n = n_steps.shape[0]
    b = n if batch_size <= 0 or batch_size >= n else batch_size
    executed = 0
    for start in range(0, n, b):
        chunk = n_steps[start : start + b]
        executed += chunk.max() * chunk.shape[0]
    return float(n_steps.sum() / executed)


def timed(fn, repeats: int) -> list[float]:
    """Wall times of ``repeats`` calls of ``fn`` (which must block until its result is ready)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def fmt_s(seconds: float) -> str:
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


# ----------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------


def machine_info() -> list[str]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [
        f"date            {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"python          {platform.python_version()} on {platform.system()} {platform.machine()}",
        f"jax             {jax.__version__} (backend {jax.default_backend()}, "
        f"{jax.device_count()} device(s): {jax.devices()[0].device_kind}), x64 {jax.config.jax_enable_x64}",
        f"diffrax         {diffrax.__version__}; numpy {np.__version__}; scipy {scipy.__version__}",
        f"CPU             {os.cpu_count()} logical CPUs ({cpu}); load average at start {load}",
    ]


def bench_single(ts: np.ndarray, repeats: int) -> dict:
    params = ndjax.chip_params(ndjax.nd_chip())
    y0 = jnp.asarray(Y0)

    def call():
        trace = ndjax.simulate(ndjax.NEURODYN, params, 0.0, y0, ts)
        jax.block_until_ready(trace)
        return trace

    start = time.perf_counter()
    trace = call()
    first = time.perf_counter() - start
    n_nd = 20 * repeats
    nd_times = timed(call, n_nd)

    # the same solve inside the caller's own jit: no per-call validation or dispatch in Python
    @jax.jit
    def solve_jitted(params):
        return ndjax.simulate(ndjax.NEURODYN, params, 0.0, y0, ts)

    jax.block_until_ready(solve_jitted(params))
    jit_times = timed(lambda: jax.block_until_ready(solve_jitted(params)), n_nd)
    sp_times, sol = [], None
    for _ in range(repeats):
        wall, sol = scipy_solve(params, ts)
        sp_times.append(wall)
    assert sol is not None
    v_nd = np.asarray(trace.ys[:, 0])
    return dict(
        first=first,
        nd=statistics.median(nd_times),
        nd_jit=statistics.median(jit_times),
        n_nd=n_nd,
        sp=statistics.median(sp_times),
        n_sp=repeats,
        nd_steps=int(trace.n_steps),
        nd_ok=bool(trace.ok),
        sp_nfev=int(sol.nfev),
        max_dv=float(np.max(np.abs(v_nd - sol.y[0]))),
        spikes_nd=int(ndjax.count_spikes(v_nd, THRESHOLD, HYSTERESIS)),
        spikes_sp=int(ndjax.count_spikes(sol.y[0], THRESHOLD, HYSTERESIS)),
    )


def bench_batch(n: int, seed: int, sample: int, batch_size: int, repeats: int, ts: np.ndarray) -> dict:
    keys = jax.random.split(jax.random.key(seed), n)
    study = make_batch_fn(ts, batch_size)
    start = time.perf_counter()
    compiled = study.lower(keys).compile()
    compile_s = time.perf_counter() - start

    def call():
        return jax.block_until_ready(compiled(keys))

    start = time.perf_counter()
    v, ok, n_steps = call()
    first_run = time.perf_counter() - start
    times = [first_run] + timed(call, repeats - 1)
    wall = statistics.median(times)
    v, ok, n_steps = np.asarray(v), np.asarray(ok), np.asarray(n_steps)

    # scipy on a sample of the same chips (evenly spaced indices, same keys -> same parameters)
    idx = np.unique(np.linspace(0, n - 1, min(sample, n)).round().astype(int))
    sample_params = jax.vmap(chip_from_key)(keys[idx])
    sp_times, rows = [], []
    for i, chip_index in enumerate(idx):
        params = jax.tree.map(lambda leaf, i=i: np.asarray(leaf[i]), sample_params)
        walls = []
        for _ in range(repeats):
            wall_sp, sol = scipy_solve(params, ts)
            walls.append(wall_sp)
        sp_times.append(statistics.median(walls))
        v_nd = v[chip_index]
        rows.append(
            dict(
                chip=int(chip_index),
                nd=int(ndjax.count_spikes(v_nd, THRESHOLD, HYSTERESIS)),
                sp=int(ndjax.count_spikes(sol.y[0], THRESHOLD, HYSTERESIS)),
                max_dv=float(np.max(np.abs(v_nd - sol.y[0]))),
                nd_steps=int(n_steps[chip_index]),
            )
        )
    return dict(
        n=n,
        batch_size=batch_size if 0 < batch_size < n else n,
        compile=compile_s,
        wall=wall,
        times=times,
        ok=int(ok.sum()),
        steps_mean=float(n_steps.mean()),
        steps_max=int(n_steps.max()),
        efficiency=lockstep_efficiency(n_steps, batch_size),
        sp_median=statistics.median(sp_times),
        sp_mean=statistics.fmean(sp_times),
        sp_times=sp_times,
        rows=rows,
    )


def sweep_chunks(n: int, seed: int, sizes: list[int], repeats: int, ts: np.ndarray) -> None:
    """Time several chunk sizes on one batch, interleaved round by round so that a
    change of machine load hits every size alike."""
    keys = jax.random.split(jax.random.key(seed), n)
    compiled = {b: make_batch_fn(ts, b).lower(keys).compile() for b in sizes}
    times: dict[int, list[float]] = {b: [] for b in sizes}
    for _ in range(repeats):
        for b in sizes:
            times[b] += timed(lambda c=compiled[b]: jax.block_until_ready(c(keys)), 1)
    for b in sizes:
        label = "whole batch" if b <= 0 or b >= n else str(b)
        print(
            f"  chunk {label:>11}: median {fmt_s(statistics.median(times[b]))}  "
            f"({', '.join(fmt_s(t) for t in times[b])})",
            flush=True,
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chips", type=int, nargs="+", default=[1000, 10000], help="batch sizes")
    parser.add_argument("--sample", type=int, default=20, help="chips per batch also solved by scipy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed repeats of each batch and of each scipy solve "
        "(the ~5 ms single ndjax call is repeated 20x as often)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help="chips per vmapped chunk of jax.lax.map (0: whole batch in one vmap)",
    )
    parser.add_argument(
        "--sweep",
        type=int,
        nargs="*",
        default=None,
        help="also time these chunk sizes on the first batch (0: whole batch)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 200 chips, 5 sampled, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.chips, args.sample, args.repeats = [200], 5, 1
    if args.repeats < 1 or args.sample < 1 or any(n < 1 for n in args.chips):
        parser.error("--repeats, --sample and --chips must be positive")

    ts = np.linspace(0.0, T1, N_SAVE)
    print("ndjax NeuroDyn simulation benchmark vs NumPy + scipy solve_ivp (RK45)")
    for line in machine_info():
        print("  " + line)
    print(
        f"  problem         default words, x0 = {list(Y0)}, I_app = 0, t = 0..{T1} s, "
        f"{N_SAVE} save points; rtol {RTOL:g}, atol {ATOL:g}"
    )
    print(
        f"  ndjax           simulate(NEURODYN, ...), Tsit5 + PID (defaults); batches save only V; "
        f"mismatch sigma {SIGMA}, seed {args.seed}"
    )
    print(f"  spikes          count_spikes(v, threshold={THRESHOLD}, hysteresis={HYSTERESIS})", flush=True)

    print("\n[1] one chip ...", flush=True)
    single = bench_single(ts, args.repeats)

    if args.sweep:
        print(f"\n[sweep] chunk sizes on the {args.chips[0]}-chip batch ({args.repeats} repeats each):")
        sweep_chunks(args.chips[0], args.seed, args.sweep, args.repeats, ts)

    batches = []
    for n in args.chips:
        print(f"[2] batch of {n} chips ...", flush=True)
        batches.append(bench_batch(n, args.seed, args.sample, args.batch_size, args.repeats, ts))

    # ------------------------------------------------------------------ table
    chip_s = T1
    single_ratio = single["sp"] / single["nd"]
    print("\n" + "=" * 100)
    print("[1] One chip, 20 ms (full state saved at 2001 points)")
    print(f"    ndjax first call (compile + 1 solve) {fmt_s(single['first']):>10}")
    print(
        f"    ndjax after compilation              {fmt_s(single['nd']):>10}   "
        f"median of {single['n_nd']}; {single['nd_steps']} accepted steps, ok={single['nd_ok']}"
    )
    print(
        f"      (same solve inside the caller's jax.jit {fmt_s(single['nd_jit']):>10}   "
        "no per-call input checks in Python; for reference, not the ratio)"
    )
    print(
        f"    scipy RK45                           {fmt_s(single['sp']):>10}   "
        f"median of {single['n_sp']}; {single['sp_nfev']} f-evaluations"
    )
    print(f"    ratio scipy / ndjax                  {single_ratio:>9.1f}x")
    print(
        f"    agreement: max |V_ndjax - V_scipy| = {single['max_dv'] * 1e3:.3g} mV; spikes "
        f"ndjax {single['spikes_nd']}, scipy {single['spikes_sp']} (SPEC: 11)"
    )

    print("\n[2] Batches of mismatched chips, 20 ms each, V saved at 2001 points")
    header = (
        f"    {'chips':>6} {'chunk':>6} {'compile':>9} {'wall (median)':>14} {'ndjax chip-s/s':>15} "
        f"{'scipy s/chip':>13} {'scipy chip-s/s':>15} {'ratio':>8} {'lockstep':>9} {'ok':>7}"
    )
    print(header)
    for b in batches:
        nd_tp = b["n"] * chip_s / b["wall"]
        sp_tp = chip_s / b["sp_median"]
        b["ratio"] = nd_tp / sp_tp
        print(
            f"    {b['n']:>6} {b['batch_size']:>6} {fmt_s(b['compile']):>9} {fmt_s(b['wall']):>14} "
            f"{nd_tp:>15.3f} {fmt_s(b['sp_median']):>13} {sp_tp:>15.3f} {b['ratio']:>7.1f}x "
            f"{b['efficiency']:>8.0%} {b['ok']:>4}/{b['n']}"
        )
    print("    chunk: chips per vmapped chunk of jax.lax.map (= chips: one vmap over the whole batch).")
    print(
        "    ndjax chip-s/s = chips x 0.02 s / median wall time of the compiled batch "
        f"({args.repeats} run(s)); compile reported apart."
    )
    print(
        "    scipy s/chip = median over the sampled chips of that batch of each chip's median solve time "
        f"({args.repeats} solve(s) each); ratio = ndjax / scipy throughput."
    )
    print(
        "    lockstep = accepted steps of all chips / steps executed (a chunk steps until its slowest chip)"
    )
    for b in batches:
        print(
            f"      {b['n']} chips: accepted steps mean {b['steps_mean']:.0f}, max {b['steps_max']}; "
            "ndjax run times " + ", ".join(fmt_s(t) for t in b["times"])
        )
        mean_ratio = (b["n"] * chip_s / b["wall"]) / (chip_s / b["sp_mean"])
        sp_spread = f"{fmt_s(min(b['sp_times']))} .. {fmt_s(max(b['sp_times']))}"
        print(
            f"        scipy per chip over the {len(b['sp_times'])} sampled: mean {fmt_s(b['sp_mean'])}, "
            f"range {sp_spread} (silent chips cost least); ratio with the mean: {mean_ratio:.1f}x"
        )

    print("\n[3] Spike counts of the sampled chips, ndjax vs scipy")
    all_rows = [(b["n"], r) for b in batches for r in b["rows"]]
    mismatched = [(n, r) for n, r in all_rows if r["nd"] != r["sp"]]
    for b in batches:
        same = sum(r["nd"] == r["sp"] for r in b["rows"])
        counts = sorted({r["nd"] for r in b["rows"]})
        worst = max(r["max_dv"] for r in b["rows"])
        print(
            f"    batch {b['n']:>6}: {same}/{len(b['rows'])} chips match; spike counts seen {counts}; "
            f"max |dV| {worst * 1e3:.3g} mV"
        )
    for n, r in mismatched:
        print(
            f"      MISMATCH batch {n} chip {r['chip']}: ndjax {r['nd']} spikes, scipy {r['sp']} spikes "
            f"(max |dV| {r['max_dv'] * 1e3:.3g} mV)"
        )

    print("\nTargets")
    big = max(batches, key=lambda b: b["n"])
    checks = [
        (
            f"{big['n']}-chip batch >= {TARGET_BATCH_RATIO:g}x the per-chip throughput of the scipy loop",
            big["ratio"] >= TARGET_BATCH_RATIO,
            f"{big['ratio']:.1f}x",
        ),
        (
            f"one chip after compilation >= {TARGET_SINGLE_RATIO:g}x faster than one scipy solve",
            single_ratio >= TARGET_SINGLE_RATIO,
            f"{single_ratio:.1f}x",
        ),
        (
            "identical spike counts on all sampled chips",
            not mismatched,
            f"{len(all_rows) - len(mismatched)}/{len(all_rows)}",
        ),
    ]
    for text, passed, value in checks:
        print(f"    {'PASS' if passed else 'FAIL'}  {text}: {value}")
    print("=" * 100)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
