"""Feynman rules: combinatorial factors, closed forms, and the moment-cumulant relations."""

import math

import numpy as np
import pytest

import nnqft_ppl as nq
from nnqft_ppl.core.multisets import (
    cumulants_from_moments,
    gp_moments,
    index_multisets,
    moments_from_cumulants,
    pair_table,
)
from nnqft_ppl.oracle.exact import exact_cumulants, exact_moments
from nnqft_ppl.theory import feynman as fy
from nnqft_ppl.theory.vertex import vertex_integral

RELU_X = np.array([0.2, 0.4, 0.6, 0.8, 1.0, 1.2])


def zero_dimensional_cumulants(K, lam):
    """Exact cumulants of p(x) ~ exp(-x^2/(2K) - lam x^4) by Gauss-Hermite quadrature."""
    g, w = np.polynomial.hermite_e.hermegauss(200)
    x = np.sqrt(K) * g
    w = w * np.exp(-lam * x**4)
    m = {n: np.array([(w * x**n).sum() / w.sum()]) for n in (2, 4, 6)}
    return cumulants_from_moments(m, 1, 6)


@pytest.mark.parametrize("K", [0.7, 1.3])
def test_zero_dimensional_factors_24_and_5760(K):
    """One point: kappa_4 = -24 lam K^4 + O(lam^2), kappa_6 = 5760 lam^2 K^7 + O(lam^3).

    The library's diagrams with one node of weight 1 are the zero-dimensional theory; the
    ratios to the exact cumulants are ``1 + a g + b g^2 + O(g^3)`` in ``g = lam K^2``, so the
    quadratic extrapolation of three small couplings to g = 0 must give 1. At these couplings
    the first-order remainder ``a g`` is ~1e-2, so a wrong factor cannot pass.
    """
    Kx, Kyy = np.array([[K]]), np.array([[K]])
    g = np.array([5e-5, 1e-4, 1.5e-4])
    ratios = {"k4": [], "k6": [], "nonlocal": []}
    for lam in g / K**2:
        exact = zero_dimensional_cumulants(K, lam)
        w = np.array([lam])
        ratios["k4"].append(exact[4][0] / fy.quartic_contact(Kx, w)[0])
        ratios["k6"].append(exact[6][0] / fy.quartic_tree(Kx, w, Kyy)[0])
        # with one point, int int f(y)^2 f(z)^2 = x^4 as well: the non-local rule must agree
        ratios["nonlocal"].append(exact[4][0] / fy.nonlocal_quartic(Kx, np.array([1.0]), lam)[0])
    for name, r in ratios.items():
        intercept = np.polyfit(g, np.array(r) - 1, 2)[-1]
        assert abs(intercept) < 1e-5, (name, intercept)
        assert abs(r[-1] - 1) > 1e-3  # the check has the power to see a finite-lam correction
    assert fy.quartic_tree(Kx, np.array([1.0]), Kyy)[0] == pytest.approx(5760 * K**7)


def test_spec_kappa6_line_is_a_misprint():
    """kappa_6 = G_6 - sum_15 G_4 K + 2 sum_15 KKK (= G_6 - sum_15 kappa_4 K - sum_15 KKK).

    SPEC prints ``+ 2 sum_15 K K K`` after ``- sum_15 kappa_4 K``: that is wrong. Checked on a
    univariate scale mixture (x = s g), where kappa_6 = m6 - 15 m4 m2 + 30 m2^3 is textbook,
    and on exact single-layer moments.
    """
    s2 = np.array([0.5, 2.0])  # s^2 takes two values with probability 1/2
    m2, m4, m6 = s2.mean(), 3 * (s2**2).mean(), 15 * (s2**3).mean()
    textbook = m6 - 15 * m4 * m2 + 30 * m2**3
    moments = {2: np.array([m2]), 4: np.array([m4]), 6: np.array([m6])}
    got = cumulants_from_moments(moments, 1, 6)[6][0]
    assert got == pytest.approx(textbook, rel=1e-12)
    k4 = m4 - 3 * m2**2
    assert got == pytest.approx(m6 - 15 * k4 * m2 - 15 * m2**3, rel=1e-12)
    spec_as_printed = m6 - 15 * k4 * m2 + 2 * 15 * m2**3
    assert abs(spec_as_printed - textbook) > 1.0  # 45 m2^3: far from the truth

    arch, X = nq.ErfNet(), np.array([-0.5, 0.1, 0.7])
    G = exact_moments(arch, X, width=3, max_order=6)
    kappa = exact_cumulants(arch, X, width=3, max_order=6)
    # rebuild G_6 from the cumulants with the library's Wick machinery: the inverse relation
    K = nq.kernel(arch, X)
    G6 = fy.full_correlators(K, {4: kappa[4], 6: kappa[6]})[6]
    np.testing.assert_allclose(G6, G[6], rtol=1e-12)


