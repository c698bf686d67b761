"""Layer 4, ensembles: the ensemble description, the streaming counter-based sampler, the
correlator statistics with honest errors, Dask distribution, and ensembles trained with optax."""

from .correlators import (
    BatchErrorWarning,
    CorrelatorStats,
    SmallEnsembleWarning,
    correlators,
    monte_carlo_kernel,
)
from .description import Ensemble
from .distributed import distributed_moments
from .sampler import MomentSums, accumulate_moments, iter_output_chunks, sample_outputs
from .training import correlator_stats_from_outputs, train_ensemble

__all__ = [
    "BatchErrorWarning",
    "CorrelatorStats",
    "SmallEnsembleWarning",
    "correlators",
    "monte_carlo_kernel",
    "Ensemble",
    "distributed_moments",
    "MomentSums",
    "accumulate_moments",
    "iter_output_chunks",
    "sample_outputs",
    "correlator_stats_from_outputs",
    "train_ensemble",
]
