"""Vertex integrals: quadrature accuracy against closed forms and independent references.

The references share no code with the library's rule (composite Gauss-Legendre on the 2d
pyramids of the box): closed forms (ReLU without biases in d = 1, Gauss-net), scipy's adaptive
quadrature in polar coordinates (d = 2) and on the faces of the cube (d = 3) for ReLU without
biases, and a Cartesian tensor Gauss-Legendre rule with panel ends at the input coordinates for
the other kernels. The kernels inside the references are written out from docs/physics.md §1.
"""

import itertools
import math

import numpy as np
import pytest
from scipy import integrate
from scipy.special import erf

import nnqft_ppl as nq
from nnqft_ppl.core.multisets import index_multisets
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


def _relu_kint(sw0, sw1, x, y):
    """``K_int(x, y)`` of ReLU-net without biases (arc-cosine kernel), plain Python floats."""
    d = len(x)
    nx, ny = math.hypot(*x), math.hypot(*y)
    if nx == 0 or ny == 0:
        return 0.0
    c = max(-1.0, min(1.0, sum(a * b for a, b in zip(x, y, strict=True)) / (nx * ny)))
    t = math.acos(c)
    return sw1**2 * sw0**2 * nx * ny / d * (math.sin(t) + (math.pi - t) * c) / (2 * math.pi)


def _polar_reference(arch, X, T, L):
    """ReLU without biases, d = 2: ``K_int`` is homogeneous of degree 1 in y, so
    ``int_box prod_k K_int = int dtheta prod_k K_int(x_k, u(theta)) R^(n+2) / (n+2)`` with
    ``R(theta) = L / max(|cos|, |sin|)``; scipy.quad over the angle, split at the kinks (the
    rays through +-x_k and the corners of the box)."""
    n = len(T)
    angles = np.arctan2(X[:, 1], X[:, 0])
    kinks = np.mod(np.concatenate([angles, angles + np.pi]), 2 * np.pi)
    corners = np.pi / 4 + np.arange(4) * np.pi / 2
    breaks = np.unique(np.concatenate([[0, 2 * np.pi], kinks, corners]))

    def integrand(theta):
        u = (math.cos(theta), math.sin(theta))
        k = math.prod(_relu_kint(arch.sw0, arch.sw1, X[t], u) for t in T)
        return k * (L / max(abs(u[0]), abs(u[1]))) ** (n + 2) / (n + 2)

    return sum(
        integrate.quad(integrand, a, b, epsabs=0, epsrel=1e-13, limit=200)[0]
        for a, b in itertools.pairwise(breaks)
    )


@pytest.mark.parametrize(
    "X, cutoffs",
    [
        (np.array([[0.3, 0.8], [1.0, 0.2], [-0.5, 0.4]]), [1.7]),
        # kink rays far from their mirror images: misplaced panel ends cost ~1e-7 here
        (np.array([[0.67, -0.44], [-0.57, 0.28]]), [1.0, 2.5]),
    ],
    ids=["three-inputs", "two-inputs"],
)
@pytest.mark.parametrize("order", [4, 6])
def test_relu_d2_against_polar_quad(X, cutoffs, order):
    """All tuples, scales != 1, against the polar reference. The rule puts panel ends on the
    kink rays, so it agrees to ~1e-15 (measured); tolerance 1e-11."""
    arch = nq.ReLUNet(d_in=2, sw0=1.2, sw1=0.9)
    I = vertex_integral(arch, X, order, cutoffs).values
    T = index_multisets(len(X), order)
    ref = np.array([[_polar_reference(arch, X, t, L) for L in cutoffs] for t in T])
    rel = np.abs(I / ref - 1)
    assert rel.max() < 1e-11, rel.max()


def _face_reference(arch, X, T, L):
    """ReLU without biases, d = 3: homogeneity gives
    ``I = L^(n+3) / (n+3) sum_faces int_[-1,1]^2 du prod_k K_int(x_k, +-e_j + u)``; each face by
    nested scipy.quad with break points at the coordinates where the rays through +-x_k cross
    it (the only non-smooth points of the integrand on the face)."""
    d, n = 3, len(T)
    total = 0.0
    for axis, sign in itertools.product(range(d), (1, -1)):
        others = [j for j in range(d) if j != axis]
        hits = [v[others] / abs(v[axis]) for v in np.concatenate([X, -X]) if sign * v[axis] > 0]
        hits = [u for u in hits if np.all(np.abs(u) < 1)]
        p1 = sorted({float(u[0]) for u in hits}) or None
        p2 = sorted({float(u[1]) for u in hits}) or None

        def f(u2, u1, axis=axis, sign=sign, others=others):
            y = [0.0] * d
            y[axis], y[others[0]], y[others[1]] = float(sign), u1, u2
            return math.prod(_relu_kint(arch.sw0, arch.sw1, X[t], y) for t in T)

        def inner(u1, f=f, p2=p2):
            return integrate.quad(f, -1, 1, (u1,), points=p2, epsabs=0, epsrel=1e-13, limit=200)[0]

        total += integrate.quad(inner, -1, 1, points=p1, epsabs=0, epsrel=1e-13, limit=200)[0]
    return total * L ** (n + d) / (n + d)


