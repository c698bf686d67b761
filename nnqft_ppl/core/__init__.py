"""Layer 1, core: combinatorics of index multisets, correlators as xarray over ``tuple``,
validation, linear algebra (whitening, chi-square, least squares), storage, registries,
float64 handling and progress bars. Imports nothing else of the package."""

from .linalg import (
    DEFAULT_RTOL,
    ChiSquare,
    LeastSquares,
    Whitening,
    chi_square,
    generalized_least_squares,
    ordinary_least_squares,
    whitening,
)
from .multisets import (
    cumulants_from_moments,
    gp_moments,
    index_multisets,
    moments_from_cumulants,
    tuple_labels,
)
from .precision import enable_x64, float64
from .registry import Registry
from .storage import open_store, to_json, write_store
from .tuples import tuple_array, tuple_covariance

__all__ = [
    "DEFAULT_RTOL",
    "ChiSquare",
    "LeastSquares",
    "Whitening",
    "chi_square",
    "generalized_least_squares",
    "ordinary_least_squares",
    "whitening",
    "cumulants_from_moments",
    "gp_moments",
    "index_multisets",
    "moments_from_cumulants",
    "tuple_labels",
    "enable_x64",
    "float64",
    "Registry",
    "open_store",
    "to_json",
    "write_store",
    "tuple_array",
    "tuple_covariance",
]
