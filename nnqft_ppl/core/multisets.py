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
    "partition_plan",
    "monomials",
    "cumulants_from_moments",
    "moments_from_cumulants",
    "tuple_labels",
    "pair_table",
    "gp_moments",
    "multiplicities",
    "union_ranks",
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
def even_partitions(n: int) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """Set partitions of ``range(n)`` whose blocks all have even size.

    These are the only partitions that contribute to moments and cumulants of a field with
    vanishing odd correlators (the f -> -f symmetry of the parameter prior): 1 for n=2,
    4 for n=4, 31 for n=6, 379 for n=8.
    """
    return tuple(_even_partitions(tuple(range(n))))


def _even_partitions(items: tuple[int, ...]):
    if not items:
        yield ()
        return
    first, rest = items[0], items[1:]
    # The block holding `first` takes an odd number of the remaining items.
    for size in range(1, len(rest) + 1, 2):
        for partners in itertools.combinations(rest, size):
            remaining = tuple(i for i in rest if i not in partners)
            for tail in _even_partitions(remaining):
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
def partition_plan(n_inputs: int, order: int):
    """Gather plan for sums over even partitions of every multiset of ``order``.

    Groups the partitions by their block sizes. For each group returns
    ``(block_sizes, block_ranks, n_blocks)`` where ``block_ranks[b]`` is an int array
    ``(M, n_partitions_in_group)`` giving, for each multiset and partition, the rank of the
    sub-multiset in block ``b`` among multisets of its size.
    """
    tuples = index_multisets(n_inputs, order)
    groups: dict[tuple[int, ...], list] = {}
    for partition in even_partitions(order):
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


def _partition_sum(tables, n_inputs, order, weight):
    """``sum_pi weight(|pi|) prod_B tables[|B|][..., T_B]`` for each multiset T of ``order``.

    Partitions with a block size missing from ``tables`` count as zero.
    """
    total = 0.0
    for sizes, ranks in partition_plan(n_inputs, order):
        if any(size not in tables for size in sizes):
            continue
        term = 1.0
        for size, rank in zip(sizes, ranks, strict=True):
            term = term * tables[size][..., rank]
        total = total + weight(len(sizes)) * term.sum(axis=-1)
    return total


def cumulants_from_moments(moments: dict, n_inputs: int, max_order: int) -> dict:
    """Joint cumulants of a field with vanishing odd correlators from its moments.

    ``moments``: ``{n: array (..., M_n)}`` for even ``n <= max_order`` (raw moments
    ``E[f_i1 ... f_in]`` on index multisets). Returns ``{n: kappa_n}`` for even ``n``:
    ``kappa_n(T) = sum_pi (-1)^(|pi|-1) (|pi|-1)! prod_B G(T_B)`` over even partitions, e.g.
    ``kappa_4 = G_4 - sum_3 G_2 G_2`` and ``kappa_6 = G_6 - sum_15 G_4 G_2 + 2 sum_15 G_2 G_2 G_2``.
    """

    def mobius(k):
        return (-1) ** (k - 1) * math.factorial(k - 1)

    return {n: _partition_sum(moments, n_inputs, n, mobius) for n in range(2, max_order + 1, 2)}


def moments_from_cumulants(cumulants: dict, n_inputs: int, max_order: int) -> dict:
    """Moments from joint cumulants (even orders only): ``G_n(T) = sum_pi prod_B kappa(T_B)``.

    With only ``kappa_2 = K`` given this is the Wick / Isserlis sum over pairings (the GP
    prediction); orders missing from ``cumulants`` count as zero. Works on NumPy or JAX arrays
    with leading batch dimensions.
    """
    return {
        n: _partition_sum(cumulants, n_inputs, n, lambda k: 1) for n in range(2, max_order + 1, 2)
    }


def tuple_labels(n_inputs: int, order: int) -> list[str]:
    """Readable coordinate labels for the ``tuple`` dimension, e.g. ``"0,0,1,3"``."""
    return [",".join(map(str, row)) for row in index_multisets(n_inputs, order)]


def pair_table(K):
    """A symmetric ``(..., P, P)`` matrix on the 2-multisets ``i <= j``: ``(..., C(P+1, 2))``."""
    pairs = index_multisets(K.shape[-1], 2)
    return K[..., pairs[:, 0], pairs[:, 1]]


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
