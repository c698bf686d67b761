"""Vertex integrals: quadrature accuracy against closed forms and converged references."""

import numpy as np
import pytest
from scipy import integrate
from scipy.special import erf

import nnqft_ppl as nq
from nnqft_ppl.core.multisets import index_multisets
from nnqft_ppl.networks.kernels import interaction_kernel
from nnqft_ppl.theory.vertex import vertex_integral, vertex_rule

RTOL = 1e-8


def assert_close(value, reference, rtol=RTOL):
    """Relative agreement entry by entry (entries that vanish exactly compare to the scale)."""
    value, reference = np.asarray(value), np.asarray(reference)
    scale = np.abs(reference).max()
    assert np.all(np.abs(value - reference) <= rtol * np.abs(reference) + 1e-14 * scale), np.max(
        np.abs(value - reference) / (np.abs(reference) + 1e-300)
    )


def relu_d1_closed_form(arch, X, T, L, power=0):
    """sb0 = 0, d = 1: K_int(x, y) = sw1^2 sw0^2 x y / 2 where x y > 0, else 0."""
    c = arch.sw1**2 * arch.sw0**2 / 2
    x = X[T]
    n = T.shape[1]
    same_sign = np.all(x > 0, axis=1) | np.all(x < 0, axis=1)
    return (
        same_sign[:, None]
        * c**n
        * np.prod(np.abs(x), axis=1)[:, None]
        * (L[None, :] ** (n + 1 + power) / (n + 1 + power))
    )


def gauss_closed_form(arch, X, T, L):
    """Product of Gaussians: sw1^(2n) exp(-sum |x - y|^2 / (2 l^2)), l^2 = d / sw0^2, on a box."""
    d = arch.d_in
    ell2 = d / arch.sw0**2
    n = T.shape[1]
    xs = X[T]
    xbar = xs.mean(1)
    pref = arch.sw1 ** (2 * n) * np.exp(-((xs**2).sum((1, 2)) - n * (xbar**2).sum(1)) / (2 * ell2))
    sig = np.sqrt(ell2 / n)
    if L is None:
        per = np.full(xbar.shape, np.sqrt(2 * np.pi) * sig)
    else:
        z = np.sqrt(2) * sig
        per = np.sqrt(np.pi / 2) * sig * (erf((L - xbar) / z) + erf((L + xbar) / z))
    return pref * per.prod(1)


@pytest.mark.parametrize("order", [2, 4, 6])
def test_relu_d1_monomials_in_y_many_cutoffs(order):
    arch = nq.ReLUNet(sw0=1.3, sw1=0.8)
    X = np.array([-1.1, -0.3, 0.2, 0.4, 0.9, 1.2])
    Ls = np.geomspace(0.5, 20, 21)
    I = vertex_integral(arch, X, order, cutoff=Ls)
    assert I.dims == ("tuple", "cutoff")
    assert_close(I.values, relu_d1_closed_form(arch, X, index_multisets(6, order), Ls))


def test_relu_d1_with_radial_basis():
    arch = nq.ReLUNet()
    X = np.array([0.2, 0.4, 0.6, 0.8, 1.0, 1.2])
    I = vertex_integral(arch, X, 4, cutoff=[1.0, 3.0], basis=lambda y: (y**2).sum(1))
    assert_close(
        I.values, relu_d1_closed_form(arch, X, index_multisets(6, 4), np.array([1, 3.0]), 2)
    )


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("cutoff", [None, 0.7, 2.5])
def test_gauss_net_closed_form(d, cutoff):
    rng = np.random.default_rng(d)
    X = rng.uniform(-1, 1, (4 if d == 3 else 5, d))
    arch = nq.GaussNet(d_in=d, sw0=1.1, sw1=0.8, sb0=0.5)
    for order in (2, 4) if d == 3 else (2, 4, 6):
        I = vertex_integral(arch, X, order, cutoff)
        assert_close(I.values, gauss_closed_form(arch, X, index_multisets(len(X), order), cutoff))


