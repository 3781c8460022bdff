"""Settings of the end-to-end fit, one frozen dataclass per stage (the single source of defaults).

``ndjax run``'s ``[optimizer.calibrate]``, ``[optimizer.gradient]``, ``[optimizer.polish]`` and
``[optimizer]`` tables are generated from these fields (``ndjax defaults fit`` prints them); the
measurements behind the defaults are in ``experiments/FIT_RESULTS.md``, section "Why the defaults".
Each stage function (:func:`ndjax.fit.calibrate`, :func:`ndjax.fit.gradient`,
:func:`ndjax.fit.polish`) takes its own settings object; :func:`ndjax.fit.fit_words` takes the whole.
"""

from __future__ import annotations

import dataclasses

from .._settings import setting

__all__ = ["CalibrateSettings", "GradientSettings", "PolishSettings", "FitSettings"]


@dataclasses.dataclass(frozen=True)
class CalibrateSettings:
    """Stage 1: CMA-ES over 13 global factors of the analog NNLS words."""

    generations: int = setting(100, "CMA-ES generations (0: skip the calibration)", ge=0, le=100_000)
    population: int = setting(
        24, "candidates per generation and run (all runs in one vmap)", ge=2, le=100_000
    )
    sigma: float = setting(0.12, "initial CMA-ES step of the 13 log-factors", gt=0, le=10)
    restarts: int = setting(3, "independent CMA-ES runs side by side; the best is kept", ge=1, le=1000)
    screen: int = setting(
        10,
        "with several candidate targets (chip.i_voltage = 'search', chip.speedup = 'auto'), generations"
        " each before only the best goes on (0: every one calibrated fully)",
        ge=0,
        le=100_000,
    )
    extend: int = setting(
        50,
        "generations per extension while the best score stays above extend_above and each extension"
        " lowers it by 5% (0: no extension)",
        ge=0,
        le=100_000,
    )
    extend_above: float = setting(1.5, "extend while the best score is above this", ge=0, le=1e12)
    extend_max: float = setting(2.0, "the extensions add at most this many times generations", ge=0, le=1000)


@dataclasses.dataclass(frozen=True)
class GradientSettings:
    """Stage 2: Adam on the relaxed words, straight-through rounding and clipping."""

    steps: int = setting(30, "Adam steps (0: skip the gradient stage)", ge=0, le=1_000_000)
    learning_rate: float = setting(1.0, "Adam step size, LSB per step", gt=0, le=1000)
    min_word: float = setting(8.0, "only words of at least this many LSBs move", ge=0, le=1023)


@dataclasses.dataclass(frozen=True)
class PolishSettings:
    """Stage 3: integer coordinate search (+-1 LSB and +-3% of large words)."""

    sweeps: int = setting(
        40, "at most this many sweeps over every move (0: skip the polish)", ge=0, le=1_000_000
    )
    combine: int = setting(8, "a sweep also tries its 2..combine best improving moves together", ge=1, le=48)
    starts: int = setting(
        1,
        "starts polished side by side (the gradient stage's best chip, then the next best calibration"
        " runs); the best final chip is kept",
        ge=1,
        le=1000,
    )


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """The whole fit: the objective's sampling, the retry rule, and each stage's settings."""

    n_save: int = setting(1500, "voltage samples per trace during the fit (spike times interpolated)", ge=10,
                          le=10_000_000)  # fmt: skip
    sub_weight: float = setting(
        0.0,
        "subthreshold term: where HH fires at most once, the RMS voltage difference after that spike,"
        " over the threshold, times this (0: off)",
        ge=0,
        le=1e6,
    )
    retry_above: float = setting(
        2.0, "a final training score above this: the whole fit again with the next seed", ge=0, le=1e12
    )
    retries: int = setting(1, "at most this many retries, the better fit kept (0: none)", ge=0, le=100)
    calibrate: CalibrateSettings = dataclasses.field(default_factory=CalibrateSettings)
    gradient: GradientSettings = dataclasses.field(default_factory=GradientSettings)
    polish: PolishSettings = dataclasses.field(default_factory=PolishSettings)
