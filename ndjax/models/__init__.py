"""Equations only: parameter pytrees and pure vector fields of the HH membrane and the NeuroDyn chip.

``ndjax.models`` re-exports the pieces a user composes (the same names are at ``ndjax.*``):
HH kinetics and parameters (SPEC 1), the chip's constants, biases, words, mismatch and DAC maps in
both directions (SPEC 2), and the gate kinetics they share (the gate ODE, the sigmoid ladder).
"""

from ._hh import HH_DEFAULTS as HH_DEFAULTS
from ._hh import GateKinetics as GateKinetics
from ._hh import HHDefaults as HHDefaults
from ._hh import HHParams as HHParams
from ._hh import hh_currents as hh_currents
from ._hh import hh_gate_kinetics as hh_gate_kinetics
from ._hh import hh_params as hh_params
from ._hh import hh_rates as hh_rates
from ._hh import hh_vector_field as hh_vector_field
from ._kinetics import gate_derivative as gate_derivative
from ._kinetics import ladder_centres as ladder_centres
from ._kinetics import sigmoid_basis as sigmoid_basis
from ._kinetics import sigmoid_ladder as sigmoid_ladder
from ._kinetics import sigmoid_sum as sigmoid_sum
from ._kinetics import steady_state as steady_state
from ._kinetics import time_constant as time_constant
from ._neurodyn import BIAS_DEFAULTS as BIAS_DEFAULTS
from ._neurodyn import WORD_RANGES as WORD_RANGES
from ._neurodyn import WORD_SHAPES as WORD_SHAPES
from ._neurodyn import BiasDefaults as BiasDefaults
from ._neurodyn import Mismatch as Mismatch
from ._neurodyn import NDBiases as NDBiases
from ._neurodyn import NDChip as NDChip
from ._neurodyn import NDConstants as NDConstants
from ._neurodyn import NDParams as NDParams
from ._neurodyn import NDWords as NDWords
from ._neurodyn import check_words as check_words
from ._neurodyn import chip_params as chip_params
from ._neurodyn import nd_biases as nd_biases
from ._neurodyn import nd_chip as nd_chip
from ._neurodyn import nd_constants as nd_constants
from ._neurodyn import nd_currents as nd_currents
from ._neurodyn import nd_rates as nd_rates
from ._neurodyn import nd_vector_field as nd_vector_field
from ._neurodyn import nominal_mismatch as nominal_mismatch
from ._neurodyn import physical_mismatch as physical_mismatch
from ._neurodyn import physical_to_words as physical_to_words
from ._neurodyn import quantize_ste as quantize_ste
from ._neurodyn import sample_mismatch as sample_mismatch
from ._neurodyn import sigmoid_centres as sigmoid_centres
from ._neurodyn import unphysical_fraction as unphysical_fraction
from ._neurodyn import word_units as word_units

__all__ = [name for name in dir() if not name.startswith("_")]
