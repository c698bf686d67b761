"""The exact finite-width oracle (SPEC section 2) and its quadrature rules.

Checked against references that share no code with it: closed forms (ReLU without biases, the
one-input moments, the delta method at one input), a Gauss-Legendre quadrature of one neuron in
its (bias, weight) plane (Erf), a Monte Carlo of one neuron (ReLU with biases in d = 2, the
three-dimensional sphere rule), and the exact scaling laws in every scale (sw0, sb0, sw1, sb1):
the tests use scales other than 1 so that a wrong power of a scale cannot pass.
"""

import itertools
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
    # non-default scales: a wrong power of sw1 or sb1 changes these
    (nq.ErfNet(sw0=1.3, sb0=0.6, sw1=0.8, sb1=0.5), 1),
    (nq.GaussNet(sw0=1.2, sb0=0.4, sw1=0.8, sb1=0.5), 1),
    (nq.ReLUNet(d_in=2, sw0=1.2, sb0=0.5, sw1=0.7, sb1=0.4), 2),
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


@pytest.mark.parametrize("sw0,sw1", [(1.3, 0.8), (0.6, 1.7)])
def test_relu_without_bias_closed_forms_at_any_scale(sw0, sw1):
    """The same net with W0 ~ N(0, sw0^2), W1 ~ N(0, sw1^2 / N): with r = relu(W0) and
    v = sw1^2 / N, E[r^2] = sw0^2 / 2, E[r^4] = 3 sw0^4 / 2, E[r^6] = 15 sw0^6 / 2 (half the
    Gaussian moments), and the moments of u = W1 r are E[u^2] = v sw0^2 / 2,
    E[u^4] = 3 v^2 (3/2) sw0^4 = 4.5 v^2 sw0^4, E[u^6] = 15 v^3 (15/2) sw0^6 = 112.5 v^3 sw0^6.
    Cumulants of f = x sum_i u_i are N times those of u:
    kappa_2 = sw0^2 sw1^2 x x' / 2,
    kappa_4 = N (E u^4 - 3 (E u^2)^2) = (4.5 - 0.75) sw0^4 sw1^4 / N = 3.75 sw0^4 sw1^4 / N,
    kappa_6 = N (E u^6 - 15 E u^4 E u^2 + 30 (E u^2)^3) = (112.5 - 33.75 + 3.75) sw0^6 sw1^6 / N^2
            = 82.5 sw0^6 sw1^6 / N^2   (times the product of the inputs)."""
    arch, N = nq.ReLUNet(sw0=sw0, sw1=sw1), 7
    X = np.array([[0.5], [1.0], [2.0]])
    k = nq.exact_cumulants(arch, X, width=N, max_order=6)
    expected = {2: sw0**2 * sw1**2 / 2, 4: 3.75 * sw0**4 * sw1**4 / N,
                6: 82.5 * sw0**6 * sw1**6 / N**2}  # fmt: skip
    for n, factor in expected.items():
        prod = np.prod(X[index_multisets(3, n), 0], axis=1)
        np.testing.assert_allclose(k[n], factor * prod, rtol=1e-12, err_msg=f"kappa_{n}")


def _contract(arch, X, width, order, a):
    """``sum over ordered index tuples t of a_t1 ... a_tn kappa_n(t)``: the n-th cumulant of
    ``a . f(X)``, from the oracle's table looked up by its tuple labels."""
    k = nq.exact_cumulant(arch, X, width, order)
    table = dict(zip(k.tuple.values, k.values, strict=True))
    return sum(
        np.prod(a[list(t)]) * table[",".join(map(str, sorted(t)))]
        for t in itertools.product(range(len(a)), repeat=order)
    )


def _projected_cumulants(E, arch, a, width):
    """Cumulants 2, 4, 6 of ``a . f`` from the moments ``E[g^n]`` of one neuron's
    ``g = sum_k a_k phi(z(x_k))``: with ``u = W1 g``, ``v = sw1^2 / N``, ``E[u^n] = (n-1)!! v^(n/2)
    E[g^n]``, and cumulants of the sum of N iid terms (plus the readout bias) are N times those
    of u (plus ``sb1^2 (sum a)^2`` for the 2nd)."""
    v, N = arch.sw1**2, width
    return np.array([
        v * E[2] + arch.sb1**2 * a.sum() ** 2,
        v**2 / N * (3 * E[4] - 3 * E[2] ** 2),
        v**3 / N**2 * (15 * E[6] - 45 * E[4] * E[2] + 30 * E[2] ** 3),
    ])  # fmt: skip


