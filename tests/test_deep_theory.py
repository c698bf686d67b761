"""Deep networks at order 1/n: vertex recursion, NLO kernel, deep-linear oracle, criticality.

Fast tests check the theory against exact results (the single-layer oracle, deep linear
nets, a quadratic activation whose layer map is exactly quadratic, ReLU at criticality,
independent quadratures). The Monte Carlo checks that need large ensembles are marked slow;
each has a small fast version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from nnqft_ppl.core.linalg import chi_square
from nnqft_ppl.core.multisets import index_multisets, multiset_rank
from nnqft_ppl.ensembles.correlators import correlators
from nnqft_ppl.networks.activations import Activation
from nnqft_ppl.networks.architectures import MLP
from nnqft_ppl.networks.kernels import kernel
from nnqft_ppl.oracle.deep_linear import (
    deep_linear_factor,
    exact_deep_linear_cumulant,
    exact_deep_linear_moments,
)
from nnqft_ppl.oracle.exact import exact_cumulant, first_layer_moments
from nnqft_ppl.theory.deep import (
    chi_parallel,
    chi_perpendicular,
    critical_initialization,
    four_point_vertex,
    gaussian_four_point,
    is_critical,
    kernel_fixed_point,
    nlo_kernel,
    pair_map_derivatives,
    perturbative_cumulant,
    vertex_growth,
)

X1 = np.array([[-0.8], [-0.1], [0.3], [1.1]])
X2 = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
SCALES = [{}, dict(sw0=1.3, sb0=0.4, sw1=0.7, sb1=0.6)]


def _sum3(K: np.ndarray) -> np.ndarray:
    """``K12 K34 + K13 K24 + K14 K23`` on the 4-multisets."""
    i, j, k, l = index_multisets(K.shape[0], 4).T
    return K[i, j] * K[k, l] + K[i, k] * K[j, l] + K[i, l] * K[j, k]


def _linear(depth, **kw):
    return MLP(depth, "linear", sb0=0.0, sb1=0.0, **kw)


@dataclass(frozen=True)
class Quadratic(Activation):
    """``s(z) = z + c z^2``: ``<s1 s2>_G = G12 + c^2 (G11 G22 + 2 G12^2)`` is exactly quadratic."""

    name: ClassVar[str] = "quadratic_test"
    c: ClassVar[float] = 0.5

    def __call__(self, z, q):
        return z + self.c * z**2


@dataclass(frozen=True)
class Swish(Activation):
    name: ClassVar[str] = "swish_test"

    def __call__(self, z, q):
        return z * jax.nn.sigmoid(z)


# --------------------------------------------------------------------------- depth 1 = oracle
@pytest.mark.parametrize("scales", SCALES, ids=["default", "scaled"])
@pytest.mark.parametrize("activation", ["erf", "relu", "tanh", "gauss"])
def test_depth_one_is_the_exact_single_layer_cumulant(activation, scales):
    arch = MLP(1, activation, **scales)
    p = perturbative_cumulant(arch, X1, width=7)
    e = exact_cumulant(arch, X1, 7, order=4)
    np.testing.assert_allclose(p.values, e.values, rtol=1e-8, atol=1e-8 * np.abs(e.values).max())
    assert p.name == e.name and p.dims == e.dims and p.attrs == e.attrs
    assert list(p.tuple.values) == list(e.tuple.values)


def test_depth_one_relu_with_a_rank_three_first_layer():
    arch = MLP(1, "relu", d_in=2, sb0=0.5, sw1=1.2, sb1=0.3)
    p = perturbative_cumulant(arch, X2, width=5)
    e = exact_cumulant(arch, X2, 5, order=4)
    np.testing.assert_allclose(p.values, e.values, rtol=1e-8)


def test_result_is_float64_without_the_global_flag():
    arch = MLP(3, "tanh", d_in=2)
    ref = perturbative_cumulant(arch, X2, 16).values
    ref_nlo = nlo_kernel(arch, X2, 16).K1
    with jax.enable_x64(False):
        out = perturbative_cumulant(arch, X2, 16).values
        nlo = nlo_kernel(arch, X2, 16).K1
        assert jnp.ones(1).dtype == jnp.float32  # the caller's setting is left alone
    assert out.dtype == np.float64 and nlo.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    np.testing.assert_allclose(nlo, ref_nlo, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------- quadratures
@pytest.mark.parametrize(
    "activation,c",
    [
        ("erf", (1.3, 0.7, 0.4)),
        ("erf", (0.9, 0.9, 0.9)),
        ("tanh", (0.8, 0.5, -0.3)),
        ("linear", (1.3, 0.7, 0.4)),
    ],
)
def test_price_theorem_agrees_with_autodiff(activation, c):
    """Autodiff of the closed form (erf, linear) or of the fixed-node quadrature (tanh)."""
    g1, h1 = pair_map_derivatives(activation, *c, method="autodiff")
    g2, h2 = pair_map_derivatives(activation, *c, method="price")
    np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h1, h2, rtol=1e-8, atol=1e-10)


def test_relu_closed_form_derivatives():
    c = np.array([[1.3, 0.7, 0.4], [2.0, 0.5, -0.9], [1.0, 1.0, 0.2]])
    g1, h1 = pair_map_derivatives("relu", *c.T, method="relu")
    g2, h2 = pair_map_derivatives("relu", *c.T, method="autodiff")
    np.testing.assert_allclose(g1, g2, rtol=1e-10)
    np.testing.assert_allclose(h1, h2, rtol=1e-9)
    # On the boundary |rho| = 1 the map is linear along the fluctuations: finite limits.
    g, h = pair_map_derivatives("relu", [1.0, 2.0, 1.0], [1.0, 0.5, 4.0], [1.0, 1.0, -2.0])
    np.testing.assert_allclose(g, [[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]], atol=1e-15)
    assert np.all(h == 0)


def _simplex_orthant_moment(K: np.ndarray, n: int = 60) -> float:
    """``E[z1 z2 z3 z4 ; z > 0]`` as a smooth integral over the simplex (well-conditioned K).

    ``z = R lam`` with ``sum lam = 1``: ``(2 pi)^-2 |K|^-1/2 int prod(lam) 48 / q^4``,
    ``q = lam K^-1 lam``; Duffy map and a tensor Gauss--Legendre rule.
    """
    x, w = np.polynomial.legendre.leggauss(n)
    x, w = (x + 1) / 2, w / 2
    u, v, t = np.meshgrid(x, x, x, indexing="ij")
    W = w[:, None, None] * w[None, :, None] * w[None, None, :] * (1 - u) ** 2 * (1 - v)
    lam = np.stack([u, (1 - u) * v, (1 - u) * (1 - v) * t, (1 - u) * (1 - v) * (1 - t)], axis=-1)
    q = np.einsum("...i,ij,...j->...", lam, np.linalg.inv(K), lam)
    f = np.prod(lam, axis=-1) * 48 / q**4
    return float((W * f).sum() / (2 * np.pi) ** 2 / np.sqrt(np.linalg.det(K)))


def test_relu_four_distinct_inputs_against_the_simplex_formula():
    A = np.random.default_rng(1).normal(size=(4, 4))
    K = A @ A.T + 0.5 * np.eye(4)
    E4 = gaussian_four_point("relu", K)
    assert E4[multiset_rank(np.arange(4), 4)] == pytest.approx(_simplex_orthant_moment(K), rel=2e-8)
    # Diagonal: E[relu(z)^4] = 3 K^2 / 2.
    np.testing.assert_allclose(
        E4[multiset_rank(np.full((4, 4), np.arange(4)[:, None]), 4)],
        1.5 * np.diag(K) ** 2,
        rtol=1e-14,
    )


@pytest.mark.parametrize(
    "activation,d,kw",
    [("relu", 2, dict(sb0=0.5)), ("relu", 1, dict(sb0=0.5)), ("tanh", 1, dict(sw0=0.7, sb0=0.4))],
)
def test_subset_rules_reproduce_the_first_layer_rule(activation, d, kw):
    """The deep-layer 4-pt rule (per input subset) against the single-layer oracle's rule."""
    X = np.random.default_rng(0).normal(size=(4, d)) * 0.8
    arch = MLP(1, activation, d_in=d, **kw)
    K = arch.sb0**2 + arch.sw0**2 * X @ X.T / d
    E4 = first_layer_moments(arch, X, 4)[4]
    # two rules of ~1e-8 relative accuracy each for 3 distinct inputs (angular rule on S^2)
    np.testing.assert_allclose(gaussian_four_point(activation, K), E4, rtol=5e-8, atol=1e-12)


