"""Index multisets, set partitions and the moment <-> cumulant maps on them.

A symmetric n-point function of P inputs is stored on its *unique index multisets*
``i1 <= i2 <= ... <= in`` (``C(P+n-1, n)`` of them: 126 for n=4, P=6), in the lexicographic
order of :func:`itertools.combinations_with_replacement`. Every table in the library uses
this order, so a correlator is a flat array over the ``tuple`` dimension.

The combinatorial tables here (multisets, partitions, gather indices) are built once per
``(P, n)`` with NumPy and cached; the numerical work that uses them is a vectorised gather.
"""

from __future__ import annotations

import itertools
import math
from functools import cache

import numpy as np

__all__ = [
    "index_multisets",
    "multiset_rank",
    "even_partitions",
    "set_partitions",
    "k_statistics",
    "partition_plan",
    "monomials",
    "cumulants_from_moments",
    "moments_from_cumulants",
    "tuple_labels",
    "diagonal_ranks",
    "pair_table",
    "pair_matrix",
    "gp_moments",
    "multiplicities",
    "union_ranks",
    "pairing_ranks",
    "shifted_moments",
]


@cache
def index_multisets(n_inputs: int, order: int) -> np.ndarray:
    """All sorted index tuples ``i1 <= ... <= i_order`` of ``range(n_inputs)``.

    Returns an int array of shape ``(C(n_inputs + order - 1, order), order)``, rows in
    lexicographic order (row ``multiset_rank(t)`` is ``t``). ``order = 0`` gives one empty row.
    """
    rows = list(itertools.combinations_with_replacement(range(n_inputs), order))
    out = np.array(rows, dtype=np.int64).reshape(len(rows), order)
    out.setflags(write=False)
    return out


def multiset_rank(tuples: np.ndarray, n_inputs: int) -> np.ndarray:
    """Row numbers in :func:`index_multisets` of index tuples (any order within a row).

    ``tuples``: int array ``(..., n)``; returns int array ``(...)``. Uses the combinatorial
    number system: a sorted multiset ``i_k`` maps to the strictly increasing ``c_k = i_k + k``
    drawn from ``m = n_inputs + n - 1`` items, whose lexicographic rank is
    ``C(m, n) - 1 - sum_k C(m - 1 - c_k, n - k)``.
    """
    t = np.sort(np.asarray(tuples, dtype=np.int64), axis=-1)
    n = t.shape[-1]
    if n == 0:
        return np.zeros(t.shape[:-1], dtype=np.int64)
    m = n_inputs + n - 1
    c = t + np.arange(n)
    comb = _binomial_table(m)
    terms = comb[m - 1 - c, n - np.arange(n)]
    return comb[m, n] - 1 - terms.sum(axis=-1)


@cache
def _binomial_table(m: int) -> np.ndarray:
    """``table[a, b] = C(a, b)`` for ``0 <= a, b <= m`` (zero where ``b > a``)."""
    table = np.zeros((m + 1, m + 2), dtype=np.int64)
    for a in range(m + 1):
        for b in range(a + 1):
            table[a, b] = math.comb(a, b)
    return table


@cache
def set_partitions(n: int, even: bool = False) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """Set partitions of ``range(n)`` (all of them, or those whose blocks all have even size).

    Counts: the Bell numbers 1, 2, 5, 15, 52, ... for ``n = 1, 2, ...``; even ones: 1, 4, 31,
    379 for ``n = 2, 4, 6, 8``.
    """
    return tuple(_partitions(tuple(range(n)), 2 if even else 1))


def even_partitions(n: int) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """Set partitions of ``range(n)`` whose blocks all have even size.

    These are the only partitions that contribute to moments and cumulants of a field with
    vanishing odd correlators (the f -> -f symmetry of the parameter prior): 1 for n=2,
    4 for n=4, 31 for n=6, 379 for n=8.
    """
    return set_partitions(n, even=True)


def _partitions(items: tuple[int, ...], step: int):
    if not items:
        yield ()
        return
    first, rest = items[0], items[1:]
    # The block holding `first` takes 0, 1, 2, ... (or, for even blocks, 1, 3, ...) others.
    for size in range(step - 1, len(rest) + 1, step):
        for partners in itertools.combinations(rest, size):
            remaining = tuple(i for i in rest if i not in partners)
            for tail in _partitions(remaining, step):
                yield ((first, *partners), *tail)


