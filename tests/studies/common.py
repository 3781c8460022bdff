"""The tiny study the studies tests share (also imported by the sharded subprocess of test_run)."""

import numpy as np

import ndjax
from ndjax.studies import (
    CompensationSettings,
    OffsetSettings,
    RebalanceSettings,
    RetuneSettings,
    RobustSettings,
    Study,
)

# 5 ms of chip time from [0.7, 0, 0, 0]: the default chip peaks at 1.65 ms and 1.82 ms later (SPEC 2),
# so it fires 2 spikes at 0 nA
CHIP = ndjax.nd_chip()
STUDY = Study(
    words=CHIP.words,
    biases=CHIP.biases,
    currents=np.array([0.0, 5e-10]),
    ts=np.linspace(0.0, 5e-3, 401),
    y0=np.array([0.7, 0.0, 0.0, 0.0]),
    threshold=0.9,
    hysteresis=0.05,
    sigma=0.15,
    seed=3,
)
OFFSETS = [-1e-10, 1e-10, 2e-10]  # A
KW = dict(
    # offsets as fractions of offset_unit = 1 A: the absolute currents above
    compensation=CompensationSettings(
        offset=OffsetSettings(offsets=tuple(OFFSETS)),
        rebalance=RebalanceSettings(factors=(0.9, 1.0, 1.1)),
        retune=RetuneSettings(generations=2, population=2, steps=1, learning_rate=0.02),
        robust=RobustSettings(train_chips=3, generations=1, population=2),
    ),
    offset_unit=1.0,
)