def test_smooth_rule_against_adaptive_quadrature():
    """tanh at variance ~2.5, where plain Gauss--Hermite is slow: a 2-input entry vs scipy."""
    K = np.array([[2.5, 1.1], [1.1, 1.4]])
    E4 = gaussian_four_point("tanh", K)
    L = np.linalg.cholesky(K)

    def inner(g1):
        def f(g2):
            u, v = L @ np.array([g1, g2])
            return np.tanh(u) ** 3 * np.tanh(v) * np.exp(-(g1**2 + g2**2) / 2) / (2 * np.pi)

        return integrate.quad(f, -9, 9, points=[0.0], epsabs=1e-14, limit=200)[0]

    ref = integrate.quad(inner, -9, 9, epsabs=1e-13, limit=200)[0]
    assert E4[multiset_rank(np.array([0, 0, 0, 1]), 2)] == pytest.approx(ref, rel=1e-10)


# --------------------------------------------------------------------------- deep linear
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_recursion_is_the_first_order_term_of_the_deep_linear_oracle(depth):
    arch = _linear(depth, d_in=2, sw0=1.3, sw1=0.8)
    K = kernel(arch, X2)
    k4 = perturbative_cumulant(arch, X2, width=10).values
    np.testing.assert_allclose(k4, depth * 2 / 10 * _sum3(K), rtol=1e-12)
    # first-order term of ((1 + 2/N)^L - 1): the exact minus the recursion is O(1/N^2)
    for N in (100, 1000):
        exact = exact_deep_linear_cumulant(arch, X2, N).values
        rest = exact - perturbative_cumulant(arch, X2, N).values
        expected = ((1 + 2 / N) ** depth - 1 - 2 * depth / N) * _sum3(K)
        np.testing.assert_allclose(rest, expected, rtol=1e-8, atol=1e-15)
    nlo = nlo_kernel(arch, X2, 10)
    np.testing.assert_allclose(nlo.K, K, rtol=1e-14)
    assert np.all(nlo.K1 == 0)  # the 2-pt function is exactly K at every width


