"""ndjax: differentiable Hodgkin-Huxley and NeuroDyn neurons in JAX."""

from ._analysis import count_spikes as count_spikes
from ._analysis import spike_mask as spike_mask
from ._analysis import spike_times as spike_times
from ._hh import GateKinetics as GateKinetics
from ._hh import HHParams as HHParams
from ._hh import hh_currents as hh_currents
from ._hh import hh_gate_kinetics as hh_gate_kinetics
from ._hh import hh_params as hh_params
from ._hh import hh_rates as hh_rates
from ._hh import hh_vector_field as hh_vector_field
from ._neurodyn import Mismatch as Mismatch
from ._neurodyn import NDBiases as NDBiases
from ._neurodyn import NDChip as NDChip
from ._neurodyn import NDConstants as NDConstants
from ._neurodyn import NDParams as NDParams
from ._neurodyn import NDWords as NDWords
from ._neurodyn import chip_params as chip_params
from ._neurodyn import nd_biases as nd_biases
from ._neurodyn import nd_chip as nd_chip
from ._neurodyn import nd_constants as nd_constants
from ._neurodyn import nd_currents as nd_currents
from ._neurodyn import nd_rates as nd_rates
from ._neurodyn import nd_vector_field as nd_vector_field
from ._neurodyn import nominal_mismatch as nominal_mismatch
from ._neurodyn import sample_mismatch as sample_mismatch
from ._neurodyn import sigmoid_centres as sigmoid_centres
from ._simulate import HH as HH
from ._simulate import NEURODYN as NEURODYN
from ._simulate import ClampTrace as ClampTrace
from ._simulate import Model as Model
from ._simulate import Trace as Trace
from ._simulate import check_trace as check_trace
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

__version__ = "0.1.0"