def test_relu_d3_against_face_quadrature():
    """ReLU without biases in d = 3, scales != 1, 4-tuples of two inputs: the default rule
    agrees with the adaptive face quadrature within 1e-9 (measured 4.8e-10; panel ends at
    mirrored kink rays give 2e-9), and the rule with 16 nodes per panel within 2e-11
    (measured 3.5e-12): the rule converges to the independent reference."""
    arch = nq.ReLUNet(d_in=3, sw0=1.2, sw1=0.9)
    X = np.array([[-0.97, -0.39, 1.0], [-0.48, 0.7, 0.21]])
    L = 1.3
    rows = [0, 2, 4]  # (0,0,0,0), (0,0,1,1), (1,1,1,1)
    ref = np.array([_face_reference(arch, X, t, L) for t in index_multisets(2, 4)[rows]])
    default = vertex_integral(arch, X, 4, L).values[rows]
    fine = vertex_integral(arch, X, 4, L, nodes_per_panel=16).values[rows]
    assert np.abs(default / ref - 1).max() < 1e-9, default / ref - 1
    assert np.abs(fine / ref - 1).max() < 2e-11, fine / ref - 1


def _kernel_int(arch, X, Y):
    """``K_int(x_a, y_b)`` for erf and ReLU (any biases), written out from docs/physics.md §1."""
    d = X.shape[1]
    qx = arch.sb0**2 + arch.sw0**2 * np.sum(X * X, -1) / d
    qy = arch.sb0**2 + arch.sw0**2 * np.sum(Y * Y, -1) / d
    c = arch.sb0**2 + arch.sw0**2 * X @ Y.T / d
    if arch.activation == "erf":
        return (
            arch.sw1**2 * 2 / np.pi * np.arcsin(2 * c / np.sqrt(np.outer(1 + 2 * qx, 1 + 2 * qy)))
        )
    norm = np.sqrt(np.outer(qx, qy))
    cos = np.clip(c / norm, -1, 1)
    t = np.arccos(cos)
    return arch.sw1**2 * norm * (np.sin(t) + (np.pi - t) * cos) / (2 * np.pi)


def _cartesian_reference(arch, X, order, L, m):
    """Tensor Gauss-Legendre over the box ``[-L, L]^d`` (not its pyramids), m nodes per panel,
    panel ends at 0 and at every input coordinate: the only non-smooth points of these kernels
    (ReLU with biases: ``|y - x_k|^3``-type at ``y = x_k``) then sit at panel corners."""
    d = X.shape[1]
    s, w = np.polynomial.legendre.leggauss(m)
    nodes, weights = [], []
    for j in range(d):
        br = np.unique(np.clip(np.concatenate([[-L, 0.0, L], X[:, j]]), -L, L))
        a, b = br[:-1, None], br[1:, None]
        nodes.append(((a + b) / 2 + (b - a) / 2 * s).ravel())
        weights.append(((b - a) / 2 * w).ravel())
    Y = np.stack([g.ravel() for g in np.meshgrid(*nodes, indexing="ij")], -1)
    W = np.prod(np.stack([g.ravel() for g in np.meshgrid(*weights, indexing="ij")], -1), -1)
    K = _kernel_int(arch, X, Y)
    return np.array([W @ np.prod(K[t], axis=0) for t in index_multisets(len(X), order)])


@pytest.mark.parametrize(
    "arch_kw",
    [{"kind": "relu", "sb0": 0.7, "sb1": 0.3}, {"kind": "erf"}],
    ids=["relu-bias", "erf"],
)
@pytest.mark.parametrize("d", [1, 2, 3])
def test_against_a_cartesian_reference(arch_kw, d):
    """Erf and ReLU with biases (scales != 1), all 4-tuples of three inputs, two cutoffs: the
    rule against the Cartesian reference, whose own convergence (m vs 1.6 m nodes) is checked
    first (to 7e-13). Measured agreement: <= 2e-13 for d <= 2, 5e-11 (ReLU) for d = 3; a radial
    panel end missing at the ReLU point |x_k| (or misplaced) costs ~1e-8 in d = 1."""
    kw = dict(arch_kw)
    cls = {"relu": nq.ReLUNet, "erf": nq.ErfNet}[kw.pop("kind")]
    arch = cls(d_in=d, sw0=1.2, sw1=0.9, **kw)
    rng = np.random.default_rng(7 * d)
    X = rng.uniform(-1.2, 1.2, (3, d))
    cutoffs = [0.8, 3.0]
    I = vertex_integral(arch, X, 4, cutoffs).values
    m = {1: 24, 2: 24, 3: 12}[d]
    for c, L in enumerate(cutoffs):
        ref = _cartesian_reference(arch, X, 4, L, int(1.6 * m))
        assert np.abs(_cartesian_reference(arch, X, 4, L, m) / ref - 1).max() < 2e-12
        rel = np.abs(I[:, c] / ref - 1).max()
        assert rel < (2e-12 if d < 3 else 2e-10), (L, rel)


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
