"""Layer 5, theory: vertex integrals, Feynman diagrams of the effective action, coupling forms
and fits, the Wilsonian RG in the cutoff, and the GP-limit symmetries."""

from . import couplings
from .couplings import COUPLING_FORMS, coupling_form, fit_coupling, measured_coupling
from .feynman import eft_correlators, eft_cumulants
from .rg import RGFlow, rg_flow
from .symmetries import allowed_coupling_forms, gp_symmetries
from .vertex import vertex_integral

__all__ = [
    "couplings",
    "COUPLING_FORMS",
    "coupling_form",
    "fit_coupling",
    "measured_coupling",
    "eft_correlators",
    "eft_cumulants",
    "RGFlow",
    "rg_flow",
    "allowed_coupling_forms",
    "gp_symmetries",
    "vertex_integral",
]
