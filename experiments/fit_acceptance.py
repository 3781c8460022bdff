"""Acceptance measurement of the end-to-end fit (ndjax.fit; SPEC 3, 4).

For each target, ``make_target`` + ``fit_words`` on the fit currents, then ``evaluate_words`` of the
NNLS-rounded words and of the fitted words at the evaluation currents, four of which the fit never
sees. A current passes when the chip fires the HH spike count +-1, its firing rate is within 3% of
HH's and its RMS spike-time error is at most 5% of the HH ISI. The fit of the guide's case should take
under 3 minutes. This is a measurement: it exits 0 whether or not the criteria are met (1 only if a
target could not be run at all).

Targets (the chip's biases, time scale, span, optimizer settings and seed come from
``experiments/fit_hh.toml``, or ``--config``):

- ``guide``: the guide's case, HH defaults, scl_v = 3;
- ``conductances``: gna 144 (+20%), gk 27 (-25%), gl 0.3 (a more excitable neuron; the opposite
  change, gna -20% and gk +25%, fires a single spike at every current from 0 to 20 uA/cm^2, which
  tests nothing);
- ``sclv25``: HH defaults, scl_v = 2.5;
- not run by default, looked at only after the fit's settings were fixed: ``leak`` (gl 0.45, +50%)
  and ``sclv2`` (HH defaults, scl_v = 2);
- sealed held-out targets, added before the work that made the training currents and ``I_voltage``
  follow the target, and run once only when that method was final: ``gk_high`` (gk 43.2, +20%, and
  gna 132, +10%: from rest HH fires once up to 11.25 uA/cm^2, repetitively from 11.5, with a first
  ISI 1.8-3.3x the later ones up to 12.75; gk +20% alone fires repetitively only above 16.25 with a
  first ISI 1.8x the later ones even at 20, an onset band throughout) and ``sclv275`` (HH defaults,
  scl_v = 2.75). Chosen by an HH-only check (no chip, no fit) that they fire repetitively in 0-20.

Usage::

    python experiments/fit_acceptance.py [--targets guide,conductances,sclv25] [--seed N] [--quick]
                                         [--out DIR]

``--quick`` uses tiny settings (a smoke test of the script, not a measurement); ``--out DIR`` writes
``DIR/fit_acceptance.json`` with every number printed and the fitted words.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # an entry point: float64 before ndjax computes anything

from ndjax import fit  # noqa: E402
from ndjax.cli._main import load_config  # noqa: E402
from ndjax.cli.kinds.fit import fit_settings, fit_targets, resolve_fit_currents  # noqa: E402

EVAL_CURRENTS = (0.0, 2.5, 5.0, 8.0, 10.0, 12.5, 17.5, 20.0)  # 2.5, 8, 12.5, 17.5 held out
COUNT_TOL = 1  # spikes
RATE_TOL = 0.03  # relative
TIMING_TOL = 0.05  # RMS spike-time error / HH ISI
TIME_BUDGET_S = 180.0  # fit wall time of the guide's case

TARGETS = {
    "guide": ("the guide's case: HH defaults, scl_v = 3", {}),
    "conductances": ("gna 144 (+20%), gk 27 (-25%), gl 0.3", {"gna": 144.0, "gk": 27.0, "gl": 0.3}),
    "sclv25": ("HH defaults, scl_v = 2.5", {"scl_v": 2.5}),
    # not run by default: targets looked at only after the settings were fixed
    "leak": ("gl 0.45 (+50%), el 10.6: repetitive firing starts later", {"gl": 0.45}),
    "sclv2": ("HH defaults, scl_v = 2", {"scl_v": 2.0}),
    # sealed held-out targets: not run until the method (auto currents, I_voltage) was final
    "gk_high": ("gk 43.2 (+20%), gna 132 (+10%): repetitive firing from 11.5", {"gk": 43.2, "gna": 132.0}),
    "sclv275": ("HH defaults, scl_v = 2.75", {"scl_v": 2.75}),
    # second sealed pair (2026-11-27, 03:20 UTC), added before the retry was measured and run once with
    # the method as committed then; chosen only by an HH check: repetitive at >= 4 evaluation currents
    "gna_gl_low": (
        "gna 108 (-10%), gl 0.2 (-33%): one spike up to 8, repetitive from 10",
        {"gna": 108.0, "gl": 0.2},
    ),
    "sclv35": ("HH defaults, scl_v = 3.5", {"scl_v": 3.5}),
    # third sealed pair (2026-11-27, 04:35 UTC), added before any chip was fitted to them, while the
    # subthreshold term was being tried on gk_high; rule fixed beforehand: the first two of
    # (gk -20%, gna +25%, gk +25%) that fire repetitively from rest somewhere in 0-20 uA/cm^2 (HH check
    # only; gk +25% fires repetitively only from 19.75 and was the third). Both start at 2.25-2.5, an
    # evaluation current, with no long first ISI (ratio <= 1.3 everywhere).
    "gk_low": ("gk 28.8 (-20%): repetitive firing from 2.25", {"gk": 28.8}),
    "gna_high": ("gna 150 (+25%): repetitive firing from 2.5", {"gna": 150.0}),
    # fourth sealed pair (2026-11-27, 05:25 UTC), after the calibration's extension, before any chip fit
    # to them; rule fixed with the list: the first two of (gna -25%, gl +30%, gna and gk -20%, gk and gna
    # +30%) that fire repetitively at >= 4 evaluation currents (HH check only; gna -25% fires once
    # everywhere)
    "gl_high": ("gl 0.39 (+30%): repetitive firing from 9, first ISI long at 9-9.25", {"gl": 0.39}),
    "gna_gk_low": ("gna 96, gk 28.8 (both -20%): repetitive firing from 6.75", {"gna": 96.0, "gk": 28.8}),
    # fifth sealed pair (2026-11-27, 06:15 UTC), after the wide-gap training current, before any chip
    # fit to them; rule fixed with the list: the first two of (gk -10%; gna and gk +15%; gl -30%; el 0 mV;
    # scl_v = 3.25) that fire repetitively at >= 4 evaluation currents (HH check only: the first two do,
    # at 6 and 5)
    "gk_m10": ("gk 32.4 (-10%): repetitive firing from 4.5", {"gk": 32.4}),
    "gna_gk_high": ("gna 138, gk 41.4 (both +15%): repetitive firing from 8", {"gna": 138.0, "gk": 41.4}),
    # sixth sealed pair (2026-11-27, 06:41 UTC), after the training current below the onset moved to one
    # grid step under it, before any chip fit to them: the next two of the fifth pair's list that fire
    # repetitively at >= 4 evaluation currents (gl -30%: 5; el 0 mV: 3, skipped; scl_v = 3.25: 5)
    "gl_low": ("gl 0.21 (-30%): repetitive firing from 6", {"gl": 0.21}),
    "sclv325": ("HH defaults, scl_v = 3.25", {"scl_v": 3.25}),
}
DEFAULT_TARGETS = "guide,conductances,sclv25"

QUICK = {
    "optimizer": {
        "n_save": 900,
        "retries": 0,
        "calibrate": {"generations": 2, "extend": 0, "population": 6},
        "gradient": {"steps": 2},
        "polish": {"sweeps": 2},
    },
    "span_ms": 30.0,
    "eval_n_save": 900,
    "fi_grid": {"step": 5.0, "refine": 2.5},
}

DEFAULT_CONFIG = Path(__file__).resolve().parent / "fit_hh.toml"


def passes(m: fit.CurrentMetrics) -> tuple[bool, bool, bool]:
    """(count, rate, timing) verdicts of one current against the acceptance criteria."""
    return (
        abs(m.chip_count - m.hh_count) <= COUNT_TOL,
        m.rate_error <= RATE_TOL,
        m.timing_error <= TIMING_TOL,
    )


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None  # strict JSON: inf -> null


def _row(m: fit.CurrentMetrics) -> dict:
    ok = passes(m)
    return {
        "chip_count": int(m.chip_count),
        "chip_rate_hz": _num(m.chip_rate),
        "rate_error": _num(m.rate_error),
        "timing_error": _num(m.timing_error),
        "pass_count": ok[0],
        "pass_rate": ok[1],
        "pass_timing": ok[2],
        "passed": all(ok),
    }


def _pct(x: float) -> str:
    return "inf" if not math.isfinite(x) else f"{100 * x:.1f}%"


def run_target(name: str, hh: dict, settings: dict, say=print) -> dict:
    """Fit one target and evaluate both word sets; returns the JSON-ready result."""
    chip, opt = settings["chip"], settings["optimizer"]
    t0 = time.perf_counter()
    pairs = fit_targets({**settings["target"], **hh}, chip)
    target, words0 = pairs[0]
    t_target = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit_currents = resolve_fit_currents(
        {"currents": {"fit": settings["fit_currents"], "evaluate": list(EVAL_CURRENTS)},
         "span_ms": settings["span_ms"]},
        target,
    )  # fmt: skip
    t_currents = time.perf_counter() - t0
    say(
        f"    fit currents: {', '.join(f'{c:g}' for c in fit_currents)} uA/cm^2"
        f" ({settings['fit_currents']!r})"
    )
    t0 = time.perf_counter()
    outcome = fit.fit_words(
        target,
        words0,
        fit_currents,
        t_hh_ms=settings["span_ms"],
        seed=settings["seed"],
        progress=lambda msg: say(f"    {msg}"),
        alternatives=pairs[1:],
        settings=fit_settings(opt),
    )
    target = outcome.target  # the time scale the calibration kept
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    kw = dict(t_hh_ms=settings["span_ms"], n_save=settings["eval_n_save"])
    m_nnls = fit.evaluate_words(target, outcome.nnls_words, list(EVAL_CURRENTS), **kw)
    m_fit = fit.evaluate_words(target, outcome.words, list(EVAL_CURRENTS), **kw)
    t_eval = time.perf_counter() - t0
    # where the failures sit: the onsets of repetitive firing of HH and the fitted chip, to 0.05
    t0 = time.perf_counter()
    fi = fit.fi_curve(target, outcome.words, top=max(EVAL_CURRENTS), **settings["fi_grid"], **kw)
    t_fi = time.perf_counter() - t0
    rows = []
    for i0, mn, mf in zip(EVAL_CURRENTS, m_nnls, m_fit, strict=True):
        held = not any(math.isclose(i0, f, abs_tol=1e-9) for f in fit_currents)
        rows.append(
            {
                "current_ua_cm2": i0,
                "held_out": held,
                "hh_count": int(mf.hh_count),
                "hh_rate_hz": _num(mf.hh_rate),
                "nnls": _row(mn),
                "fitted": _row(mf),
            }
        )
    return {
        "name": name,
        "label": TARGETS[name][0],
        "hh": target.hh,
        "scl_v": target.scl_v,
        "scl_t": target.scl_t,
        "i_voltage": target.i_voltage,
        "fit_currents": fit_currents,
        "seconds": {
            "make_target": round(t_target, 3),
            "choose_currents": round(t_currents, 3),
            **{k: round(float(v), 3) for k, v in outcome.seconds.items()},
            "fit_total": round(t_fit, 3),
            "evaluate": round(t_eval, 3),
            "fi_curve": round(t_fi, 3),
        },
        "rows": rows,
        "onset_ua_cm2": {"hh": _num(fi.hh_onset), "fitted": _num(fi.chip_onset)},
        "fi_grid": settings["fi_grid"],
        "fi_curve": {
            "currents": fi.currents.tolist(),
            "hh_rate_hz": fi.hh_rate.tolist(),
            "fitted_rate_hz": fi.chip_rate.tolist(),
        },
        "words": {k: w.tolist() for k, w in zip(("dg", "dErev", "dIb"), outcome.words, strict=True)},
        "nnls_words": {
            k: w.tolist() for k, w in zip(("dg", "dErev", "dIb"), outcome.nnls_words, strict=True)
        },
    }


def print_table(res: dict) -> None:
    sec = res["seconds"]
    stages = ", ".join(
        f"{k} {v:.1f} s"
        for k, v in sec.items()
        if k not in ("make_target", "choose_currents", "fit_total", "evaluate", "fi_curve")
    )
    print(f"  fit currents {res['fit_currents']}; I_voltage {1e9 * res['i_voltage']:.4g} nA")
    print(
        f"  scl_t {res['scl_t']:.4g}; fit {sec['fit_total']:.1f} s ({stages}); "
        f"make_target {sec['make_target']:.1f} s, choosing the currents {sec['choose_currents']:.1f} s, "
        f"evaluation {sec['evaluate']:.1f} s"
    )
    head = f"  {'I':>5}  {'':8}  {'HH':>3} | {'NNLS-rounded chip':^32} | {'fitted chip':^32} |"
    sub = (
        f"  {'':>5}  {'':8}  {'':>3} |" + f" {'n':>3}  {'rate err':>8}  {'timing err':>10}  {'pass':>5} |" * 2
    )
    print(head)
    print(sub)
    for r in res["rows"]:
        cells = []
        for which in ("nnls", "fitted"):
            c = r[which]
            rate = math.inf if c["rate_error"] is None else c["rate_error"]
            timing = math.inf if c["timing_error"] is None else c["timing_error"]
            verdict = "PASS" if c["passed"] else "fail"
            cells.append(f" {c['chip_count']:>3}  {_pct(rate):>8}  {_pct(timing):>10}  {verdict:>5} |")
        tag = "held out" if r["held_out"] else "fit"
        print(f"  {r['current_ua_cm2']:>5g}  {tag:8}  {r['hh_count']:>3} |" + "".join(cells))
    n = len(res["rows"])
    held = [r for r in res["rows"] if r["held_out"]]
    fit_pass = sum(r["fitted"]["passed"] for r in res["rows"])
    held_pass = sum(r["fitted"]["passed"] for r in held)
    nnls_pass = sum(r["nnls"]["passed"] for r in res["rows"])
    print(f"  passed: fitted {fit_pass}/{n} ({held_pass}/{len(held)} held out), NNLS-rounded {nnls_pass}/{n}")
    on = res["onset_ua_cm2"]
    show = lambda x: "none" if x is None else f"{x:g}"  # noqa: E731
    print(
        f"  onset of repetitive firing from rest: HH {show(on['hh'])}, fitted chip {show(on['fitted'])}"
        f" uA/cm^2 (located to {res['fi_grid']['refine']:g}; fi_curve {res['seconds']['fi_curve']:.1f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--targets",
        default=DEFAULT_TARGETS,
        help=f"comma-separated, from {', '.join(TARGETS)} (default: {DEFAULT_TARGETS})",
    )
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke test, not a measurement")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="write DIR/fit_acceptance.json")
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="kind = 'fit' config giving chip, span, optimizer and seed (default: fit_hh.toml)",
    )
    parser.add_argument("--seed", type=int, default=None, help="override the config's seed")
    args = parser.parse_args(argv)
    names = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in names if t not in TARGETS]
    if unknown or not names:
        parser.error(
            f"--targets: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(TARGETS)}"
        )

    cfg = load_config(args.config)
    if cfg["kind"] != "fit":
        parser.error(f"--config: expected a kind = 'fit' config, got kind = {cfg['kind']!r}")
    settings = {
        "target": cfg["target"],
        "chip": cfg["chip"],
        "optimizer": dict(cfg["optimizer"]),
        "span_ms": cfg["span_ms"],
        "eval_n_save": cfg["report"]["n_save"],
        "seed": cfg["seed"] if args.seed is None else args.seed,
        "fit_currents": cfg["currents"]["fit"],
        "fi_grid": {"step": 0.25, "refine": 0.05},
    }
    if args.quick:
        settings["fi_grid"] = QUICK["fi_grid"]
        for key, value in QUICK["optimizer"].items():  # the [optimizer.*] sub-tables are merged
            opt = settings["optimizer"]
            opt[key] = {**opt[key], **value} if isinstance(value, dict) else value
        settings["span_ms"] = QUICK["span_ms"]
        settings["eval_n_save"] = QUICK["eval_n_save"]

    print(f"fit acceptance{' (QUICK: tiny settings, not a measurement)' if args.quick else ''}")
    print(f"  chip {settings['chip']}; span {settings['span_ms']:g} ms; seed {settings['seed']}")
    print(f"  optimizer {settings['optimizer']}")
    print(f"  fit currents {settings['fit_currents']!r}; evaluation currents {list(EVAL_CURRENTS)} (uA/cm^2)")
    criteria = f"count +-{COUNT_TOL}, rate error <= {RATE_TOL:.0%}, RMS timing <= {TIMING_TOL:.0%} of the ISI"
    print(f"  pass: {criteria}")
    results, failed = [], []
    for name in names:
        label, hh = TARGETS[name]
        print(f"\n== {name}: {label} ==", flush=True)
        try:
            res = run_target(name, hh, settings, say=lambda m: print(m, flush=True))
        except Exception:  # a broken target must not lose the others' measurements
            traceback.print_exc()
            failed.append(name)
            results.append({"name": name, "label": label, "error": traceback.format_exc()})
            continue
        print_table(res)
        results.append(res)

    print("\n== summary ==")
    for res in results:
        if "error" in res:
            print(f"  {res['name']:13} ERROR (see above)")
            continue
        n = len(res["rows"])
        ok = sum(r["fitted"]["passed"] for r in res["rows"])
        held = [r for r in res["rows"] if r["held_out"]]
        t = res["seconds"]["fit_total"]
        budget = ""
        if res["name"] == "guide":
            budget = f" (budget {TIME_BUDGET_S:.0f} s: {'met' if t < TIME_BUDGET_S else 'MISSED'})"
        held_ok = sum(r["fitted"]["passed"] for r in held)
        print(
            f"  {res['name']:13} fitted {ok}/{n} pass ({held_ok}/{len(held)} held out); fit {t:.1f} s{budget}"
        )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "fit_acceptance.json"
        doc = {
            "quick": args.quick,
            "settings": settings,
            "eval_currents": list(EVAL_CURRENTS),
            "criteria": {
                "count_tol": COUNT_TOL,
                "rate_tol": RATE_TOL,
                "timing_tol": TIMING_TOL,
                "time_budget_s": TIME_BUDGET_S,
            },
            "devices": [str(d) for d in jax.devices()],
            "targets": results,
        }
        path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        print(f"\nwrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
