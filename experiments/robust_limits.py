"""Why one robust word set is far from the issue's 80% (issue 4 (c)): where the rate spread comes from.

The study of ``experiments/mismatch_1000.toml`` (SPEC 2's words, 20 ms of chip time at 0, 0.2 and
0.5 nA, sigma 0.15, gate-power jitter 0.2/0.1/0.2), measured three ways on the same chips:

1. each mismatch source alone (the others nominal): the fraction of chips whose rate stays within
   10% of the nominal chip's at every current, and the spread of the relative rate per current;
2. the linear sensitivity of log(rate) to each of the 51 mismatch parameters at the nominal words
   (central differences of +-3%, scaled to one standard deviation of that parameter), summed in
   quadrature: what a word set would have to shrink;
3. optionally (``--search G``), ``robust_words`` for ``G`` generations on ``--train`` training
   chips, judged on the study's chips: ``--space words`` (the default here) is CMA-ES over all 48
   words, ``--space factors`` the study's default search over 13 global factors.

Usage::

    python experiments/robust_limits.py [--chips 300] [--search G] [--space words|factors] [--train 64]
                                        [--method auto|es|cmaes]
                                        [--currents 0,0.2,0.5]

Prints tables; exits 0 (a measurement).
"""

from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)  # an entry point: float64 before ndjax computes anything

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import ndjax  # noqa: E402
import ndjax.studies as M  # noqa: E402
from ndjax import Mismatch, NDWords  # noqa: E402
from ndjax._settings import setting_fields  # noqa: E402

CURRENTS = np.array([0.0, 0.2e-9, 0.5e-9])
TOL = 0.10
NAMES = (
    [f"g{x}" for x in ("Na", "K", "L")]
    + [f"E{x}" for x in ("Na", "K", "L")]
    + [f"dIb[{g}][{r}][{j}]" for g in "mhn" for r in ("a", "b") for j in range(7)]
    + ["power p", "power q", "power r"]
)


def make_study(words=None, currents=CURRENTS) -> M.Study:
    chip = ndjax.nd_chip()
    return M.Study(
        words=chip.words if words is None else words,
        biases=chip.biases,
        currents=np.asarray(currents, dtype=float),
        ts=np.linspace(0.0, 20e-3, 1001),
        y0=np.array([0.7, 0.0, 0.0, 0.0]),
        threshold=0.82,
        hysteresis=0.047,
        sigma=0.15,
    )


def rates(study: M.Study, words: NDWords, mismatch: Mismatch, n: int) -> np.ndarray:
    """(n, C) rates of n chips with the same words (NaN where a solve failed)."""
    r = M.chip_responses(study, M.broadcast_words(words, n), mismatch)
    return np.where(r.count >= 0, r.rate, np.nan)


def at(study: M.Study) -> str:
    """``"0 / 0.2 / 0.5 nA"`` for the study's currents."""
    return " / ".join(f"{c * 1e9:g}" for c in np.asarray(study.currents)) + " nA"


def within(rate: np.ndarray, ref: M.Responses) -> np.ndarray:
    return np.abs(rate / ref.rate - 1) <= TOL


def sources(study: M.Study, ref: M.Responses, n: int) -> None:
    mm = M.chip_mismatch(study, np.arange(n))
    one = jax.tree.map(jnp.ones_like, mm)
    zero = jnp.zeros_like(mm.exponents)
    rows = {
        "all (the study)": mm,
        "gate powers only": Mismatch(one.g, one.e_rev, one.i_b, mm.exponents),
        "conductances only": Mismatch(mm.g, one.e_rev, one.i_b, zero),
        "reversal offsets only": Mismatch(one.g, mm.e_rev, one.i_b, zero),
        "sigmoid weights only": Mismatch(one.g, one.e_rev, mm.i_b, zero),
    }
    print(f"\n1. Each source alone, {n} chips (chip i as in the study), rate within {TOL:.0%} of the nominal")
    print(f"| mismatch | every current | at {at(study)} | silent at {at(study)} | IQR of rate/nominal - 1 |")
    print("|---|---|---|---|---|")
    for name, m in rows.items():
        r = rates(study, study.words, m, n)
        w = within(r, ref)
        rel = r / ref.rate - 1
        iqr = np.nanpercentile(rel, 75, axis=0) - np.nanpercentile(rel, 25, axis=0)
        fmt = " / ".join
        print(
            f"| {name} | {w.all(axis=1).mean():.0%} | {fmt(f'{x:.0%}' for x in w.mean(axis=0))} | "
            f"{fmt(f'{x:.0%}' for x in (r == 0).mean(axis=0))} | {fmt(f'{x:.2f}' for x in iqr)} |"
        )


