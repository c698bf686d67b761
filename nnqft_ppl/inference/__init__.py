"""Layer 6, inference: NGP likelihoods as NumPyro models, NUTS / SVI / exact Gaussian-posterior
runners returning ArviZ DataTrees, and diagnostics (convergence, goodness of fit, verdicts,
model comparison that says when it cannot decide)."""

from . import likelihoods
from .diagnostics import FormComparison, compare_forms, diagnose, posterior_predictive_check
from .likelihoods import (
    CorrelatorData,
    FieldStatistics,
    GaussianPosterior,
    correlator_data,
    field_statistics,
    gaussian_posterior,
)
from .runners import (
    ClosedFormSettings,
    NUTSSettings,
    SVISettings,
    coupling_names,
    infer,
    infer_correlators,
)

__all__ = [
    "likelihoods",
    "FormComparison",
    "compare_forms",
    "diagnose",
    "posterior_predictive_check",
    "CorrelatorData",
    "FieldStatistics",
    "GaussianPosterior",
    "correlator_data",
    "field_statistics",
    "gaussian_posterior",
    "ClosedFormSettings",
    "NUTSSettings",
    "SVISettings",
    "coupling_names",
    "infer",
    "infer_correlators",
]
