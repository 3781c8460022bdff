"""Mismatch studies: many perturbed chips, how they fire, and how to compensate them.

A :class:`Study` takes one programmed chip (words and biases), a set of constant input currents and
a mismatch spread. Chip ``i`` has the mismatch ``sample_mismatch(fold_in(key(seed), i), sigma)``
(:func:`chip_mismatch`), whatever the chunking or the number of devices. For every chip and current
a study records the spike count, the first-to-last firing rate and the solve status
(:class:`Responses`); a chip *behaves* (:func:`behaves`) when, at every current, its count is
within ``count_tol`` of the reference's and its rate within ``rate_tol``. The reference is the
nominal chip (:func:`nominal_reference`) or the HH target the words were fitted to
(:func:`hh_reference`).

Compensations, each judged on the same chips: :func:`compensate_offset` (a current offset),
:func:`compensate_rebalance` (the Na and K conductance words), :func:`retune` (every word, per
chip) and :func:`robust_words` (one word set for all chips). :func:`run_study` runs them all in
resumable chunks; every simulation goes through one compiled kernel (:func:`respond`, by
:func:`run_jobs`), sharded over a :func:`device_mesh`.

Modules: ``_study`` (the study, its chips, responses), ``_kernel`` (the kernel, blocks, sharding,
segments), ``_reference``, ``_compensate`` (offset, rebalance), ``_retune``, ``_robust``, ``_run``
(chunks, resume), ``_settings`` (the settings dataclasses the ``[compensation]`` table maps onto).
"""

from .._analysis import behaves as behaves
from .._analysis import within_rate as within_rate
from ._compensate import Compensated as Compensated
from ._compensate import compensate_offset as compensate_offset
from ._compensate import compensate_rebalance as compensate_rebalance
from ._compensate import inverse_words as inverse_words
from ._compensate import rebalance_candidates as rebalance_candidates
from ._compensate import word_changes as word_changes
from ._kernel import Fixed as Fixed
from ._kernel import broadcast_words as broadcast_words
from ._kernel import chip_responses as chip_responses
from ._kernel import cost_sorted_map as cost_sorted_map
from ._kernel import device_mesh as device_mesh
from ._kernel import fixed as fixed
from ._kernel import repeat_tree as repeat_tree
from ._kernel import respond as respond
from ._kernel import responses_grid as responses_grid
from ._kernel import run_jobs as run_jobs
from ._kernel import solve_segment as solve_segment
from ._reference import hh_reference as hh_reference
from ._reference import nominal_reference as nominal_reference
from ._retune import retune as retune
from ._robust import ROBUST_RATE_TOL as ROBUST_RATE_TOL
from ._robust import TRAIN_OFFSET as TRAIN_OFFSET
from ._robust import robust_words as robust_words
from ._run import COMPENSATIONS as COMPENSATIONS
from ._run import run_study as run_study
from ._run import study_chunk as study_chunk
from ._settings import CompensationSettings as CompensationSettings
from ._settings import OffsetSettings as OffsetSettings
from ._settings import RebalanceSettings as RebalanceSettings
from ._settings import RetuneSettings as RetuneSettings
from ._settings import RobustSettings as RobustSettings
from ._study import STUDY_ATOL as STUDY_ATOL
from ._study import STUDY_RTOL as STUDY_RTOL
from ._study import Responses as Responses
from ._study import Study as Study
from ._study import chip_mismatch as chip_mismatch

__all__ = [
    "Study",
    "Responses",
    "chip_mismatch",
    "STUDY_RTOL",
    "STUDY_ATOL",
    "nominal_reference",
    "hh_reference",
    "behaves",
    "within_rate",
    "Fixed",
    "fixed",
    "respond",
    "run_jobs",
    "solve_segment",
    "chip_responses",
    "responses_grid",
    "cost_sorted_map",
    "device_mesh",
    "broadcast_words",
    "repeat_tree",
    "Compensated",
    "compensate_offset",
    "compensate_rebalance",
    "rebalance_candidates",
    "inverse_words",
    "word_changes",
    "retune",
    "robust_words",
    "TRAIN_OFFSET",
    "ROBUST_RATE_TOL",
    "run_study",
    "study_chunk",
    "COMPENSATIONS",
    "CompensationSettings",
    "OffsetSettings",
    "RebalanceSettings",
    "RetuneSettings",
    "RobustSettings",
]
