"""Ensembles across workers with Dask: the per-batch sums of disjoint ranges merge exactly.

Counter-based randomness makes every network independent of where it is computed, so a large
ensemble is split into contiguous network ranges, each streamed by one task into
:class:`~nnqft_ppl.ensemble.MomentSums`, and the results are added. Works with any
``dask.distributed.Client`` (a ``LocalCluster`` on one machine, or a real cluster).
"""

from __future__ import annotations

import math

from .architectures import MLP
from .checks import check_inputs, check_positive_int
from .ensemble import MomentSums, accumulate_moments

__all__ = ["distributed_moments"]


def distributed_moments(
    client,
    arch: MLP,
    X,
    width: int,
    n_networks: int,
    seed: int = 0,
    max_order: int = 4,
    n_batches: int = 1000,
    n_tasks: int | None = None,
    dtype: str = "float64",
) -> MomentSums:
    """Like :func:`~nnqft_ppl.ensemble.accumulate_moments`, split over a Dask cluster.

    Args:
        client: a ``dask.distributed.Client``.
        n_tasks: number of network ranges (default: 4 per worker thread).
        Other arguments as in ``accumulate_moments``.

    Returns:
        The merged :class:`MomentSums` (equal to the single-process result up to rounding).

    Example:
        >>> from dask.distributed import Client
        >>> with Client(processes=False) as client:
        ...     sums = distributed_moments(client, ErfNet(), X, 5, 10**6)
    """
    X = check_inputs(X, arch.d_in)
    n_networks = check_positive_int(n_networks, "n_networks")
    if n_tasks is None:
        n_tasks = 4 * max(1, sum(client.nthreads().values()))
    n_tasks = min(check_positive_int(n_tasks, "n_tasks"), n_networks)
    step = math.ceil(n_networks / n_tasks)
    futures = [
        client.submit(
            accumulate_moments,
            arch,
            X,
            width,
            n_networks,
            seed,
            max_order,
            n_batches,
            None,
            dtype,
            lo,
            min(lo + step, n_networks),
            pure=False,
        )
        for lo in range(0, n_networks, step)
    ]
    parts = client.gather(futures)
    total = parts[0]
    for part in parts[1:]:
        total = total.merge(part)
    return total
