"""The user's guide API (``HHModel``, ``NeuroDynModel``), a thin shell over the core."""

from ._fit import FitND as FitND
from ._models import ClampResult as ClampResult
from ._models import Gate as Gate
from ._models import HHModel as HHModel
from ._models import NeuroDynModel as NeuroDynModel
from ._models import SimulationResult as SimulationResult
