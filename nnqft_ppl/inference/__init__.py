"""Layer 6, inference: NGP likelihoods as NumPyro models, NUTS / SVI runners returning ArviZ
DataTrees, and diagnostics (convergence, goodness of fit, verdicts, model comparison)."""

from . import likelihoods
from .diagnostics import compare_forms, diagnose, posterior_predictive_check
from .likelihoods import CorrelatorData, FieldStatistics, correlator_data, field_statistics
from .runners import NUTSSettings, SVISettings, coupling_names, infer, infer_correlators

__all__ = [
    "likelihoods",
    "compare_forms",
    "diagnose",
    "posterior_predictive_check",
    "CorrelatorData",
    "FieldStatistics",
    "correlator_data",
    "field_statistics",
    "NUTSSettings",
    "SVISettings",
    "coupling_names",
    "infer",
    "infer_correlators",
]