def test_deep_linear_oracle_against_the_second_moment_recursion():
    """Independent derivation: ``M = E[G_ab G_cd]`` layer by layer with unequal widths."""
    arch = _linear(3, d_in=2, sw0=1.2, sw1=0.9)
    widths = [3, 5, 4]
    CW = arch.sw1**2
    G = arch.sw0**2 * X2 @ X2.T / 2
    M = np.einsum("ab,cd->abcd", G, G)
    for n in widths:  # E[G'G'] = C_W^2 [M(ab,cd) + (M(ac,bd) + M(ad,bc)) / n]
        M = CW**2 * (M + (M.transpose(0, 2, 1, 3) + M.transpose(0, 3, 2, 1)) / n)
    i, j, k, l = index_multisets(3, 4).T
    G4 = M[i, j, k, l] + M[i, k, j, l] + M[i, l, j, k]
    K = kernel(arch, X2)
    np.testing.assert_allclose(
        exact_deep_linear_cumulant(arch, X2, widths).values, G4 - _sum3(K), rtol=1e-12
    )
    np.testing.assert_allclose(exact_deep_linear_moments(arch, X2, widths, 4)[4], G4, rtol=1e-12)


def test_deep_linear_single_input_chi_square_moments():
    """At one input ``f^2 / K`` is a chi-square product: ``E[f^6] = 15 K^3 prod E[(chi2/n)^3]``."""
    arch = _linear(3, sw0=1.1)
    widths = [2, 7, 3]
    K = kernel(arch, [[0.7]])[0, 0]
    m3 = np.prod([stats.chi2(n).moment(3) / n**3 for n in widths])
    G6 = exact_deep_linear_moments(arch, [[0.7]], widths, 6)[6][0]
    assert G6 == pytest.approx(15 * K**3 * m3, rel=1e-12)
    assert deep_linear_factor(widths, 3) == pytest.approx(m3, rel=1e-12)


