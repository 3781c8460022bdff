"""ndjax: differentiable Hodgkin-Huxley and NeuroDyn neurons in JAX.

The layers, lowest first (each imports only from the ones above it in this list):
``ndjax.models`` (equations), ``simulate``/``vclamp`` and the spike maths (``count_spikes``, ...),
``ndjax.fit`` (words from targets), ``ndjax.studies`` (thousands of chips), ``ndjax.plot``,
``ndjax.compat`` (the user's guide classes) and the ``ndjax`` command. The most used names of
each are re-exported here.
"""

from . import compat as compat  # noqa: E402  (namespaces, after the names they hold)
from . import fit as fit  # noqa: E402
from . import models as models  # noqa: E402
from . import studies as studies  # noqa: E402
from ._analysis import count_spikes as count_spikes
from ._analysis import spike_mask as spike_mask
from ._analysis import spike_times as spike_times
from ._checks import SolveFailedError as SolveFailedError
from ._checks import Status as Status
from ._simulate import HH as HH
from ._simulate import NEURODYN as NEURODYN
from ._simulate import ClampTrace as ClampTrace
from ._simulate import Model as Model
from ._simulate import Trace as Trace
from ._simulate import check_trace as check_trace
from ._simulate import default_controller as default_controller
from ._simulate import default_solver as default_solver
from ._simulate import simulate as simulate
from ._simulate import vclamp as vclamp
from ._stimulus import Constant as Constant
from ._stimulus import Function as Function
from ._stimulus import Pulses as Pulses
from ._stimulus import Sampled as Sampled
from ._stimulus import Step as Step
from ._stimulus import Stimulus as Stimulus
from ._stimulus import constant as constant
from ._stimulus import pulses as pulses
from ._stimulus import sampled as sampled
from ._stimulus import step as step
from ._version import __version__ as __version__
from ._words_io import load_words as load_words
from ._words_io import save_words as save_words
from .compat import FitND as FitND
from .compat import HHModel as HHModel
from .compat import NeuroDynModel as NeuroDynModel
from .fit import FitOutcome as FitOutcome
from .fit import Target as Target
from .fit import evaluate_words as evaluate_words
from .fit import fit_words as fit_words
from .fit import make_target as make_target
from .fit import make_targets as make_targets
from .models import BIAS_DEFAULTS as BIAS_DEFAULTS
from .models import HH_DEFAULTS as HH_DEFAULTS
from .models import GateKinetics as GateKinetics
from .models import HHParams as HHParams
from .models import Mismatch as Mismatch
from .models import NDBiases as NDBiases
from .models import NDChip as NDChip
from .models import NDConstants as NDConstants
from .models import NDParams as NDParams
from .models import NDWords as NDWords
from .models import chip_params as chip_params
from .models import hh_currents as hh_currents
from .models import hh_gate_kinetics as hh_gate_kinetics
from .models import hh_params as hh_params
from .models import hh_rates as hh_rates
from .models import hh_vector_field as hh_vector_field
from .models import nd_biases as nd_biases
from .models import nd_chip as nd_chip
from .models import nd_constants as nd_constants
from .models import nd_currents as nd_currents
from .models import nd_rates as nd_rates
from .models import nd_vector_field as nd_vector_field
from .models import nominal_mismatch as nominal_mismatch
from .models import sample_mismatch as sample_mismatch
from .models import sigmoid_centres as sigmoid_centres

__all__ = sorted(name for name in dir() if not name.startswith("_")) + ["__version__"]
