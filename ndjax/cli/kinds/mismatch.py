"""``kind = "mismatch"``: many perturbed chips, how they fire, and how well each compensation
restores them.

The ``[compensation.offset]``, ``[compensation.rebalance]``, ``[compensation.retune]`` and
``[compensation.robust]`` tables are generated from :class:`ndjax.studies._settings.CompensationSettings`
(``ndjax defaults mismatch`` prints them); the study's tolerances and solver settings take their
defaults from :class:`ndjax.studies.Study`. Writes ``metrics.json``, ``results.npz``,
``rates_sigma*.png``, ``restored_vs_sigma.png`` (with several sigmas) and ``traces.png``; saved
chunks (``chunks/sigma_*/``, each recorded in the run folder's manifest as it is saved) let an
interrupted run resume onto the same inputs (the config and the contents of ``chip.words``).
The references (the nominal chip, and the HH target with ``study.reference = "target"``) are
computed once in ``prepare``: one that fails to solve at a current is a :class:`ConfigError` on
``currents.values[i]`` (exit 2, no folder).

Every call into the study code (``ndjax.studies``) is in this module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jax

from ... import studies as _studies
from ..._checks import SolveFailedError, Status
from ...fit._wordspace import unflatten_words
from ...models._neurodyn import unphysical_fraction
from ...studies._settings import CompensationSettings, RebalanceSettings
from .._common import COMMON, EXTRA_MISMATCH_KEYS, duplicates, param_default, root_seed, say
from .._rundir import RunDir
from .._schema import ConfigError, Derived, Key, Scope, Table, settings_table, settings_value

__all__ = [
    "SCHEMA",
    "RESUMABLE",
    "input_files",
    "prepare",
    "run",
    "COMPENSATION",
    "COMPENSATION_MOVED",
    "compensation_settings",
]

#: Above this expected fraction of unphysical chips (a mismatch factor <= 0) a run says so.
UNPHYSICAL_NOTE = 1e-3

#: Running a config into a folder that holds an interrupted run of the same config resumes it
#: (finished chunks are loaded, not recomputed).
RESUMABLE = True


def _study(name: str) -> Any:
    """A default of :class:`ndjax.studies.Study`."""
    return _studies.Study.__dataclass_fields__[name].default


def _check_mismatch_currents(values: dict, scope: Scope) -> Iterable[tuple[str, str]]:
    yield from duplicates("values", values["values"])


CHIP = Table(
    {
        "words": Key(
            "str",
            "",
            "a words.json (from kind = 'fit'; relative to the config file), or '' for SPEC 2's default words"
            " and biases",
        ),
    },
    doc="the programmed chip",
)

CURRENTS = Table(
    {
        "unit": Key(
            "str",
            "auto",
            "'nA' on the chip, or 'uA/cm2' of the words file's HH target; 'auto': uA/cm2 when the words"
            " file has an HH target, else nA",
            choices=("auto", "nA", "uA/cm2"),
        ),
        "values": Key(
            "array", [0.0, 0.2, 0.5], "constant applied currents (unit above)", shape=(None,), ge=-1e4, le=1e4
        ),
        "span_ms": Key(
            "float",
            20.0,
            "simulated span of each current, ms (of the HH target's time when the unit is uA/cm2, else of"
            " the chip's)",
            gt=0,
            le=10_000,
        ),
        "n_save": Key(
            "int", 1001, "voltage samples per trace (spikes are found on them)", ge=10, le=1_000_000
        ),
    },
    doc="inputs of every chip",
    checks=(_check_mismatch_currents,),
)

SPIKES = Table(
    {
        "threshold": Key(
            "float",
            "auto",
            "spike threshold on the chip, V; 'auto': the HH target's 60 mV mapped onto the chip, or without"
            " a target halfway between the nominal chip's trough and peak at the largest current",
            ge=0,
            le=1.8,
            literals=("auto",),
        ),
        "hysteresis": Key(
            "float",
            "auto",
            "re-arm below threshold - hysteresis, V; 'auto': the target's 20 mV mapped, or a quarter of"
            " the nominal chip's spike height",
            ge=0,
            le=1.8,
            literals=("auto",),
        ),
    },
    doc="spike detection on every chip",
)

STUDY = Table(
    {
        "n_chips": Key("int", 200, "chips per sigma", ge=1, le=10_000_000),
        "sigma": Key(
            "array",
            [_study("sigma")],
            "mismatch spread: one value or a list to sweep",
            shape=(None,),
            ge=0,
            le=1,
            scalar_ok=True,
        ),
        "exponent_sigma": Key(
            "array",
            list(_study("exponent_sigma")),
            "spread of the gate powers p, q, r",
            shape=(3,),
            ge=0,
            le=1,
        ),
        **EXTRA_MISMATCH_KEYS,
        "seed": Key(
            "int",
            Derived(root_seed, "the top-level seed"),
            "chip i: fold_in(key(seed), i)",
            ge=0,
            le=2**32 - 1,
        ),
        "chunk": Key(
            "int", 50, "chips per saved chunk (an interrupted run resumes at a chunk)", ge=1, le=1_000_000
        ),
        "reference": Key(
            "str",
            "auto",
            "what a chip must match: 'nominal' (the mismatch-free chip) or 'target' (the words file's HH"
            " model); 'auto': target when there is one",
            choices=("auto", "nominal", "target"),
        ),
        "count_tol": Key(
            "int", _study("count_tol"), "spike count within this many spikes of the reference", ge=0, le=1000
        ),
        "rate_tol": Key(
            "float", _study("rate_tol"), "firing rate within this fraction of the reference", gt=0, le=10
        ),
    },
    doc="the perturbed chips (ndjax.sample_mismatch) and what 'behaves' means",
)


def _check_rebalance(values: dict, scope: Scope) -> Iterable[tuple[str, str]]:
    if values["enabled"] and not any(abs(f - 1.0) > 1e-12 for f in values["factors"]):
        yield "factors", "expected at least one factor other than 1"


#: Keys of the flat ``[compensation]`` table before it had a sub-table per method -> where they are.
COMPENSATION_MOVED = {
    **{m: f"compensation.{m}.enabled" for m in ("offset", "rebalance", "retune", "robust")},
    "offsets": "compensation.offset.offsets",
    "rebalance_factors": "compensation.rebalance.factors",
    **{f"retune_{k}": f"compensation.retune.{k}"
       for k in ("generations", "population", "sigma", "steps", "learning_rate")},
    **{f"robust_{k}": f"compensation.robust.{k}"
       for k in ("train_chips", "space", "search", "generations", "population", "sigma")},
}  # fmt: skip

#: ``[compensation]``: :class:`CompensationSettings`, a sub-table per method.
COMPENSATION = settings_table(
    CompensationSettings,
    moved=COMPENSATION_MOVED,
    tables={"rebalance": settings_table(RebalanceSettings, checks=(_check_rebalance,))},
)


def compensation_settings(comp: dict) -> CompensationSettings:
    """The :class:`CompensationSettings` of a validated ``[compensation]`` table."""
    return settings_value(CompensationSettings, comp)


SOLVER = Table(
    {
        "rtol": Key(
            "float",
            _study("rtol"),
            "relative tolerance (1e-4: spike times within 1 us, see RESULTS.md)",
            gt=0,
            lt=1,
        ),
        "atol": Key("float", _study("atol"), "absolute tolerance", gt=0),
        "max_steps": Key(
            "int",
            _study("max_steps"),
            "step budget of one solve (a chip that needs more is reported failed)",
            ge=1,
            le=100_000_000,
        ),
        "block": Key(
            "int",
            param_default(_studies.run_study, "block"),
            "simulations per compiled call (sharded over the devices)",
            ge=1,
            le=1_000_000,
        ),
        "segments": Key(
            "int",
            _study("segments"),
            "split each solve into this many time segments and regroup the jobs by cost between them"
            " (pays off from several blocks of jobs; see experiments/benchmarks/RESULTS.md)",
            ge=1,
            le=100,
        ),
    },
    doc="solver settings of the study",
)

REPORT = Table(
    {
        "example_chips": Key("int", 3, "chips drawn in traces.png (the first that misbehave)", ge=0, le=20),
        "dpi": Key("int", 120, "resolution of the PNG files", ge=30, le=1200),
    },
    doc="figures",
)

SCHEMA = Table(
    {
        **COMMON,
        "chip": CHIP,
        "currents": CURRENTS,
        "spikes": SPIKES,
        "study": STUDY,
        "compensation": COMPENSATION,
        "solver": SOLVER,
        "report": REPORT,
    },
    doc="how mismatched chips fire, and how well each compensation restores them",
)


def _words_path(cfg: dict, source: Path | None) -> Path | None:
    """The words file ``chip.words`` names (relative to the config file), or None."""
    words_path = cfg["chip"]["words"]
    if not words_path:
        return None
    path = Path(words_path)
    if not path.is_absolute() and source is not None:
        path = Path(source).parent / path
    return path


def input_files(cfg: dict, source: Path | None = None) -> dict[str, Path]:
    """The files a run reads, by the config key that names them: ``chip.words`` when it is set."""
    path = _words_path(cfg, source)
    return {} if path is None else {"chip.words": path}


def _chip(cfg: dict, source: Path | None) -> tuple[Any, Any, Any]:
    """Words, biases and (with a words file that has one) the HH target of ``[chip]``."""
    import numpy as np

    from ..._words_io import WordsFileError, load_words
    from ...fit import target_from_words
    from ...models._neurodyn import NDWords, nd_biases, nd_chip

    path = _words_path(cfg, source)
    if path is None:
        chip = nd_chip()
        return chip.words, chip.biases, None
    try:
        w = load_words(path)
    except OSError as err:
        raise ConfigError([("chip.words", f"cannot read {path}: {err}")]) from err
    except WordsFileError as err:
        raise ConfigError([("chip.words", str(err))]) from err
    words = NDWords(*(np.asarray(w[k], dtype=float) for k in ("dg", "dErev", "dIb")))
    biases = nd_biases(v_ref=w["V_ref"], i_voltage=w["I_voltage"], i_master=w["I_master"], i_ref=w["I_ref"],
                       capacitance_scaling=w["capacitance_scaling"])  # fmt: skip
    target = None
    if "hh" in w and "V_mean" in w:
        target = target_from_words(w)
    return words, biases, target


def _auto(key: str, value: str, target: Any, with_target: str, without: str, needs: str) -> str:
    """An ``"auto"`` choice: ``with_target`` when the words file has an HH target, else ``without``;
    ``with_target`` without a target is a :class:`ConfigError` (``needs`` says why)."""
    if value == "auto":
        value = with_target if target is not None else without
    if value == with_target and target is None:
        raise ConfigError([(key, needs)])
    return value


def prepare(cfg: dict, source: Path | None = None) -> Callable[[RunDir], bool]:
    """Read the words file, build one ``Study`` per sigma (core errors surface here, before any
    study runs)."""
    import numpy as np

    words, biases, target = _chip(cfg, source)
    cur, st, sol, spk = cfg["currents"], cfg["study"], cfg["solver"], cfg["spikes"]
    unit = _auto("currents.unit", cur["unit"], target, "uA/cm2", "nA",
                 "'uA/cm2' needs a words file with an HH target ('hh' and 'V_mean')")  # fmt: skip
    reference = _auto("study.reference", st["reference"], target, "target", "nominal",
                      "'target' needs a words file with an HH target")  # fmt: skip
    values = np.asarray(cur["values"], dtype=float)
    if unit == "uA/cm2":
        currents = np.asarray(target.chip_current(values * 1e-6))
        span = cur["span_ms"] * 1e-3 / target.scl_t
        y0 = np.array([target.v_shift, 0.0, 0.0, 0.0])
        threshold, hysteresis = target.threshold + target.v_shift, target.hysteresis
    else:
        currents = values * 1e-9
        span = cur["span_ms"] * 1e-3
        y0 = (
            np.array([0.7, 0.0, 0.0, 0.0])
            if not cfg["chip"]["words"]
            else np.array([float(biases.v_ref), 0, 0, 0])
        )
        threshold = hysteresis = None
    ts = np.linspace(0.0, span, cur["n_save"])
    _check_memory(cfg)
    if threshold is None and "auto" in (spk["threshold"], spk["hysteresis"]):
        threshold, hysteresis = _nominal_spike_levels(words, biases, currents, ts, y0, sol)
    threshold = threshold if spk["threshold"] == "auto" else spk["threshold"]
    hysteresis = hysteresis if spk["hysteresis"] == "auto" else spk["hysteresis"]
    studies = [
        _studies.Study(
            words=words,
            biases=biases,
            currents=currents,
            ts=ts,
            y0=y0,
            threshold=threshold,
            hysteresis=hysteresis,
            sigma=float(s),
            exponent_sigma=tuple(st["exponent_sigma"]),
            centre_sigma=st["centre_sigma"],
            kappa_sigma=st["kappa_sigma"],
            seed=st["seed"],
            count_tol=st["count_tol"],
            rate_tol=st["rate_tol"],
            rtol=sol["rtol"],
            atol=sol["atol"],
            max_steps=sol["max_steps"],
            segments=sol["segments"],
        )  # fmt: skip
        for s in st["sigma"]
    ]
    labels = [f"{v:g} {unit}" for v in values]
    amps_per_unit = 1e-9 if unit == "nA" else float(target.chip_current(1e-6))
    ref_target = target if reference == "target" else None
    refs = _references(studies[0], ref_target)
    return functools.partial(run, cfg, studies, ref_target, labels, amps_per_unit, refs=refs)


def _references(study: Any, target: Any) -> tuple[Any, Any]:
    """``(reference, nominal chip)`` responses at the currents, computed once (they do not depend on
    sigma); a failed solve of either is a :class:`ConfigError` on ``currents.values[i]``."""
    try:
        ref = _studies.hh_reference(study, target) if target is not None else None
        nominal = _studies.nominal_reference(study)
    except SolveFailedError as err:
        raise ConfigError(
            [(f"currents.values[{err.index}]", f"{err} (no reference to judge chips against)")]
        ) from err
    return (nominal if ref is None else ref), nominal


def _check_memory(cfg: dict) -> None:
    """A kernel call (``solver.block`` jobs, every call padded to it) fits in memory
    (:mod:`ndjax._memory`); a :class:`ConfigError` naming the keys to lower otherwise. Chunks,
    compensations and the robust search all go through calls of that size."""
    from ..._memory import memory_problem

    block = cfg["solver"]["block"]
    n_save = cfg["currents"]["n_save"]
    message = memory_problem(block, n_save, f"{block:,} jobs per call", "solver.block or currents.n_save")
    if message:
        raise ConfigError([("solver.block", message)])


def _nominal_spike_levels(words, biases, currents, ts, y0, solver: dict) -> tuple[float, float]:
    """Threshold halfway between the nominal chip's trough and peak (second half of the span, at the
    largest current) and a quarter of that height as hysteresis."""
    import numpy as np

    from ..._simulate import NEURODYN, default_controller, simulate
    from ...models._neurodyn import NDChip, chip_params, nd_constants, nominal_mismatch

    chip = NDChip(words, biases, nominal_mismatch(), nd_constants())
    i_max = float(currents[int(np.argmax(np.abs(currents)))])
    tr = simulate(NEURODYN, chip_params(chip), i_max, y0, ts, max_steps=solver["max_steps"],
                  stepsize_controller=default_controller(solver["rtol"], solver["atol"]))  # fmt: skip
    v = np.asarray(tr.ys[ts.size // 2 :, 0])
    if not bool(tr.ok) or v.max() - v.min() < 1e-3:
        raise ConfigError([("spikes.threshold", "the nominal chip does not oscillate at the largest current; "
                            "give spikes.threshold and spikes.hysteresis")])  # fmt: skip
    return float((v.max() + v.min()) / 2), float((v.max() - v.min()) / 4)


def _mismatch_summary(res: dict, methods: list[str], unit_scale: float) -> dict:
    import numpy as np

    n = res["behaves"].size
    failed = np.flatnonzero((res["status"] != 0).any(axis=1))
    out = {
        "n_chips": int(n),
        "behaving_uncompensated": float(res["behaves"].mean()),
        "failed_solves": [
            {
                "chip": int(res["index"][i]),
                "reasons": sorted({Status(int(s)).text for s in res["status"][i] if s != 0}),
            }
            for i in failed
        ],
        "within_10pct_rate_uncompensated": float(res["within_robust_tol"].mean()),
        "seconds_per_chip": {"uncompensated": float(res["seconds"].sum() / n)},
        "methods": {},
    }
    for m in methods:
        d = {
            "behaving": float(res[f"{m}_behaves"].mean()),
            "seconds_per_chip": float(res[f"{m}_seconds"].sum() / n),
        }
        if m == "robust":
            d["within_10pct_rate"] = float(res["robust_within_robust_tol"].mean())
            d["fit_seconds"] = float(res["robust_fit_seconds"])  # once per sigma, not per chip
            d["training_objective_history"] = res["robust_history"].tolist()
        if m == "offset":
            v = res["offset_value"][np.isfinite(res["offset_value"])] * unit_scale
            d["offset"] = _stats(np.abs(v), "|offset| of the restored chips (current unit)")
        else:
            ch = res[f"{m}_changes"][res[f"{m}_behaves"]]
            d["word_changes_lsb"] = _stats(ch, "sum over the words of |change| in LSBs, restored chips")
        out["methods"][m] = d
    return out


def _stats(x, what: str) -> dict:
    import numpy as np

    if x.size == 0:
        return {"what": what, "n": 0}
    q = np.quantile(x, [0.0, 0.5, 0.9, 1.0])
    return {
        "what": what,
        "n": int(x.size),
        "mean": float(x.mean()),
        "min": float(q[0]),
        "median": float(q[1]),
        "p90": float(q[2]),
        "max": float(q[3]),
    }


def _one_sigma(cfg: dict, i: int, study: Any, target: Any, scale: float, mesh: Any, run_dir: RunDir,
               refs: tuple) -> tuple:  # fmt: skip
    """One study: the run (chunked, resumable) against the references of ``prepare``, its summary
    record."""
    import numpy as np

    ref, nominal = refs
    say(
        f"sigma = {study.sigma:g}: reference ({'HH target' if target is not None else 'nominal chip'}) "
        f"counts {ref.count.tolist()}, rates {np.round(ref.rate, 1).tolist()} Hz (chip time)"
    )
    comp = compensation_settings(cfg["compensation"])
    res = _studies.run_study(
        study,
        cfg["study"]["n_chips"],
        ref=ref,
        chunk=cfg["study"]["chunk"],
        folder=run_dir.path / "chunks" / f"sigma_{i}",
        label=f"sigma {study.sigma:g} ",
        compensation=comp,
        offset_unit=scale,
        mesh=mesh,
        block=cfg["solver"]["block"],
        on_save=run_dir.record,
    )
    nominal_ok = bool(
        _studies.behaves(
            nominal.count[None], nominal.rate[None], ref.count, ref.rate, study.count_tol, study.rate_tol
        )[0]
    )
    record = {
        "sigma": study.sigma,
        "reference": {"count": ref.count, "rate_hz": ref.rate},
        "nominal_chip": {"count": nominal.count, "rate_hz": nominal.rate, "behaves": nominal_ok},
    }
    return ref, res, record


def run(
    cfg: dict, studies: list, target: Any, labels: list[str], amps_per_unit: float, run_dir: RunDir,
    *, refs: tuple,
) -> bool:  # fmt: skip
    """Run each study, write metrics.json, results.npz and the figures."""
    import numpy as np

    from ... import plot

    comp = compensation_settings(cfg["compensation"])
    methods = [m for m in _studies.COMPENSATIONS if getattr(comp, m).enabled]
    mesh = _studies.device_mesh()
    say(f"{jax.device_count()} device(s){'; chips sharded over them' if mesh is not None else ''}")
    say(f"spikes: threshold {studies[0].threshold:.4g} V, hysteresis {studies[0].hysteresis:.3g} V")
    for study in studies:
        frac = unphysical_fraction(study.sigma, study.exponent_sigma, study.kappa_sigma)
        if frac > UNPHYSICAL_NOTE:
            say(f"note: at sigma {study.sigma:g} an expected {frac:.2%} of chips draw a mismatch factor <= 0 "
                "(a negative conductance, reversal offset, weight or power): they are reported as failed "
                f"('{Status.UNPHYSICAL.text}'), not judged")  # fmt: skip
    # offsets are fractions of the largest |current| (of one current unit when every current is 0)
    scale = float(np.max(np.abs(studies[0].currents))) or amps_per_unit
    unit_scale = 1.0 / amps_per_unit  # offsets reported in the currents' unit
    per_sigma, fractions = [], {k: [] for k in ["uncompensated", *methods]}
    arrays: dict[str, Any] = {}
    for i, study in enumerate(studies):
        ref, res, record = _one_sigma(cfg, i, study, target, scale, mesh, run_dir, refs)
        summary = _mismatch_summary(res, methods, unit_scale)
        per_sigma.append({**record, **summary})
        fractions["uncompensated"].append(summary["behaving_uncompensated"])
        for m in methods:
            fractions[m].append(summary["methods"][m]["behaving"])
        for k, v in res.items():
            arrays[f"sigma{i}_{k}"] = v
        rates = {"uncompensated": res["rate"], **{m: res[f"{m}_rate"] for m in methods}}
        title = f"sigma = {study.sigma:g}, {summary['n_chips']} chips"
        fig = plot.plot_rate_histograms(rates, ref.rate, labels, rate_tol=study.rate_tol, title=title)
        run_dir.save_figure(f"rates_sigma{i}.png", fig, dpi=cfg["report"]["dpi"])
        _print_mismatch(study.sigma, summary, methods)
    run_dir.write_npz("results.npz", arrays)
    run_dir.write_json(
        "metrics.json",
        {
            "kind": cfg["kind"],
            "name": cfg["name"],
            "currents": labels,
            "criterion": f"count within {studies[0].count_tol}, rate within "
            f"{studies[0].rate_tol:.0%} of the reference at every current",
            "reference": "HH target" if target is not None else "nominal chip",
            "spike_threshold_v": studies[0].threshold,
            "spike_hysteresis_v": studies[0].hysteresis,
            "sigmas": per_sigma,
        },
    )
    if len(studies) > 1:
        fig = plot.plot_restored_vs_sigma([s.sigma for s in studies], fractions)
        run_dir.save_figure("restored_vs_sigma.png", fig, dpi=cfg["report"]["dpi"])
    if cfg["report"]["example_chips"]:
        _example_traces(studies[0], arrays, methods, target, labels, cfg, run_dir)
    return True


def _print_mismatch(sigma: float, s: dict, methods: list[str]) -> None:
    say(f"sigma = {sigma:g}: {s['n_chips']} chips, {len(s['failed_solves'])} failed solves")
    say(f"  {'method':<14} {'behaving':>9} {'rate within 10%':>16} {'s/chip':>8}")
    base, secs = s["behaving_uncompensated"], s["seconds_per_chip"]["uncompensated"]
    within = s["within_10pct_rate_uncompensated"]
    say(f"  {'uncompensated':<14} {base:>9.1%} {within:>16.1%} {secs:>8.3f}")
    for m in methods:
        d = s["methods"][m]
        w = f"{d['within_10pct_rate']:.1%}" if "within_10pct_rate" in d else "-"
        say(f"  {m:<14} {d['behaving']:>9.1%} {w:>16} {d['seconds_per_chip']:>8.3f}")
    if "robust" in methods:
        say(
            f"  (robust words fitted once on training chips in {s['methods']['robust']['fit_seconds']:.1f} s)"
        )


def _example_traces(
    study, arrays: dict, methods: list[str], target: Any, labels: list[str], cfg: dict, run: RunDir
) -> None:
    """Traces at the largest current: the nominal chip, then for a few misbehaving chips the
    uncompensated chip and each compensation."""
    import dataclasses as dc

    import jax.numpy as jnp
    import numpy as np

    from ... import plot
    from ..._simulate import NEURODYN, default_controller, simulate
    from ..._stimulus import Constant
    from ...models._neurodyn import chip_params

    bad = np.flatnonzero(~arrays["sigma0_behaves"])[: cfg["report"]["example_chips"]]
    if bad.size == 0:
        return
    j = int(np.argmax(np.abs(study.currents)))
    ts_ms = study.ts * 1e3

    def trace(chip, offset=0.0):
        tr = simulate(
            NEURODYN,
            chip_params(chip),
            Constant(study.currents[j] + offset),
            jnp.asarray(study.y0),
            study.ts,
            stepsize_controller=default_controller(study.rtol, study.atol),
            max_steps=study.max_steps,
        )
        return np.asarray(tr.ys[:, 0])

    panels = [plot.TracePanel(ts_ms, trace(study.template()), "nominal chip", "ms", "V", study.threshold)]
    for i in bad:
        idx = int(arrays["sigma0_index"][i])
        mm = jax.tree.map(lambda x: x[0], _studies.chip_mismatch(study, np.array([idx])))
        base = dc.replace(study.template(), mismatch=mm)
        panels.append(
            plot.TracePanel(ts_ms, trace(base), f"chip {idx}, uncompensated", "ms", "V", study.threshold)
        )
        if "offset" in methods and np.isfinite(arrays["sigma0_offset_value"][i]):
            off = float(arrays["sigma0_offset_value"][i])
            panels.append(
                plot.TracePanel(
                    ts_ms,
                    trace(base, off),
                    f"chip {idx}, offset {off * 1e9:+.3g} nA",
                    "ms",
                    "V",
                    study.threshold,
                )
            )
        if "retune" in methods:
            w = unflatten_words(jnp.asarray(arrays["sigma0_retune_words"][i]))
            ok = "restored" if arrays["sigma0_retune_behaves"][i] else "not restored"
            panels.append(
                plot.TracePanel(
                    ts_ms,
                    trace(dc.replace(base, words=w)),
                    f"chip {idx}, retuned ({ok})",
                    "ms",
                    "V",
                    study.threshold,
                )
            )
        if "rebalance" in methods and arrays["sigma0_rebalance_behaves"][i]:
            dg = jnp.asarray(arrays["sigma0_rebalance_dg"][i], dtype=float)
            w = dc.replace(study.words, g=dg)
            label = f"chip {idx}, rebalanced dg = {[int(x) for x in arrays['sigma0_rebalance_dg'][i]]}"
            panels.append(
                plot.TracePanel(ts_ms, trace(dc.replace(base, words=w)), label, "ms", "V", study.threshold)
            )
        if "robust" in methods:
            w = unflatten_words(jnp.asarray(arrays["sigma0_robust_words"]))
            ok = "within 10%" if arrays["sigma0_robust_within_robust_tol"][i] else "not within 10%"
            label = f"chip {idx}, robust words ({ok})"
            panels.append(
                plot.TracePanel(ts_ms, trace(dc.replace(base, words=w)), label, "ms", "V", study.threshold)
            )
    fig = plot.plot_traces(panels, title=f"{labels[j]} (chip time)")
    run.save_figure("traces.png", fig, dpi=cfg["report"]["dpi"])