def test_deep_linear_vertex_matches_the_exact_expansion():
    arch = _linear(1)
    ratio = vertex_growth(arch, [[0.7]], [1, 2, 3, 4, 5], width=50)
    # kappa_4(aaaa) = 3 V / n exactly to first order: ((1 + 2/n)^L - 1) 3 K^2
    np.testing.assert_allclose(ratio.values[:, 0], 2 * np.arange(1, 6) / 50, rtol=1e-12)


# --------------------------------------------------------------------------- NLO 2-pt
def test_nlo_kernel_exact_for_a_quadratic_layer_map():
    """Depth 2 with ``s = z + c z^2``: ``E[G^(3)] = C_b + C_W E[F(G^(2))]`` with F quadratic,
    so ``n (E[G^(3)] - K^(3)) = C_W c^2 [Cov(G11, G22) + 2 Var(G12)] n`` exactly at every n,
    with ``n Cov(G^(2))`` exactly the first-layer 4-pt minus 2-pt products. This pins the
    diagonal/off-diagonal factors of H and the 1/2."""
    X = np.array([[0.4], [-0.9]])
    arch = MLP(2, Quadratic.name, sw0=1.1, sb0=0.3, sw1=0.8, sb1=0.2)
    CW, c = arch.sw1**2, Quadratic.c
    K1 = arch.sb0**2 + arch.sw0**2 * X @ X.T
    # first-layer single-neuron moments by an exact (polynomial) Gauss--Hermite rule
    x, w = np.polynomial.hermite_e.hermegauss(12)
    g = np.stack(np.meshgrid(x, x, indexing="ij"), -1).reshape(-1, 2)
    wq = np.outer(w, w).ravel() / (2 * np.pi)
    s = g @ np.linalg.cholesky(K1).T
    s = s + c * s**2
    E2 = np.einsum("q,qa,qb->ab", wq, s, s)
    E4 = np.einsum("q,qa,qb,qc,qd->abcd", wq, s, s, s, s)
    V = CW**2 * (E4 - np.einsum("ab,cd->abcd", E2, E2))  # n Cov(G^(2)), exact
    expected = np.empty((2, 2))
    for a in range(2):
        for b in range(2):
            expected[a, b] = CW * c**2 * (V[a, a, b, b] + 2 * V[a, b, a, b])
    out = nlo_kernel(arch, X, width=9)
    np.testing.assert_allclose(out.K1, expected, rtol=1e-9)
    np.testing.assert_allclose(out.G2, out.K + expected / 9, rtol=1e-12)


def test_relu_nlo_diagonal_vanishes():
    out = nlo_kernel(MLP(3, "relu", d_in=2, sb0=0.5, sb1=0.5), X2, width=16)
    np.testing.assert_allclose(np.diag(out.K1), 0.0, atol=1e-14)
    assert np.abs(out.K1[np.triu_indices(3, 1)]).max() > 1e-3


def test_one_hidden_layer_has_no_nlo_shift():
    out = nlo_kernel(MLP(1, "tanh"), X1, width=3)
    assert np.all(out.K1 == 0)