def test_relu_d2_against_polar_quad():
    """Independent reference: polar coordinates, scipy.quad over the angle with the kinks."""
    arch = nq.ReLUNet(d_in=2, sw0=1.2)
    X = np.array([[0.3, 0.8], [1.0, 0.2], [-0.5, 0.4]])
    L = 1.7
    T = index_multisets(3, 4)[[0, 4, 9, 14]]
    I = vertex_integral(arch, X, 4, L).values[[0, 4, 9, 14]]
    angles = np.arctan2(X[:, 1], X[:, 0])
    kinks = np.sort(np.mod(np.concatenate([angles, angles + np.pi]), 2 * np.pi))
    corners = np.pi / 4 + np.arange(4) * np.pi / 2
    breaks = np.unique(np.concatenate([[0, 2 * np.pi], kinks, corners]))

    def integrand(theta, t):
        u = np.array([[np.cos(theta), np.sin(theta)]])
        k = interaction_kernel(arch, X[t], u)[:, 0]  # degree-1 homogeneous
        R = L / max(abs(u[0, 0]), abs(u[0, 1]))
        return np.prod(k) * R**6 / 6  # int_0^R r^4 r dr

    for row, t in enumerate(T):
        ref = sum(
            integrate.quad(integrand, a, b, args=(t,), epsabs=0, epsrel=1e-12)[0]
            for a, b in zip(breaks[:-1], breaks[1:], strict=True)
        )
        assert abs(I[row] - ref) <= RTOL * abs(ref)


@pytest.mark.parametrize(
    "arch_kw",
    [
        {"kind": "relu", "sb0": 0.0},
        {"kind": "relu", "sb0": 0.7, "sb1": 0.3},
        {"kind": "erf"},
    ],
)
@pytest.mark.parametrize("d", [1, 2, 3])
def test_converged_against_refined_rule(arch_kw, d):
    kw = dict(arch_kw)
    cls = {"relu": nq.ReLUNet, "erf": nq.ErfNet}[kw.pop("kind")]
    arch = cls(d_in=d, **kw)
    rng = np.random.default_rng(7 * d)
    X = rng.uniform(-1.2, 1.2, (3 if d == 3 else 5, d))
    cutoffs = [0.8] if d == 3 else [0.8, 3.0]
    default = vertex_integral(arch, X, 4, cutoffs).values
    m = {1: 16, 2: 12, 3: 8}[d]
    refined = vertex_integral(arch, X, 4, cutoffs, nodes_per_panel=2 * m).values
    assert_close(default, refined)


def test_cutoff_order_and_scalar_cutoff():
    arch = nq.ReLUNet()
    X = [0.2, 0.5]
    both = vertex_integral(arch, X, 4, [2.0, 1.0])
    assert list(both.cutoff.values) == [2.0, 1.0]
    single = vertex_integral(arch, X, 4, 1.0)
    assert single.dims == ("tuple",)
    np.testing.assert_allclose(both.sel(cutoff=1.0).values, single.values, rtol=1e-13)
    assert list(single.tuple.values[:2]) == ["0,0,0,0", "0,0,0,1"]


def test_rule_weights_are_box_volumes():
    for d in (1, 2, 3):
        rule = vertex_rule(nq.ErfNet(d_in=d), np.ones((2, d)) * 0.3, cutoff=[0.5, 2.0])
        np.testing.assert_allclose(rule.weights.sum(0), [(2 * 0.5) ** d, 4.0**d], rtol=1e-12)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf, [1.0, -2.0], [], [1.0, None], "x"])
def test_bad_cutoff_is_named(bad):
    with pytest.raises(ValueError, match="cutoff"):
        vertex_integral(nq.ReLUNet(), [0.2, 0.4], 4, bad)


@pytest.mark.parametrize("arch", [nq.ErfNet(), nq.ReLUNet(), nq.MLP(depth=2, activation="tanh")])
def test_all_space_diverges_for_non_decaying_kernels(arch):
    with pytest.raises(ValueError, match="diverges"):
        vertex_integral(arch, [0.2, 0.4], 4, None)


def test_bad_order_and_inputs():
    with pytest.raises(ValueError, match="order"):
        vertex_integral(nq.GaussNet(), [0.2], 0)
    with pytest.raises(ValueError, match="shape"):
        vertex_integral(nq.GaussNet(d_in=2), [0.2, 0.3], 4)
