"""Parameters from targets: integer NeuroDyn words for a Hodgkin-Huxley model (SPEC 3, 4).

- the mapping and the classical fit: :func:`make_target`, :func:`make_targets`, :class:`Target`,
  :func:`target_from_words`, :func:`classical_fit`, :func:`nnls`;
- the end-to-end fit: :func:`fit_words` = :func:`calibrate` -> :func:`gradient` -> :func:`polish`,
  each a function of a :class:`FitProblem` (:func:`prepare_problem`), a start and its settings
  (:class:`FitSettings` and one settings class per stage), judged by :func:`score`;
- training currents: :func:`auto_currents`, :func:`onset_currents`;
- evaluation: :func:`evaluate_words` (:func:`compare_spikes` per current), :func:`fi_curve`;
- the optimisers: :class:`CMAES`, :func:`optax_step` with :func:`adam` and :class:`KeepBest`.
"""

from ._calibrate import CalibrationResult as CalibrationResult
from ._calibrate import calibrate as calibrate
from ._classical import ClassicalFit as ClassicalFit
from ._classical import GateFit as GateFit
from ._classical import chip_current as chip_current
from ._classical import classical_fit as classical_fit
from ._classical import fit_gate as fit_gate
from ._classical import nnls as nnls
from ._classical import time_scale as time_scale
from ._classical import to_words as to_words
from ._currents import auto_currents as auto_currents
from ._currents import onset_currents as onset_currents
from ._evaluate import FICurve as FICurve
from ._evaluate import evaluate_words as evaluate_words
from ._evaluate import fi_curve as fi_curve
from ._evaluate import fi_curves as fi_curves
from ._gradient import GradientResult as GradientResult
from ._gradient import gradient as gradient
from ._loop import KeepBest as KeepBest
from ._loop import adam as adam
from ._loop import init_optimizer as init_optimizer
from ._loop import optax_step as optax_step
from ._objectives import CurrentMetrics as CurrentMetrics
from ._objectives import FitProblem as FitProblem
from ._objectives import compare_spikes as compare_spikes
from ._objectives import loss as loss
from ._objectives import prepare_problem as prepare_problem
from ._objectives import score as score
from ._polish import PolishResult as PolishResult
from ._polish import polish as polish
from ._polish import polish_moves as polish_moves
from ._search import CMAES as CMAES
from ._settings import CalibrateSettings as CalibrateSettings
from ._settings import FitSettings as FitSettings
from ._settings import GradientSettings as GradientSettings
from ._settings import PolishSettings as PolishSettings
from ._target import Target as Target
from ._target import auto_i_voltage as auto_i_voltage
from ._target import make_target as make_target
from ._target import make_targets as make_targets
from ._target import target_from_words as target_from_words
from ._words import FitOutcome as FitOutcome
from ._words import fit_words as fit_words

__all__ = [
    "adam",
    "auto_currents",
    "auto_i_voltage",
    "calibrate",
    "CalibrateSettings",
    "CalibrationResult",
    "chip_current",
    "classical_fit",
    "ClassicalFit",
    "CMAES",
    "compare_spikes",
    "CurrentMetrics",
    "evaluate_words",
    "fi_curve",
    "fi_curves",
    "FICurve",
    "fit_gate",
    "fit_words",
    "FitOutcome",
    "FitProblem",
    "FitSettings",
    "GateFit",
    "gradient",
    "GradientResult",
    "GradientSettings",
    "init_optimizer",
    "KeepBest",
    "loss",
    "make_target",
    "make_targets",
    "nnls",
    "onset_currents",
    "optax_step",
    "polish",
    "polish_moves",
    "PolishResult",
    "PolishSettings",
    "prepare_problem",
    "score",
    "Target",
    "target_from_words",
    "time_scale",
    "to_words",
]