def test_erf_cumulants_at_non_default_scales_against_an_independent_quadrature():
    """Erf-net with every scale != 1, d = 1: one neuron's moments of ``g = sum_k a_k erf(b + w
    x_k)`` by a 400 x 400 Gauss-Legendre rule on [-10, 10]^2 in the standardised (bias, weight)
    (a different family from the oracle's Gauss-Hermite rule; converged to 1e-13 here), then
    the cumulants of ``a . f`` against the contracted oracle tables. Measured agreement:
    2e-12 (kappa_2), 7e-8 (kappa_4), 1.1e-6 (kappa_6): the oracle's 72-node Gauss-Hermite rule
    limits kappa_6, whose moments cancel to 1e-3 of their size."""
    from scipy.special import erf

    arch, N = nq.ErfNet(sw0=1.3, sb0=0.6, sw1=0.8, sb1=0.5), 3
    x, a = np.array([-0.8, 0.1, 0.9]), np.array([0.7, -1.1, 0.5])
    s, w = np.polynomial.legendre.leggauss(400)
    s, w = 10 * s, 10 * w
    w = w * np.exp(-(s**2) / 2) / np.sqrt(2 * np.pi)
    g = sum(ak * erf(arch.sb0 * s[:, None] + arch.sw0 * s[None, :] * xk)
            for ak, xk in zip(a, x, strict=True))  # fmt: skip
    E = {n: float(w @ g**n @ w) for n in (2, 4, 6)}
    reference = _projected_cumulants(E, arch, a, N)
    oracle = np.array([_contract(arch, x[:, None], N, n, a) for n in (2, 4, 6)])
    rel = np.abs(oracle / reference - 1)
    assert np.all(rel < [1e-10, 1e-6, 1e-5]), rel


def test_relu_with_biases_in_two_dimensions_against_monte_carlo():
    """ReLU with biases in d = 2 (the three-dimensional sphere rule), every scale != 1: the
    cumulants of ``a . f`` against a Monte Carlo of one neuron (2e6 draws of (b0, W0), 20
    batches; batch-means standard errors 0.08%, 0.17%, 0.6%): within 5 standard errors
    (measured |z| <= 1.7), and a kappa_4 or kappa_6 off by a factor 1.2 would be 30+ standard
    errors away."""
    arch, N = nq.ReLUNet(d_in=2, sw0=1.2, sb0=0.5, sw1=0.7, sb1=0.4), 4
    X = np.array([[0.3, 0.2], [0.5, -0.4], [-0.2, 0.9]])
    a = np.array([0.7, -1.1, 0.5])
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(20):
        b = arch.sb0 * rng.standard_normal(100_000)
        W = arch.sw0 / np.sqrt(2) * rng.standard_normal((100_000, 2))
        g = np.maximum(b[:, None] + W @ X.T, 0) @ a
        batches.append(_projected_cumulants({n: np.mean(g**n) for n in (2, 4, 6)}, arch, a, N))
    batches = np.array(batches)
    mc, se = batches.mean(0), batches.std(0, ddof=1) / np.sqrt(len(batches))
    oracle = np.array([_contract(arch, X, N, n, a) for n in (2, 4, 6)])
    z = (oracle - mc) / se
    assert np.all(np.abs(z) < 5), z
    assert np.all(np.abs(0.2 * oracle[1:]) > 30 * se[1:]), se / oracle  # the test has power


@pytest.mark.parametrize(
    "arch",
    [
        nq.ErfNet(sw0=1.3, sb0=0.6),
        nq.GaussNet(sw0=1.2, sb0=0.4),
        nq.ReLUNet(d_in=2, sw0=1.2, sb0=0.5),
        nq.ReLUNet(sw0=0.7),
    ],
    ids=lambda a: a.name,
)
def test_exact_scaling_laws_in_every_scale(arch):
    """f - b1 = sw1 sum_i W_i phi_i / sqrt(N) with standard W_i, so kappa_n (n >= 4) is
    proportional to sw1^n, kappa_2 - sb1^2 to sw1^2, and sb1 only adds sb1^2 to kappa_2. For
    ReLU phi is positively homogeneous: scaling (sw0, sb0) by c scales kappa_n by c^n."""
    X = np.array([[0.3, -0.2], [-0.5, 0.4], [0.9, 0.7]])[:, : arch.d_in]
    N = 5

    def cumulants(**scales):
        return nq.exact_cumulants(arch.__class__(**(_scales(arch) | scales)), X, N, 6)

    base = cumulants(sw1=1.0, sb1=0.0)
    for sw1, sb1 in ((0.8, 0.0), (1.7, 0.5)):
        k = cumulants(sw1=sw1, sb1=sb1)
        np.testing.assert_allclose(k[2] - sb1**2, sw1**2 * base[2], rtol=1e-12)
        np.testing.assert_allclose(k[4], sw1**4 * base[4], rtol=1e-12)
        np.testing.assert_allclose(k[6], sw1**6 * base[6], rtol=1e-12)
    if arch.activation == "relu":
        c = 1.6
        k = cumulants(sw1=1.0, sb1=0.0, sw0=c * arch.sw0, sb0=c * arch.sb0)
        for n in (2, 4, 6):
            np.testing.assert_allclose(k[n], c**n * base[n], rtol=1e-9)


