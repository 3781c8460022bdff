"""Settings of the compensations a mismatch study compares, one frozen dataclass each.

``ndjax run``'s ``[compensation.*]`` tables are generated from these fields (``ndjax defaults
mismatch`` prints them); measurements behind the defaults are in ``experiments/MISMATCH_RESULTS.md``.
"""

from __future__ import annotations

import dataclasses

from .._settings import setting

__all__ = [
    "OffsetSettings",
    "RebalanceSettings",
    "RetuneSettings",
    "RobustSettings",
    "CompensationSettings",
]


@dataclasses.dataclass(frozen=True)
class OffsetSettings:
    """The smallest current offset from a grid that restores each chip."""

    enabled: bool = setting(True, "compare this compensation")
    offsets: tuple[float, ...] = setting(
        (-0.4, -0.2, -0.1, -0.05, 0.05, 0.1, 0.2, 0.4),
        "current offsets tried, as fractions of the largest |current| (the smallest that works wins)",
        ge=-10,
        le=10,
        elem="float",
        min_len=1,
    )


@dataclasses.dataclass(frozen=True)
class RebalanceSettings:
    """The smallest change of the Na and K conductance words from a grid of factors."""

    enabled: bool = setting(True, "compare this compensation")
    factors: tuple[float, ...] = setting(
        (0.8, 0.9, 1.0, 1.12, 1.25),
        "factors tried on the Na and on the K conductance word (every pair)",
        gt=0,
        le=10,
        elem="float",
        min_len=1,
    )


@dataclasses.dataclass(frozen=True)
class RetuneSettings:
    """Per-chip re-tuning: inverse words, then an evolution strategy, then optional Adam steps."""

    enabled: bool = setting(True, "compare this compensation")
    generations: int = setting(
        30, "(1 + population) evolution-strategy generations per chip over 13 global factors (0: none)",
        ge=0, le=100_000,
    )  # fmt: skip
    population: int = setting(8, "candidates per chip and generation", ge=1, le=10_000)
    sigma: float = setting(0.1, "step of the evolution strategy (log-factors)", gt=0, le=10)
    steps: int = setting(
        0, "straight-through Adam steps on every word afterwards (0: none)", ge=0, le=100_000
    )
    learning_rate: float = setting(0.02, "Adam step on the log of each word", gt=0, le=10)


@dataclasses.dataclass(frozen=True)
class RobustSettings:
    """One robust word set for all chips, fitted on training chips the study never draws."""

    enabled: bool = setting(True, "compare this compensation")
    train_chips: int = setting(64, "training chips (indices from 2^30)", ge=1, le=1_000_000)
    space: str = setting(
        "factors",
        "'factors' (13 global factors of the words) or 'words' (all 48 words)",
        choices=("factors", "words"),
    )
    search: str = setting(
        "auto",
        "'es' ((1 + population) evolution strategy, fixed step), 'cmaes' (CMA-ES, adapted step) or"
        " 'auto' (es for the factors, cmaes for the words)",
        choices=("auto", "es", "cmaes"),
    )
    generations: int = setting(20, "search generations", ge=0, le=100_000)
    population: int = setting(8, "candidates per generation", ge=1, le=10_000)
    sigma: float = setting(0.1, "initial step of the search (log-factors)", gt=0, le=10)


@dataclasses.dataclass(frozen=True)
class CompensationSettings:
    """Every compensation a study compares, each judged on the same chips."""

    offset: OffsetSettings = dataclasses.field(default_factory=OffsetSettings)
    rebalance: RebalanceSettings = dataclasses.field(default_factory=RebalanceSettings)
    retune: RetuneSettings = dataclasses.field(default_factory=RetuneSettings)
    robust: RobustSettings = dataclasses.field(default_factory=RobustSettings)