# --------------------------------------------------------------------------- vertex
def test_vertex_structure():
    arch = MLP(3, "tanh", d_in=2, sb1=0.3)
    ds = four_point_vertex(arch, X2)
    assert ds.V.dims == ("layer", "pair", "pair_") and list(ds.layer.values) == [1, 2, 3, 4]
    assert np.all(ds.V.values[0] == 0)  # the first layer is deterministic
    np.testing.assert_allclose(ds.V.values, ds.V.values.transpose(0, 2, 1), rtol=1e-12)
    np.testing.assert_allclose(
        ds.K.values[-1], kernel(arch, X2)[tuple(index_multisets(3, 2).T)], rtol=1e-7
    )  # the library kernel uses an 80-node Gauss-Hermite
    # V is a covariance (times n): positive semi-definite
    assert np.linalg.eigvalsh(ds.V.values[-1]).min() > -1e-10


def test_unequal_widths_scale_the_propagated_vertex():
    arch = _linear(2)
    K = kernel(arch, X1)
    k4 = perturbative_cumulant(arch, X1, [4, 8]).values
    # V^(3) = C_W^2 [2 KK] + (n2/n1) V^(2); kappa_4 = sum_3 V / n2
    np.testing.assert_allclose(k4, (2 + 2 * 8 / 4) * _sum3(K) / 8, rtol=1e-12)
    np.testing.assert_allclose(
        exact_deep_linear_cumulant(arch, X1, [4, 8]).values, (1.5 * 1.25 - 1) * _sum3(K)
    )


def test_relu_vertex_grows_exactly_linearly_at_criticality():
    """One input, ``C_W = 2``, ``C_b = 0``: ``K^(l) = K`` at every layer, ``<s^2> = K/2``,
    ``<s^4> = 3K^2/2``, ``J = 1/2``, so ``V^(l+1) = 4 (3/2 - 1/4) K^2 + 4 (1/2)^2 V^(l)
    = 5 K^2 + V^(l)``: the normalised vertex is ``5 L`` for depth L."""
    arch = MLP(6, "relu", sw0=2**0.5, sw1=2**0.5)
    ds = four_point_vertex(arch, [[0.8]])
    V, K = ds.V.values[:, 0, 0], ds.K.values[:, 0]
    np.testing.assert_allclose(K, 2 * 0.64, rtol=1e-14)
    np.testing.assert_allclose(V / K**2, 5 * np.arange(7), rtol=1e-12, atol=1e-14)
    growth = vertex_growth(arch, [[0.8], [1.7]], [1, 2, 4, 8], width=100)
    np.testing.assert_allclose(growth.values, 5 * np.array([[1, 1], [2, 2], [4, 4], [8, 8]]) / 100)
    # off criticality the growth is not linear
    off = vertex_growth(MLP(1, "tanh", sw1=1.5, sb1=0.3), [[0.8]], [1, 2, 4, 8], width=100)
    slopes = np.diff(off.values[:, 0]) / np.diff([1, 2, 4, 8])
    assert not np.allclose(slopes, slopes[0], rtol=0.05)


# --------------------------------------------------------------------------- criticality
def test_fixed_points_and_susceptibilities():
    assert kernel_fixed_point("relu", 1.0, 1.0) == pytest.approx(2.0)  # C_b / (1 - C_W/2)
    assert kernel_fixed_point("relu", 2**0.5, 0.0, k0=3.7) == 3.7  # every K is fixed
    assert kernel_fixed_point("relu", 1.5, 0.0) == math.inf
    assert kernel_fixed_point("tanh", 1.0, 0.0) == 0.0
    K = kernel_fixed_point("tanh", 1.5, 0.3)
    x, w = np.polynomial.hermite_e.hermegauss(300)
    t2 = np.sum(w * np.tanh(np.sqrt(K) * x) ** 2) / np.sqrt(2 * np.pi)
    assert K == pytest.approx(0.09 + 2.25 * t2, rel=1e-9)
    assert chi_parallel("relu", 1.3, 0.2) == pytest.approx(1.69 / 2)
    assert chi_perpendicular("relu", 1.3, 0.2) == pytest.approx(1.69 / 2)
    sech4 = np.sum(w / np.cosh(np.sqrt(K) * x) ** 4) / np.sqrt(2 * np.pi)
    assert chi_perpendicular("tanh", 1.5, 0.3) == pytest.approx(2.25 * sech4, rel=1e-9)


