"""What the studies share: cached ensembles and small fits on their tables."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from ...core.linalg import ordinary_least_squares
from ...ensembles.correlators import BatchErrorWarning, CorrelatorStats, correlators
from ...ensembles.description import Ensemble
from ...theory.couplings import Constant

__all__ = [
    "cached_correlators",
    "power_law_fit",
    "spec_ensemble",
    "spec_ensembles",
    "constant_coupling",
    "dask_client",
]

#: The Dask client the studies' ensembles are sampled on (None: this process); see dask_client.
_CLIENT: ContextVar = ContextVar("nnqft_dask_client", default=None)


@contextmanager
def dask_client(client):
    """Within the block, every ensemble a study samples (:func:`cached_correlators`) is split
    over the workers of ``client`` (a ``dask.distributed.Client``; None: this process). The
    merged sums equal one process's (counter-based networks, exact merges), so the results do
    not depend on it; study runners need no client argument."""
    token = _CLIENT.set(client)
    try:
        yield client
    finally:
        _CLIENT.reset(token)


def power_law_fit(x, y, yerr) -> tuple[float, float, float, int]:
    """Weighted least squares of ``log|y| = a + s log x`` with errors ``yerr / |y|``.

    Returns ``(slope, slope_stderr, chi2, dof)``; the stderr is the plain weighted one (not
    rescaled by chi2: the chi2 is reported next to it).
    """
    x, y, yerr = (np.asarray(v, dtype=np.float64) for v in (x, y, yerr))
    lx, ly, w = np.log(x), np.log(np.abs(y)), np.abs(y) / yerr
    (slope, intercept), cov = np.polyfit(lx, ly, 1, w=w, cov="unscaled")
    chi2 = float(np.sum((w * (ly - slope * lx - intercept)) ** 2))
    return float(slope), float(np.sqrt(cov[0, 0])), chi2, len(x) - 2


def spec_ensemble(spec, arch, X, width: int, n_networks: int, seed: int | None = None,
                  max_order: int | None = None) -> Ensemble:  # fmt: skip
    """The ``Ensemble`` of a spec's ``[ensemble]`` table for one architecture and width
    (``seed`` and ``max_order`` override the table's)."""
    e = spec.ensemble
    return Ensemble(arch, X, width, n_networks, e.seed if seed is None else seed,
                    max_order or e.max_order, e.n_batches, estimator=e.estimator,
                    sampler=e.sampler, dtype=e.dtype)  # fmt: skip


def spec_ensembles(spec, arch, X, max_order: int | None = None) -> dict[int, Ensemble]:
    """``{width: Ensemble}`` of a spec's ``[ensemble]`` table at its resolved sizes."""
    return {
        N: spec_ensemble(spec, arch, X, N, n, max_order=max_order)
        for N, n in spec.ensemble_sizes().items()
    }


def cached_correlators(ensemble: Ensemble, cache: Path | None, progress: bool = False):
    """``nq.correlators`` of ``ensemble``, stored under ``cache`` (atomically) and reused.

    The store is named by the ensemble's key, so a changed spec never reuses a stale ensemble,
    and two specs that need the same ensemble (fall-off and coupling studies) sample it once.
    Batch-error warnings are silenced here: the studies use the exact sampling covariance.
    """
    path = None
    if cache is not None:
        path = Path(cache) / f"{ensemble.arch.name}_N{ensemble.width}_{ensemble.key}.zarr"
        if path.exists():
            return CorrelatorStats.load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BatchErrorWarning)
        stats = correlators(ensemble, progress=progress, check_errors=False, client=_CLIENT.get())
    if path is not None:
        stats.save(path)
    return stats


def constant_coupling(arch, X, k4, covariance, cutoff) -> tuple[float, float]:
    """The constant quartic coupling measured on ``k4 (M,)``: ``(lambda, stderr)``.

    Unweighted least squares on purpose, with the honest sandwich error from the full
    ``covariance``: at close or spread-out inputs the exact covariance spans ~1e9, and a fully
    weighted (GLS) fit of a form that is only approximately right is driven by its tiniest
    directions (at Erf-net's classic inputs the GLS coupling predicts a tenth of the measured
    kappa_4). OLS of the exact oracle is exactly ~ 1/N.
    """
    D = Constant().design_matrix(arch, X, cutoff)
    fit = ordinary_least_squares(D, np.asarray(k4), covariance)
    return float(fit.theta[0]), float(fit.stderr[0])