def sensitivities(study: M.Study, words: NDWords, label: str, h: float = 0.03, top: int = 8) -> None:
    """d log(rate) per one standard deviation of each mismatch parameter, at the nominal chip."""
    n = len(NAMES)
    sd = np.concatenate([np.full(48, study.sigma), np.asarray(study.exponent_sigma)])
    steps = []
    for sign in (1.0, -1.0):
        d = np.eye(n) * sign * h
        steps.append(
            Mismatch(
                jnp.asarray(1 + d[:, :3]),
                jnp.asarray(1 + d[:, 3:6]),
                jnp.asarray(1 + d[:, 6:48]).reshape(n, 3, 2, 7),
                jnp.asarray(d[:, 48:]),
            )
        )
    both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), *steps)
    r = rates(study, words, both, 2 * n).reshape(2, n, -1)
    s = (np.log(r[0]) - np.log(r[1])) / (2 * h) * sd[:, None]
    total = np.sqrt(np.sum(s**2, axis=0))
    print(
        f"\n2. Linear sensitivity at the {label} words: sd of log(rate) per parameter"
        " (one sd of its mismatch)"
    )
    print(f"   all 51 in quadrature, at {at(study)}: {' / '.join(f'{x:.3f}' for x in total)}")
    print("   (80% of chips within 10% at one current needs about 0.078 if the spread were Gaussian)")
    cols = at(study)[:-3].split(" / ")
    print("| parameter | " + " | ".join(f"{c} nA" for c in cols) + " |\n|---|" + "---|" * len(cols))
    for i in np.argsort(-np.sum(s**2, axis=1))[:top]:
        print(f"| {NAMES[i]} | " + " | ".join(f"{x:+.3f}" for x in s[i]) + " |")


#: robust_words settings per search space: the study's defaults for the 13 factors; CMA-ES over the
#: 48 words with 16 candidates and step 0.15.
SEARCH = {"factors": dict(population=8, sigma=0.1), "words": dict(population=16, sigma=0.15)}
#: The choices of ``RobustSettings.space`` and ``.search`` (from the settings' own field metadata).
CHOICES = {f.name: spec.choices for f, spec in setting_fields(M.RobustSettings) if spec.choices}


def _print_generation(generation: int, generations: int, best: float) -> None:
    print(f"  robust words: generation {generation}/{generations}, training objective {best:.3f}", flush=True)


def search(study, ref, space: str, generations: int, n_train: int, n_test: int, method: str = "auto") -> None:
    start = time.perf_counter()
    options = SEARCH[space] if method == "auto" else {**SEARCH["words"], "search": method, "sigma": 0.1}
    settings = M.RobustSettings(train_chips=n_train, generations=generations, space=space, **options)
    best, _ = M.robust_words(study, ref, settings, progress=_print_generation)
    print(f"   search: {time.perf_counter() - start:.0f} s")
    test = M.chip_mismatch(study, np.arange(n_test))
    print(f"\n3. robust_words(space={space!r}), {generations} generations on {n_train} training chips; "
          f"{n_test} study chips:")  # fmt: skip
    print(f"| words | every current | at {at(study)} |\n|---|---|---|")
    for label, w in (("SPEC 2", study.words), (f"robust ({space})", best)):
        r = rates(study, w, test, n_test)
        ok = within(r, ref)
        print(
            f"| {label} | {ok.all(axis=1).mean():.0%} | {' / '.join(f'{x:.0%}' for x in ok.mean(axis=0))} |"
        )
    words = jax.tree.map(lambda x: np.asarray(x).astype(int).tolist(), best)
    print(f"   words: dg {words.g}, dErev {words.e_rev}, dIb {words.i_b}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chips", type=int, default=300)
    ap.add_argument("--search", type=int, default=0, metavar="G", help="generations of robust_words")
    ap.add_argument("--space", choices=CHOICES["space"], default="words", help="robust_words's search space")
    ap.add_argument(
        "--method",
        choices=CHOICES["search"],
        default="auto",
        help="robust_words's search; 'es' or 'cmaes' with 16 candidates and step 0.1 in either space",
    )
    ap.add_argument("--train", type=int, default=64)
    ap.add_argument(
        "--currents", default="0,0.2,0.5", help="study currents, nA, comma-separated (default: the study's)"
    )
    args = ap.parse_args()
    start = time.perf_counter()
    study = make_study(currents=[float(c) * 1e-9 for c in args.currents.split(",")])
    ref = M.nominal_reference(study)
    print(f"nominal chip: {ref.count.tolist()} spikes, {np.round(ref.rate).tolist()} Hz at {at(study)}")
    sources(study, ref, args.chips)
    sensitivities(study, study.words, "SPEC 2")
    if args.search:
        search(study, ref, args.space, args.search, args.train, args.chips, args.method)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
