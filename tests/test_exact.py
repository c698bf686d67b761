"""The exact finite-width oracle (SPEC section 2) and its quadrature rules."""

import math

import numpy as np
import pytest

import nnqft_ppl as nq
from nnqft_ppl.core.multisets import index_multisets
from nnqft_ppl.oracle.exact import single_neuron_moments
from nnqft_ppl.oracle.neuron_quadrature import input_factor, neuron_rule

ARCHS = [
    (nq.GaussNet(sb0=0.5), 1),
    (nq.ErfNet(), 1),
    (nq.ErfNet(d_in=2), 2),
    (nq.ReLUNet(), 1),
    (nq.ReLUNet(sb0=1.0), 1),
    (nq.ReLUNet(d_in=2), 2),
    (nq.ReLUNet(d_in=2, sb0=0.5), 2),
    (nq.ReLUNet(d_in=3), 3),
]


@pytest.mark.parametrize("arch,d", ARCHS, ids=lambda a: getattr(a, "name", str(a)))
def test_two_point_function_is_the_kernel(arch, d):
    X = np.random.default_rng(0).normal(size=(5, d))
    k2 = nq.exact_cumulants(arch, X, width=7, max_order=2)[2]
    K = nq.kernel(arch, X)[tuple(index_multisets(5, 2).T)]
    # ReLU without bias: inputs of opposite sign have K = 0 (the closed form gives ~1e-18).
    np.testing.assert_allclose(k2, K, rtol=1e-8, atol=1e-14 * np.abs(K).max())


@pytest.mark.parametrize("arch,d", ARCHS, ids=lambda a: getattr(a, "name", str(a)))
def test_diagonal_moments_match_one_dimensional_closed_forms(arch, d):
    """At a single input z ~ N(0, q): E[relu(z)^n] = q^(n/2) (n-1)!!/2 (n even),
    E[exp(n(z - q))] = exp(n(n-2) q / 2); erf by a fine 1-d Gauss-Hermite rule."""
    X = np.random.default_rng(1).normal(size=(1, d))
    E = single_neuron_moments(arch, X, 8)
    q = float(np.sum(input_factor(arch, X) ** 2))
    for n in (2, 4, 6, 8):
        if arch.activation == "relu":
            expected = q ** (n / 2) * math.prod(range(n - 1, 0, -2)) / 2
        elif arch.activation == "gauss":
            expected = math.exp(n * (n - 2) * q / 2)
        else:
            x, w = np.polynomial.hermite_e.hermegauss(200)
            from scipy.special import erf

            expected = np.sum(w * erf(np.sqrt(q) * x) ** n) / np.sqrt(2 * np.pi)
        assert E[n][0] == pytest.approx(expected, rel=1e-9)


def test_gauss_closed_form_agrees_with_generic_quadrature():
    arch = nq.GaussNet(sb0=0.5)
    X = np.array([[-0.3], [0.1], [0.4]])
    closed = single_neuron_moments(arch, X, 6)
    rule = neuron_rule(arch, X)  # Gauss-Hermite path for a non-homogeneous activation
    from nnqft_ppl.core.multisets import monomials

    mono = monomials(rule.values, 6)
    for n in (2, 4, 6):
        np.testing.assert_allclose(rule.weights @ mono[n], closed[n], rtol=1e-9)


def test_relu_three_dimensional_rule_agrees_with_two_dimensional_one():
    """A d = 2 net with sb0 = 0 is a rank-2 integral; rotating it into three dimensions
    (d = 3 inputs in a plane) must give the same moments through the sphere rule."""
    rng = np.random.default_rng(5)
    X2 = rng.normal(size=(4, 2))
    R = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    X3 = np.concatenate([X2, np.zeros((4, 1))], axis=1) @ R.T * np.sqrt(3 / 2)
    m2 = single_neuron_moments(nq.ReLUNet(d_in=2), X2, 8)
    m3 = single_neuron_moments(nq.ReLUNet(d_in=3), X3, 8)
    for n in (2, 4, 6, 8):
        np.testing.assert_allclose(m3[n], m2[n], rtol=1e-8)


def test_relu_without_bias_in_one_dimension_is_one_random_number():
    """sb = 0, d = 1, x > 0: f(x) = x S with S = sum_i W1_i relu(W0_i), so
    kappa_4 = x1 x2 x3 x4 (3 E[relu^4] - 3 E[relu^2]^2) / N = x1..x4 * 3.75 / N."""
    X = np.array([[0.5], [1.0], [2.0]])
    k4 = nq.exact_cumulant(nq.ReLUNet(), X, width=20, order=4)
    T = index_multisets(3, 4)
    np.testing.assert_allclose(k4.values, np.prod(X[T, 0], axis=1) * 3.75 / 20, rtol=1e-12)


@pytest.mark.parametrize("arch", [nq.GaussNet(), nq.ErfNet(), nq.ReLUNet(sb0=0.3)])
def test_width_scaling_is_exact(arch, paper_inputs):
    """kappa_4 N and kappa_6 N^2 do not depend on N."""
    k4 = [nq.exact_cumulant(arch, paper_inputs, w, 4).values * w for w in (2, 10, 1000)]
    k6 = [nq.exact_cumulant(arch, paper_inputs, w, 6).values * w**2 for w in (2, 10, 1000)]
    for a, b in zip(k4[1:], k4[:-1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    for a, b in zip(k6[1:], k6[:-1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_kappa4_is_positive_on_the_diagonal(paper_inputs):
    """Given the hidden layer the output is Gaussian (a scale mixture): kappa_4(x,x,x,x) > 0."""
    diag = [",".join([str(i)] * 4) for i in range(6)]
    for arch in (nq.GaussNet(), nq.ErfNet(), nq.ReLUNet(sb0=1.0)):
        k4 = nq.exact_cumulant(arch, paper_inputs, 10, 4)
        assert (k4.sel(tuple=diag) > 0).all()


def test_exact_covariance_is_a_covariance(paper_inputs):
    cov = nq.exact_covariance(nq.ErfNet(), paper_inputs, 5).values
    np.testing.assert_allclose(cov, cov.T)
    w = np.linalg.eigvalsh(cov)
    assert w.min() > -1e-9 * w.max()


def test_deep_networks_are_refused_with_a_clear_error(paper_inputs):
    with pytest.raises(NotImplementedError, match="one hidden layer"):
        nq.exact_cumulant(nq.MLP(depth=2), paper_inputs, 10)


@pytest.mark.parametrize("arch", [nq.GaussNet(), nq.ErfNet(), nq.ReLUNet(sb0=1.0)])
def test_single_input_moments_match_the_multiset_oracle(arch):
    """The scalar recursion (used up to E[f^12]) agrees with the set-partition sums."""
    from nnqft_ppl.oracle.exact import exact_single_input_moments

    X = np.array([[0.3], [0.5]])
    m = exact_single_input_moments(arch, X[0], 7, 12)
    G = nq.exact_moments(arch, X, 7, 8)
    np.testing.assert_allclose(m[[2, 4, 6, 8]], [G[n][0] for n in (2, 4, 6, 8)], rtol=1e-12)
    assert m[1] == m[3] == m[11] == 0.0
