"""Layer 5, theory: vertex integrals, Feynman diagrams of the effective action, coupling forms
and fits, the Wilsonian RG in the cutoff, the GP-limit symmetries, and the 1/n expansion of
deep networks (four-point vertex, NLO kernel, criticality), and the infinite-width prediction
of networks trained by gradient descent (the NTK Gaussian process)."""

from . import couplings
from .couplings import COUPLING_FORMS, coupling_form, fit_coupling, measured_coupling
from .deep import (
    critical_initialization,
    four_point_vertex,
    is_critical,
    kernel_fixed_point,
    nlo_kernel,
    perturbative_cumulant,
    vertex_growth,
)
from .feynman import eft_correlators, eft_cumulants
from .ntk_gp import NTKPrediction, ntk_predict
from .rg import RGFlow, rg_flow
from .symmetries import allowed_coupling_forms, gp_symmetries
from .vertex import vertex_integral

__all__ = [
    "couplings",
    "COUPLING_FORMS",
    "coupling_form",
    "fit_coupling",
    "measured_coupling",
    "critical_initialization",
    "four_point_vertex",
    "is_critical",
    "kernel_fixed_point",
    "nlo_kernel",
    "perturbative_cumulant",
    "vertex_growth",
    "eft_correlators",
    "eft_cumulants",
    "NTKPrediction",
    "ntk_predict",
    "RGFlow",
    "rg_flow",
    "allowed_coupling_forms",
    "gp_symmetries",
    "vertex_integral",
]
