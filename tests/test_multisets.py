"""Index multisets, partitions and the moment <-> cumulant maps."""

import itertools
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nnqft_ppl.core.multisets import (
    cumulants_from_moments,
    even_partitions,
    index_multisets,
    moments_from_cumulants,
    monomials,
    multiset_rank,
)


def test_counts_match_the_spec():
    assert len(index_multisets(6, 4)) == 126
    assert len(index_multisets(6, 6)) == 462
    assert [len(even_partitions(n)) for n in (2, 4, 6, 8)] == [1, 4, 31, 379]
    # pairings: (n-1)!!
    pairings = [p for p in even_partitions(6) if all(len(b) == 2 for b in p)]
    assert len(pairings) == 15


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 7), st.integers(0, 8), st.randoms(use_true_random=False))
def test_rank_inverts_enumeration_for_any_row_order(n_inputs, order, rnd):
    T = index_multisets(n_inputs, order)
    shuffled = np.array([rnd.sample(list(row), len(row)) for row in T]).reshape(T.shape)
    np.testing.assert_array_equal(multiset_rank(shuffled, n_inputs), np.arange(len(T)))


def test_monomials_are_products_over_multisets():
    v = np.random.default_rng(0).normal(size=(3, 4))
    mono = monomials(v, 5)
    for n in range(1, 6):
        expected = np.prod(v[:, index_multisets(4, n)], axis=-1)
        np.testing.assert_allclose(mono[n], expected, rtol=1e-14)


def _brute_force_wick(K, idx):
    total = 0.0
    for partition in even_partitions(len(idx)):
        if all(len(b) == 2 for b in partition):
            total += math.prod(K[idx[a], idx[b]] for a, b in partition)
    return total


def test_wick_sum_matches_brute_force_pairings():
    A = np.random.default_rng(1).normal(size=(4, 4))
    K = A @ A.T
    K2 = K[tuple(index_multisets(4, 2).T)]
    G = moments_from_cumulants({2: K2}, 4, 6)
    for n in (4, 6):
        brute = [_brute_force_wick(K, row) for row in index_multisets(4, n)]
        np.testing.assert_allclose(G[n], brute, rtol=1e-13)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_cumulants_and_moments_are_inverse(n_inputs, seed):
    rng = np.random.default_rng(seed)
    kappa = {n: rng.normal(size=len(index_multisets(n_inputs, n))) for n in (2, 4, 6, 8)}
    G = moments_from_cumulants(kappa, n_inputs, 8)
    back = cumulants_from_moments(G, n_inputs, 8)
    for n in (2, 4, 6, 8):
        np.testing.assert_allclose(back[n], kappa[n], rtol=1e-9, atol=1e-9 * np.abs(G[n]).max())


def test_sextic_cumulant_formula_and_the_spec_misprint():
    """kappa_6 = G_6 - sum_15 G_4 K + 2 sum_15 KKK; SPEC's "- sum_15 kappa_4 K + 2 KKK" is wrong.

    On a single variable with given cumulants k2, k4, k6: G_4 = k4 + 3 k2^2 and
    G_6 = k6 + 15 k4 k2 + 15 k2^3.
    """
    k2, k4, k6 = 1.3, 0.7, 0.4
    G2, G4, G6 = k2, k4 + 3 * k2**2, k6 + 15 * k4 * k2 + 15 * k2**3
    ours = cumulants_from_moments({2: np.array([G2]), 4: np.array([G4]), 6: np.array([G6])}, 1, 6)
    assert np.isclose(ours[6][0], k6)
    assert np.isclose(G6 - 15 * G4 * G2 + 2 * 15 * G2**3, k6)
    misprint = G6 - 15 * k4 * G2 + 2 * 15 * G2**3
    assert not np.isclose(misprint, k6)


def test_partitions_are_set_partitions_with_even_blocks():
    for n in (2, 4, 6):
        for p in even_partitions(n):
            assert sorted(itertools.chain(*p)) == list(range(n))
            assert all(len(b) % 2 == 0 for b in p)
        assert len(set(even_partitions(n))) == len(even_partitions(n))