@cache
def _parent_and_last(n_inputs: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """For each multiset of ``order``: the rank of its first ``order-1`` entries and its last."""
    t = index_multisets(n_inputs, order)
    return multiset_rank(t[:, :-1], n_inputs), t[:, -1]


def monomials(values, max_order: int) -> dict[int, object]:
    """Products of the entries of ``values`` over every index multiset up to ``max_order``.

    ``values``: array ``(..., P)``. Returns ``{n: array (..., C(P+n-1, n))}`` for
    ``n = 1..max_order``; degree-n monomials are built from degree-(n-1) ones with one
    multiplication each. Works on NumPy and JAX arrays alike.
    """
    n_inputs = values.shape[-1]
    out = {1: values}
    for n in range(2, max_order + 1):
        parent, last = _parent_and_last(n_inputs, n)
        out[n] = out[n - 1][..., parent] * values[..., last]
    return out


@cache
def partition_plan(n_inputs: int, order: int, even: bool = True):
    """Gather plan for sums over the (even, or all) set partitions of every multiset of ``order``.

    Groups the partitions by their block sizes. For each group returns
    ``(block_sizes, block_ranks, n_blocks)`` where ``block_ranks[b]`` is an int array
    ``(M, n_partitions_in_group)`` giving, for each multiset and partition, the rank of the
    sub-multiset in block ``b`` among multisets of its size.
    """
    tuples = index_multisets(n_inputs, order)
    groups: dict[tuple[int, ...], list] = {}
    for partition in set_partitions(order, even):
        ordered = tuple(sorted(partition, key=len, reverse=True))
        sizes = tuple(len(b) for b in ordered)
        groups.setdefault(sizes, []).append(ordered)
    plan = []
    for sizes, partitions in groups.items():
        ranks = []
        for b in range(len(sizes)):
            cols = np.stack(
                [multiset_rank(tuples[:, list(p[b])], n_inputs) for p in partitions], axis=-1
            )
            ranks.append(cols)
        plan.append((sizes, tuple(ranks)))
    return tuple(plan)


def _partition_sum(tables, n_inputs, order, weight, even=True):
    """``sum_pi weight(sizes(pi)) prod_B tables[|B|][..., T_B]`` for each multiset T of ``order``.

    ``weight`` takes the block sizes of a partition (largest first). Partitions with a block size
    missing from ``tables`` count as zero.
    """
    total = 0.0
    for sizes, ranks in partition_plan(n_inputs, order, even):
        if any(size not in tables for size in sizes):
            continue
        term = 1.0
        for size, rank in zip(sizes, ranks, strict=True):
            term = term * tables[size][..., rank]
        total = total + weight(sizes) * term.sum(axis=-1)
    return total


def _mobius(sizes) -> int:
    """Moebius function of the partition lattice: ``(-1)^(k-1) (k-1)!`` for k blocks."""
    k = len(sizes)
    return (-1) ** (k - 1) * math.factorial(k - 1)


def cumulants_from_moments(moments: dict, n_inputs: int, max_order: int, even: bool = True):
    """Joint cumulants from raw moments on index multisets.

    ``moments``: ``{n: array (..., M_n)}`` (``E[f_i1 ... f_in]``). With ``even=True`` (a field
    with vanishing odd correlators) the even orders ``2..max_order`` over even partitions, e.g.
    ``kappa_4 = G_4 - sum_3 G_2 G_2`` and ``kappa_6 = G_6 - sum_15 G_4 G_2 + 2 sum_15 G_2 G_2 G_2``;
    with ``even=False`` every order ``1..max_order`` over all partitions. Returns ``{n: kappa_n}``:
    ``kappa_n(T) = sum_pi (-1)^(|pi|-1) (|pi|-1)! prod_B G(T_B)``.
    """
    orders = range(2, max_order + 1, 2) if even else range(1, max_order + 1)
    return {n: _partition_sum(moments, n_inputs, n, _mobius, even) for n in orders}


def moments_from_cumulants(cumulants: dict, n_inputs: int, max_order: int, even: bool = True):
    """Moments from joint cumulants: ``G_n(T) = sum_pi prod_B kappa(T_B)``.

    With only ``kappa_2 = K`` given (``even=True``) this is the Wick / Isserlis sum over pairings
    (the GP prediction); orders missing from ``cumulants`` count as zero. Works on NumPy or JAX
    arrays with leading batch dimensions.
    """
    orders = range(2, max_order + 1, 2) if even else range(1, max_order + 1)
    return {n: _partition_sum(cumulants, n_inputs, n, lambda sizes: 1, even) for n in orders}


#: Coefficients of the k-statistics in power sums, by the block sizes of a partition and the
#: sample size n: ``k_T = sum_pi c(sizes(pi), n) prod_B S_B`` (Fisher's unbiased cumulants).
_K_STATISTIC = {
    (1,): lambda n: 1 / n,
    (2,): lambda n: 1 / (n - 1),
    (1, 1): lambda n: -1 / (n * (n - 1)),
    (3,): lambda n: n / ((n - 1) * (n - 2)),
    (2, 1): lambda n: -1 / ((n - 1) * (n - 2)),
    (1, 1, 1): lambda n: 2 / (n * (n - 1) * (n - 2)),
    (4,): lambda n: n * (n + 1) / ((n - 1) * (n - 2) * (n - 3)),
    (3, 1): lambda n: -(n + 1) / ((n - 1) * (n - 2) * (n - 3)),
    (2, 2): lambda n: -1 / ((n - 2) * (n - 3)),
    (2, 1, 1): lambda n: 2 / ((n - 1) * (n - 2) * (n - 3)),
    (1, 1, 1, 1): lambda n: -6 / (n * (n - 1) * (n - 2) * (n - 3)),
}


def k_statistics(power_sums: dict, n, n_variables: int, order: int):
    """Unbiased estimates of the joint cumulants of ``order`` (1..4) from power sums.

    Args:
        power_sums: ``{k: (..., C(V+k-1, k))}``: sums over the sample of every degree-k monomial
            of the V variables, for ``k = 1..order``.
        n: sample size (scalar, or ``(...)`` for the leading dims, e.g. jackknife blocks).
        n_variables: V.
        order: 1, 2, 3 or 4.

    Returns:
        ``(..., C(V+order-1, order))``: the multivariate k-statistics, e.g.
        ``k_uv = (S_uv - S_u S_v / n) / (n - 1)`` (the unbiased covariance) and
        ``k_uvw = (n S_uvw - sum_3 S_uv S_w + 2 S_u S_v S_w / n) / ((n - 1)(n - 2))``. Their
        expectation is the joint cumulant exactly, for any distribution.
    """
    if order not in (1, 2, 3, 4):
        raise ValueError(f"k-statistics are implemented for orders 1..4, got {order}")
    n = np.asarray(n, dtype=np.float64)[..., None]
    return _partition_sum(
        power_sums, n_variables, order, lambda sizes: _K_STATISTIC[sizes](n), even=False
    )


def tuple_labels(n_inputs: int, order: int) -> list[str]:
    """Readable coordinate labels for the ``tuple`` dimension, e.g. ``"0,0,1,3"``."""
    return [",".join(map(str, row)) for row in index_multisets(n_inputs, order)]


def diagonal_ranks(n_inputs: int, order: int) -> np.ndarray:
    """Ranks ``(n_inputs,)`` of the diagonal multisets ``(i, i, ..., i)`` of ``order``."""
    return multiset_rank(np.repeat(np.arange(n_inputs)[:, None], order, axis=1), n_inputs)


def pair_table(K):
    """A symmetric ``(..., P, P)`` matrix on the 2-multisets ``i <= j``: ``(..., C(P+1, 2))``."""
    pairs = index_multisets(K.shape[-1], 2)
    return K[..., pairs[:, 0], pairs[:, 1]]


def pair_matrix(values: np.ndarray, n_inputs: int) -> np.ndarray:
    """The symmetric ``(P, P)`` matrix whose :func:`pair_table` is ``values`` ``(C(P+1, 2),)``."""
    a, b = index_multisets(n_inputs, 2).T
    out = np.empty((n_inputs, n_inputs), dtype=np.result_type(values, np.float64))
    out[a, b] = values
    out[b, a] = values
    return out


def gp_moments(K, max_order: int) -> dict:
    """Gaussian-process (Wick / Isserlis) moments of a centred field with covariance ``K``.

    ``K``: ``(P, P)``. Returns ``{n: (C(P+n-1, n),)}`` for even ``n <= max_order``: sums over
    pairings of products of K (3 pairings for n = 4, 15 for n = 6), the free-theory n-pt
    functions. Example: ``gp_moments(kernel(arch, X), 6)[6]``.
    """
    P = K.shape[-1]
    return moments_from_cumulants({2: pair_table(K)}, P, max_order)


@cache
def multiplicities(n_inputs: int, order: int) -> np.ndarray:
    """Ordered index tuples per multiset, ``order! / prod(counts!)``: ``(C(P+n-1, n),)``."""
    T = index_multisets(n_inputs, order)
    counts = np.stack([(T == i).sum(axis=1) for i in range(n_inputs)], axis=1)
    fact = np.array([math.factorial(c) for c in range(order + 1)], dtype=np.float64)
    return math.factorial(order) / np.prod(fact[counts], axis=1)


@cache
def union_ranks(n_inputs: int, i: int, j: int) -> np.ndarray:
    """Rank among (i+j)-multisets of the union of each i-multiset with each j-multiset:
    int ``(C(P+i-1, i), C(P+j-1, j))`` (e.g. ``G_8[union_ranks(P, 4, 4)]`` is ``E[f_m f_m']``)."""
    Ti, Tj = index_multisets(n_inputs, i), index_multisets(n_inputs, j)
    both = np.concatenate(
        [
            np.broadcast_to(Ti[:, None, :], (len(Ti), len(Tj), i)),
            np.broadcast_to(Tj[None, :, :], (len(Ti), len(Tj), j)),
        ],
        axis=-1,
    )
    return multiset_rank(both, n_inputs)


@cache
def pairing_ranks(n_inputs: int, order: int) -> np.ndarray:
    """For each multiset T of even ``order`` and each pairing of its positions, the rank of the
    pairs among the ``order/2``-multisets of the ``C(P+1, 2)`` pairs ``i <= j``.

    Returns int ``(C(P+order-1, order), (order-1)!!)``. With ``g`` a table over pairs (a symmetric
    matrix through :func:`pair_table`), ``table_m[pairing_ranks(P, 2m)].sum(-1)`` is the sum over
    pairings of a degree-m function of g, e.g. the Wick sum of ``E[g_p1 ... g_pm]``.
    """
    T = index_multisets(n_inputs, order)
    pairings = [p for p in even_partitions(order) if all(len(b) == 2 for b in p)]
    n_pairs = n_inputs * (n_inputs + 1) // 2
    cols = []
    for pairing in pairings:
        pairs = np.stack([multiset_rank(T[:, list(b)], n_inputs) for b in pairing], axis=-1)
        cols.append(multiset_rank(pairs, n_pairs))
    out = np.stack(cols, axis=-1)
    out.setflags(write=False)
    return out


@cache
def _subset_plan(n_variables: int, order: int):
    """For each subset S of the positions of a multiset of ``order``: ``(|S|, ranks (M,), rest
    (M, k))``, the ranks of ``T[S]`` among |S|-multisets and the variables ``T[not S]``."""
    T = index_multisets(n_variables, order)
    plan = []
    for size in range(order + 1):
        for subset in itertools.combinations(range(order), size):
            rest = [i for i in range(order) if i not in subset]
            plan.append((size, multiset_rank(T[:, list(subset)], n_variables), T[:, rest]))
    return tuple(plan)


def shifted_moments(moments: dict, shift, n_variables: int, order: int):
    """Raw moments of ``x + shift`` from those of x: ``E[prod_t (c_t + x_t)] =
    sum_S prod_{t not in S} c_t E[prod_{t in S} x_t]`` over subsets S of the positions.

    ``moments``: ``{k: (..., C(V+k-1, k))}`` for ``k = 1..order`` (``k = 0`` is 1); ``shift``:
    ``(V,)``. Linear in the moments, so sample means stay unbiased. Returns ``(..., M_order)``.
    """
    shift = np.asarray(shift)
    total = 0.0
    for size, ranks, rest in _subset_plan(n_variables, order):
        factor = np.prod(shift[rest], axis=-1) if rest.shape[-1] else 1.0
        total = total + factor * (moments[size][..., ranks] if size else 1.0)
    return total