def test_critical_initialisations():
    assert critical_initialization("relu") == pytest.approx((math.sqrt(2), 0.0))
    assert critical_initialization("tanh") == pytest.approx((1.0, 0.0))
    assert critical_initialization("erf") == pytest.approx((math.sqrt(math.pi) / 2, 0.0))
    assert is_critical(MLP(4, "relu", sw1=math.sqrt(2), sb1=0.0))
    assert is_critical(MLP(4, "tanh", sw1=1.0, sb1=0.0))
    assert is_critical(MLP(4, "erf", sw1=math.sqrt(math.pi) / 2, sb1=0.0))
    assert not is_critical(MLP(4, "relu", sw1=1.3, sb1=0.0))
    assert not is_critical(MLP(4, "tanh", sw1=1.0, sb1=0.3))
    assert not is_critical(MLP(4, "relu", sw1=math.sqrt(2), sb1=0.1))


def test_critical_initialisation_of_swish():
    """SWISH has no K* = 0 class (s''(0) != 0): the critical point is at K* > 0."""
    sw1, sb1 = critical_initialization(Swish.name)

    def E(f, K):
        return integrate.quad(
            lambda x: f(x) * np.exp(-(x**2) / (2 * K)) / np.sqrt(2 * np.pi * K),
            -60 * np.sqrt(K),
            60 * np.sqrt(K),
            limit=400,
            epsabs=1e-13,
        )[0]

    s = special.expit
    d1 = lambda z: s(z) + z * s(z) * (1 - s(z))  # noqa: E731
    d2 = lambda z: 2 * s(z) * (1 - s(z)) + z * s(z) * (1 - s(z)) * (1 - 2 * s(z))  # noqa: E731
    from scipy.optimize import brentq

    K_star = brentq(lambda K: E(lambda z: z * s(z) * d2(z), K), 5, 30)
    CW = 1 / E(lambda z: d1(z) ** 2, K_star)
    Cb = K_star - CW * E(lambda z: (z * s(z)) ** 2, K_star)
    assert sw1**2 == pytest.approx(CW, rel=1e-8)
    assert sb1**2 == pytest.approx(Cb, rel=1e-6)


# --------------------------------------------------------------------------- validation
def test_errors_name_the_bad_argument():
    arch = MLP(2, "tanh")
    with pytest.raises(ValueError, match="order"):
        perturbative_cumulant(arch, X1, 4, order=6)
    with pytest.raises(ValueError, match="width"):
        perturbative_cumulant(arch, X1, 0)
    with pytest.raises(ValueError, match="width"):
        nlo_kernel(arch, X1, [4, 4, 4])
    with pytest.raises(ValueError, match="inputs X"):
        perturbative_cumulant(arch, np.zeros((3, 2)), 4)
    with pytest.raises(ValueError, match="arch"):
        perturbative_cumulant("tanh", X1, 4)
    with pytest.raises(ValueError, match="arch"):
        exact_deep_linear_cumulant(MLP(2, "relu"), X1, 4)
    with pytest.raises(ValueError, match="arch"):
        exact_deep_linear_cumulant(MLP(2, "linear", sb0=0.0), X1, 4)  # sb1 defaults to 1
    with pytest.raises(ValueError, match="depths"):
        vertex_growth(arch, X1, [0, 1], 10)
    with pytest.raises(ValueError, match="gauss"):
        critical_initialization("gauss")
    with pytest.raises(ValueError, match="method"):
        pair_map_derivatives("tanh", 1.0, 1.0, 0.5, method="exact")
    with pytest.raises(ValueError, match="K must be"):
        gaussian_four_point("tanh", np.ones(3))


