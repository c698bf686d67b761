"""Ensembles across workers with Dask: the per-batch sums of disjoint ranges merge exactly.

Counter-based randomness makes every network independent of where it is computed, so a large
ensemble is split into contiguous network ranges, each streamed by one task into
:class:`~nnqft_ppl.ensembles.sampler.MomentSums`, and the results are added. Works with any
``dask.distributed.Client`` (a ``LocalCluster`` on one machine, or a real cluster).
"""

from __future__ import annotations

import math

from ..core.validation import check_positive_int
from .description import Ensemble
from .sampler import MomentSums, accumulate_moments

__all__ = ["distributed_moments"]


def distributed_moments(
    client, ensemble: Ensemble, *, start: int = 0, n_tasks: int | None = None
) -> MomentSums:
    """Like :func:`~nnqft_ppl.ensembles.sampler.accumulate_moments`, split over a Dask cluster.

    Args:
        client: a ``dask.distributed.Client``.
        ensemble: the ensemble to accumulate.
        start: first network (networks before it are left to other sums, e.g. a checkpoint).
        n_tasks: number of network ranges (default: 4 per worker thread); ranges start on
            batch boundaries, so every batch is summed by one task.

    Returns:
        The merged :class:`MomentSums` (equal to the single-process result to rounding).

    Example:
        >>> from dask.distributed import Client
        >>> with Client(processes=False) as client:
        ...     sums = distributed_moments(client, Ensemble(ErfNet(), X, 5, 10**6))
    """
    if n_tasks is None:
        n_tasks = 4 * max(1, sum(client.nthreads().values()))
    n_tasks = min(check_positive_int(n_tasks, "n_tasks"), ensemble.n_batches)
    step = math.ceil(ensemble.n_batches / n_tasks) * ensemble.batch_size
    edges = [start, *range((start // step + 1) * step, ensemble.n_networks, step)]
    futures = [
        client.submit(
            accumulate_moments, ensemble, start=lo, stop=min(hi, ensemble.n_networks), pure=False
        )
        for lo, hi in zip(edges, [*edges[1:], ensemble.n_networks], strict=True)
    ]
    parts = client.gather(futures)
    total = parts[0]
    for part in parts[1:]:
        total = total.merge(part)
    return total