def _scales(arch):
    fields = ("sw0", "sb0", "sw1", "sb1") + (("d_in",) if arch.depth == 1 else ())
    return {f: getattr(arch, f) for f in fields}


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


@pytest.mark.parametrize(
    "arch",
    [nq.ErfNet(sw0=1.3, sb0=0.6, sw1=0.8, sb1=0.5), nq.ReLUNet(sw1=1.4)],
    ids=lambda a: a.name,
)
def test_exact_covariance_at_one_input_is_the_delta_method(arch):
    """At one input the plug-in estimator is ``m4 - 3 m2^2`` of the sample moments, so its
    per-network variance is, to first order (delta method),
    ``Var(f^4) - 12 m2 Cov(f^4, f^2) + 36 m2^2 Var(f^2)``
    ``= (m8 - m4^2) - 12 m2 (m6 - m4 m2) + 36 m2^2 (m4 - m2^2)``, with the raw moments from the
    scalar moment recursion (not the set-partition tables). Every influence coefficient of
    the estimator is a sum over the three pairings of (0,0,0,0): one that counted a single
    pairing would give ``- 4 m2`` instead of ``- 12 m2``."""
    from nnqft_ppl.oracle.exact import exact_single_input_moments

    x = np.array([0.7])
    m = exact_single_input_moments(arch, x, 9, 8)
    delta = (
        (m[8] - m[4] ** 2) - 12 * m[2] * (m[6] - m[4] * m[2]) + 36 * m[2] ** 2 * (m[4] - m[2] ** 2)
    )
    cov = nq.exact_covariance(arch, x[None, :], 9, 4).values
    assert cov.shape == (1, 1)
    assert cov[0, 0] == pytest.approx(delta, rel=1e-10)
    # scaling law: f -> s f (sw1 -> s sw1 and sb1 -> s sb1) multiplies it by s^8
    s = arch.sw1
    unit = arch.__class__(**(_scales(arch) | {"sw1": 1.0, "sb1": arch.sb1 / s}))
    unit = nq.exact_covariance(unit, x[None, :], 9, 4)
    assert cov[0, 0] == pytest.approx(s**8 * unit.values[0, 0], rel=1e-10)


def test_exact_covariance_is_a_covariance(paper_inputs):
    cov = nq.exact_covariance(nq.ErfNet(), paper_inputs, 5).values
    np.testing.assert_allclose(cov, cov.T)
    w = np.linalg.eigvalsh(cov)
    assert w.min() > -1e-9 * w.max()


def test_deep_networks_are_refused_with_a_clear_error(paper_inputs):
    with pytest.raises(NotImplementedError, match="one hidden layer"):
        nq.exact_cumulant(nq.MLP(depth=2), paper_inputs, 10)


@pytest.mark.parametrize(
    "arch",
    [
        nq.GaussNet(),
        nq.ErfNet(),
        nq.ReLUNet(sb0=1.0),
        nq.ErfNet(sw0=1.3, sb0=0.6, sw1=0.8, sb1=0.5),
    ],
    ids=lambda a: f"{a.name}-sw1={a.sw1}",
)
def test_single_input_moments_match_the_multiset_oracle(arch):
    """The scalar recursion (used up to E[f^12]) agrees with the set-partition sums."""
    from nnqft_ppl.oracle.exact import exact_single_input_moments

    X = np.array([[0.3], [0.5]])
    m = exact_single_input_moments(arch, X[0], 7, 12)
    G = nq.exact_moments(arch, X, 7, 8)
    np.testing.assert_allclose(m[[2, 4, 6, 8]], [G[n][0] for n in (2, 4, 6, 8)], rtol=1e-12)
    assert m[1] == m[3] == m[11] == 0.0
