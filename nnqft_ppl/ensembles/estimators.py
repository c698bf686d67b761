"""Two estimators of the connected correlators, from the same networks (docs/physics.md §2, §5).

``"outputs"``: the plug-in moment-cumulant formula on the sample moments of the outputs ``f``.
``kappa_4`` is a difference of O(1) moments whose signal is O(1/N): its relative error grows
like ``N / sqrt(n_networks)``.

``"kernel"``: condition on the last hidden layer ``h``. Given ``h`` the readout is Gaussian with
covariance ``G = sb1^2 + (sw1^2 / N) h h^T``, so the cumulant generating function of f is
``log E exp(t^T G t / 2)`` and, exactly,

    G_2 = E[G],   kappa_4(1234) = sum_3 Cov(G_12, G_34),   kappa_6 = sum_15 cum(G_ab, G_cd, G_ef),
    kappa_8 = sum_105 cum_4(G, G, G, G)      (sums over the pairings of the arguments),

and the full moments are the Wick sums of the moments of G. The joint cumulants of the
``C(P+1, 2)`` entries of G are estimated by Fisher's k-statistics (unbiased), the moments by
sample means (unbiased). G fluctuates by O(1/sqrt(N)) around the kernel, so the error of
``kappa_4`` no longer grows with N, and no readout random numbers are needed. To keep the
sums well conditioned, the accumulated variables are ``g = G - K`` on the pairs ``i <= j``
(the GP kernel K as a fixed shift; cumulants of order >= 2 do not change, moments are shifted
back exactly).

Both estimators accumulate per-batch monomial sums of their per-network variables (the P
outputs; the entries of ``G - K``) in the same streaming sampler, so they merge, resume and run
on Dask alike; ``"both"`` accumulates the two from the same networks (paired errors).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..core.multisets import (
    cumulants_from_moments,
    k_statistics,
    pair_table,
    pairing_ranks,
    shifted_moments,
)

__all__ = ["ESTIMATORS", "BLOCKS", "Layout", "layout", "blocks_of", "StatisticTables", "tables"]

#: What an ensemble can accumulate: one estimator's variables, or both from the same networks.
ESTIMATORS = ("kernel", "outputs", "both")
#: The blocks of per-network variables.
BLOCKS = ("outputs", "kernel")


class Layout(NamedTuple):
    """The per-network variables of a block: ``n_variables`` of them, monomials of ``degrees``."""

    n_variables: int
    degrees: tuple[int, ...]


def blocks_of(estimator: str) -> tuple[str, ...]:
    """The variable blocks an estimator accumulates."""
    return BLOCKS if estimator == "both" else (estimator,)


def layout(block: str, n_inputs: int, max_order: int) -> Layout:
    """Outputs: the P outputs, even degrees up to ``max_order``. Kernel: the ``C(P+1, 2)``
    entries of G, degrees up to ``max_order / 2`` (a degree-m cumulant of G gives kappa_2m)."""
    if block == "outputs":
        return Layout(n_inputs, tuple(range(2, max_order + 1, 2)))
    return Layout(n_inputs * (n_inputs + 1) // 2, tuple(range(1, max_order // 2 + 1)))


class StatisticTables(NamedTuple):
    """Estimates on index multisets of the P inputs, ``{order: (..., M_order)}``.

    Attributes:
        moments: ``G_n`` for the accumulated even orders.
        cumulants: ``kappa_n`` (``kappa_2`` is the 2-pt function).
    """

    moments: dict
    cumulants: dict


def tables(block: str, sums: dict, n, n_inputs: int, max_order: int, center=None):
    """Moments and connected correlators from one block's power sums.

    Args:
        block: ``"outputs"`` or ``"kernel"``.
        sums: ``{degree: (..., M_degree)}`` sums over networks of the block's monomials.
        n: number of networks (scalar or ``(...)``, e.g. per jackknife block).
        n_inputs: P; max_order: highest even order.
        center: ``(C(P+1, 2),)`` the shift K the kernel variables were accumulated around.

    Returns:
        :class:`StatisticTables`.
    """
    n_ = np.asarray(n, dtype=np.float64)[..., None]
    if block == "outputs":
        moments = {k: s / n_ for k, s in sums.items()}
        cumulants = cumulants_from_moments(moments, n_inputs, max_order)
        return StatisticTables(moments, cumulants)
    V = n_inputs * (n_inputs + 1) // 2
    m = max_order // 2
    delta_moments = {k: s / n_ for k, s in sums.items()}
    moments, cumulants = {}, {}
    for k in range(1, m + 1):
        raw = shifted_moments(delta_moments, center, V, k)  # E[G_p1 ... G_pk]
        moments[2 * k] = raw[..., pairing_ranks(n_inputs, 2 * k)].sum(axis=-1)
        if k == 1:
            cumulants[2] = moments[2]
        else:
            kstat = k_statistics(sums, n, V, k)
            cumulants[2 * k] = kstat[..., pairing_ranks(n_inputs, 2 * k)].sum(axis=-1)
    return StatisticTables(moments, cumulants)


def kernel_center(kernel_matrix: np.ndarray) -> np.ndarray:
    """The fixed shift of the kernel variables: the GP kernel on the pairs ``i <= j``."""
    return pair_table(np.asarray(kernel_matrix, dtype=np.float64))