def test_gp_correlator_is_wick():
    K = np.array([[2.0, 0.3], [0.3, 1.0]])
    G4 = gp_moments(K, 4)[4]
    rank = {tuple(t): i for i, t in enumerate(index_multisets(2, 4))}
    assert G4[rank[(0, 0, 0, 0)]] == pytest.approx(3 * 4.0)
    assert G4[rank[(0, 0, 1, 1)]] == pytest.approx(2.0 * 1.0 + 2 * 0.3**2)
    assert G4[rank[(0, 0, 0, 1)]] == pytest.approx(3 * 2.0 * 0.3)
    G6 = gp_moments(K, 6)[6]
    assert G6[0] == pytest.approx(15 * 8.0)


def relu_constants(arch):
    return arch.sw1**2 * arch.sw0**2 / 2


def test_relu_closed_forms_contact_nonlocal_tree():
    """ReLU, sb0 = 0, d = 1, positive inputs: K_int = c x y on y > 0, so every diagram is a
    polynomial integral: -24 lam c^4 P4 L^5/5, -8 lam_nl 3 c^4 P4 (L^3/3)^2, -720 k c^6 P6 L^7/7,
    and the tree 576 * 10 lam^2 c^7 P6 (L^5/5)^2 (P_n: product of the inputs)."""
    arch = nq.ReLUNet(sw0=1.1, sw1=0.9)
    L, lam, lam_nl, kap = 1.7, -0.01, 0.003, 0.002
    c = relu_constants(arch)
    P4 = np.prod(RELU_X[index_multisets(6, 4)], axis=1)
    P6 = np.prod(RELU_X[index_multisets(6, 6)], axis=1)
    k = fy.eft_cumulants(arch, RELU_X, quartic=lam, cutoff=L)
    np.testing.assert_allclose(k[4].values, -24 * lam * c**4 * P4 * L**5 / 5, rtol=1e-10)
    np.testing.assert_allclose(k[6].values, 5760 * lam**2 * c**7 * P6 * L**10 / 25, rtol=1e-10)
    k = fy.eft_cumulants(arch, RELU_X, lambda_nl=lam_nl, sextic=kap, cutoff=L)
    np.testing.assert_allclose(k[4].values, -24 * lam_nl * c**4 * P4 * L**6 / 9, rtol=1e-10)
    np.testing.assert_allclose(k[6].values, -720 * kap * c**6 * P6 * L**7 / 7, rtol=1e-10)


def test_tree_against_explicit_split_sum():
    """The gathered 10-split sum against an explicit loop over splits of every 6-tuple."""
    rng = np.random.default_rng(1)
    P, Q = 3, 7
    Kx = rng.normal(size=(P, Q))
    A = rng.normal(size=(Q, Q))
    Kyy = A @ A.T
    w = rng.normal(size=Q)
    got = fy.quartic_tree(Kx, w, Kyy)
    for row, t in enumerate(index_multisets(P, 6)):
        total = 0.0
        for rest in [(0, a, b) for a in range(1, 6) for b in range(a + 1, 6)]:
            other = [i for i in range(6) if i not in rest]
            left = w * np.prod(Kx[t[list(rest)]], axis=0)
            right = w * np.prod(Kx[t[other]], axis=0)
            total += left @ Kyy @ right
        assert got[row] == pytest.approx(576 * total, rel=1e-10)


def test_local_coupling_function_and_gauss_all_space():
    """A y-dependent lambda integrates its basis; Gauss-net works over all of input space."""
    arch = nq.GaussNet(sb0=0.5)
    X = np.array([-0.3, 0.0, 0.4])
    k = fy.eft_cumulants(arch, X, quartic=lambda y: 0.1 + 0.2 * y[:, 0] ** 2, max_order=4)
    I0 = vertex_integral(arch, X, 4)
    I2 = vertex_integral(arch, X, 4, basis=lambda y: y[:, 0] ** 2)
    np.testing.assert_allclose(k[4].values, -24 * (0.1 * I0 + 0.2 * I2).values, rtol=1e-12)


def test_eft_correlators_add_the_gp_part():
    arch = nq.ReLUNet()
    G = fy.eft_correlators(arch, RELU_X[:4], quartic=-0.01, cutoff=1.0)
    k = fy.eft_cumulants(arch, RELU_X[:4], quartic=-0.01, cutoff=1.0)
    K = nq.kernel(arch, RELU_X[:4])
    full = moments_from_cumulants({2: pair_table(K), 4: k[4].values, 6: k[6].values}, 4, 6)
    np.testing.assert_allclose(G[6].values, full[6], rtol=1e-13)
    np.testing.assert_allclose(G[4].values, gp_moments(K, 4)[4] + k[4].values, rtol=1e-13)
    assert set(G) == {2, 4, 6}


def test_bad_arguments():
    with pytest.raises(ValueError, match="one cutoff"):
        fy.eft_cumulants(nq.ReLUNet(), RELU_X, quartic=1.0, cutoff=[1.0, 2.0])
    with pytest.raises(ValueError, match="coupling function"):
        fy.eft_cumulants(nq.ReLUNet(), RELU_X, quartic=lambda y: y, cutoff=1.0)
    assert math.isclose(fy.TREE_FACTOR, math.factorial(4) ** 2)