# --------------------------------------------------------------------------- Monte Carlo
def _deep_linear_chi_square(depth, width, n_networks, seed):
    """Chi-square of the measured kappa_4 against the exact oracle and against the recursion
    alone (its first-order term), with the jackknife covariance over the unique entries."""
    arch = _linear(depth, d_in=2)
    st = correlators(arch, X2, width, n_networks, seed=seed, n_batches=200)
    cov = st.covariance(4).values
    measured = st.cumulant(4).values
    exact = exact_deep_linear_cumulant(arch, X2, width).values
    first = perturbative_cumulant(arch, X2, width).values
    return chi_square(measured - exact, cov), chi_square(measured - first, cov)


def test_deep_linear_oracle_against_a_small_ensemble():
    test, _ = _deep_linear_chi_square(2, 4, 100_000, seed=11)
    assert test.p_value > 1e-3, test


@pytest.mark.slow
@pytest.mark.parametrize("depth,width", [(2, 4), (2, 16), (4, 4), (4, 16)])
def test_deep_linear_oracle_against_a_million_networks(depth, width):
    exact, first = _deep_linear_chi_square(depth, width, 1_000_000, seed=depth * 100 + width)
    print(
        f"\ndeep linear L={depth} N={width}: exact p = {exact.p_value:.3g} "
        f"(chi2 {exact.value:.1f}/{exact.dof}); first order alone p = {first.p_value:.3g}"
    )
    assert exact.p_value > 1e-3, exact
    if width == 4:  # (1 + 2/N)^L - 1 is far from 2L/N: the data must reject the first order
        assert first.p_value < 1e-6, first


def _last_layer_kernels(arch, X, width, n_networks, seed, chunk=8192):
    """Sampled ``G^(L+1)`` on the unique pairs ``(n_networks, M2)``: the output's covariance
    given the last hidden layer, so ``kappa_4 = sum_3 Cov(G)`` and ``E[f f] = E[G]``.
    Parameters as in :meth:`MLP.draw_outputs` (one normal draw per network)."""
    with jax.enable_x64(True):
        X = jnp.asarray(X, dtype=jnp.float64)
        a, b = index_multisets(X.shape[0], 2).T
        n_par = arch.n_parameters(width)

        def one(key):
            theta = jax.lax.optimization_barrier(jax.random.normal(key, (n_par,)))
            p = arch.unflatten(theta, width)
            z = X @ p["W0"].T + p["b0"]
            for l in range(1, arch.depth):
                z = arch.phi(z, None) @ p[f"W{l}"].T + p[f"b{l}"]
            h = arch.phi(z, None)
            return (arch.sb1**2 + arch.sw1**2 * h @ h.T / width)[a, b]

        f = jax.jit(jax.vmap(one))
        keys = jax.random.split(jax.random.key(seed), n_networks)
        out = [np.asarray(f(keys[lo : lo + chunk])) for lo in range(0, n_networks, chunk)]
    return np.concatenate(out)


