"""Layer 3, oracle: exact finite-width correlators (single-neuron quadrature) and the exact
sampling covariance of their estimators, and deep linear nets without biases (exact at every
depth and width); noise-free references for ensembles and theory."""

from .deep_linear import exact_deep_linear_cumulant
from .exact import (
    exact_covariance,
    exact_cumulant,
    exact_cumulants,
    exact_moments,
    exact_single_input_moments,
    oracle_error,
    single_neuron_moments,
)

__all__ = [
    "exact_deep_linear_cumulant",
    "exact_covariance",
    "exact_cumulant",
    "exact_cumulants",
    "exact_moments",
    "exact_single_input_moments",
    "oracle_error",
    "single_neuron_moments",
]