def _measure(arch, X, width, n_networks, seed, n_batches=50):
    """Batch means of ``n kappa_4`` (on 4-multisets) and ``n (E[G] - K)`` (on pairs)."""
    G = _last_layer_kernels(arch, X, width, n_networks, seed)
    P = X.shape[0]
    G = G[: len(G) // n_batches * n_batches].reshape(n_batches, -1, G.shape[1])
    cov = np.einsum("bmu,bmv->buv", G - G.mean(1, keepdims=True), G - G.mean(1, keepdims=True))
    cov /= G.shape[1] - 1
    T = index_multisets(P, 4)

    def rank(i, j):
        return multiset_rank(T[:, [i, j]], P)

    k4 = sum(
        cov[:, rank(*p), rank(*q)]
        for p, q in (((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2)))
    )
    K = kernel(arch, X)[tuple(index_multisets(P, 2).T)]
    shift = width * (G.mean(1) - K)
    return (
        (width * k4.mean(0), width * k4.std(0, ddof=1) / math.sqrt(n_batches)),
        (shift.mean(0), shift.std(0, ddof=1) / math.sqrt(n_batches)),
    )


@pytest.mark.parametrize(
    "arch",
    [
        MLP(2, "tanh", d_in=2, sw0=1.5, sw1=1.5, sb0=0.3, sb1=0.3),
        MLP(2, "relu", d_in=2, sw0=2**0.5, sw1=2**0.5, sb0=0.5, sb1=0.5),
    ],
    ids=["tanh", "relu-bias"],
)
def test_recursion_against_a_small_ensemble(arch):
    """Fast version: depth 2 at n = 16 and 20k networks, sampled last-layer kernels."""
    (k4, k4_se), (shift, shift_se) = _measure(arch, X2, 16, 20_000, seed=3, n_batches=20)
    pred = 16 * perturbative_cumulant(arch, X2, 16).values
    # n kappa_4 = prediction + O(1/n) (ReLU here: +11% at n = 16): 5 standard errors + 15%
    assert np.all(np.abs(k4 - pred) < 5 * k4_se + 0.15 * np.abs(pred))
    K1 = nlo_kernel(arch, X2, 16).K1[tuple(index_multisets(3, 2).T)]
    assert np.all(np.abs(shift - K1) < 5 * shift_se + 0.1 * np.abs(K1).max())


def _fit_inverse_n(widths, y, se):
    """Weighted fit ``y = B / n`` of the residuals: ``(B, its error, chi-square p-value)``."""
    x = 1 / np.asarray(widths, dtype=np.float64)
    wts = 1 / np.asarray(se) ** 2
    B = np.sum(wts * x * y) / np.sum(wts * x**2)
    B_err = 1 / math.sqrt(np.sum(wts * x**2))
    chi2 = float(np.sum(wts * (y - B * x) ** 2))
    return B, B_err, float(stats.chi2.sf(chi2, len(widths) - 1))


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch",
    [
        MLP(3, "relu", d_in=2, sw0=2**0.5, sw1=2**0.5, sb0=0.5, sb1=0.5),
        MLP(3, "tanh", d_in=2, sw0=1.5, sw1=1.5, sb0=0.3, sb1=0.3),
    ],
    ids=["relu-bias", "tanh"],
)
def test_n_kappa4_converges_to_the_recursion_like_one_over_n(arch):
    """``n kappa_4(n) - prediction = B / n``: the fit is acceptable and B is resolved or
    small; the NLO kernel agrees within errors at every n (its residual is O(1/n) too)."""
    widths = (16, 32, 64)
    pred = 16 * perturbative_cumulant(arch, X2, 16).values  # n kappa_4, n-independent
    K1 = nlo_kernel(arch, X2, 16).K1[tuple(index_multisets(3, 2).T)]
    k4, k4_se, sh, sh_se = [], [], [], []
    for n in widths:
        (a, b), (c, d) = _measure(arch, X2, n, 100_000, seed=n)
        k4.append(a), k4_se.append(b), sh.append(c), sh_se.append(d)
    k4, k4_se = np.array(k4), np.array(k4_se)
    entry = multiset_rank(np.array([0, 0, 0, 0]), 3)
    B, B_err, p = _fit_inverse_n(widths, k4[:, entry] - pred[entry], k4_se[:, entry])
    print(
        f"\n{arch.name}: n kappa_4(0000) prediction {pred[entry]:.4f}; measured "
        f"{k4[:, entry].round(4)} +- {k4_se[:, entry].round(4)}; "
        f"residual B/n with B = {B:.3f} +- {B_err:.3f} (fit p = {p:.3f})"
    )
    assert p > 1e-3
    # every entry: the prediction plus a fitted B/n describes the data
    for t in range(k4.shape[1]):
        assert _fit_inverse_n(widths, k4[:, t] - pred[t], k4_se[:, t])[2] > 1e-4
    print(f"NLO K1 (pairs {list(index_multisets(3, 2).tolist())}): predicted {K1.round(3)}")
    for n, m, e in zip(widths, sh, sh_se, strict=True):
        print(f"  n = {n}: measured n (E[G] - K) = {np.round(m, 3)} +- {np.round(e, 3)}")
    z = (np.array(sh) - K1) / np.array(sh_se)
    assert stats.chi2.sf(np.sum(z**2), z.size) > 1e-4, z
