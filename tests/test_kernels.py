"""GP kernels: SPEC section 1 closed forms, the deep recursion, and Monte Carlo."""

import jax
import numpy as np
import pytest

import nnqft_ppl as nq
from nnqft_ppl.networks.activations import Activation, get_activation


def _spec_kernel(name, X, sw0=1.0, sb0=1.0, sw1=1.0, sb1=1.0):
    """SPEC section 1 table, written out independently of the library."""
    d = X.shape[1]
    q = sb0**2 + sw0**2 * np.sum(X * X, 1) / d
    c = sb0**2 + sw0**2 * X @ X.T / d
    if name == "gauss":
        dist2 = np.sum((X[:, None] - X[None]) ** 2, -1)
        return sb1**2 + sw1**2 * np.exp(-(sw0**2) * dist2 / (2 * d))
    if name == "erf":
        return sb1**2 + 2 * sw1**2 / np.pi * np.arcsin(
            2 * c / np.sqrt(np.outer(1 + 2 * q, 1 + 2 * q))
        )
    cos_t = np.clip(c / np.sqrt(np.outer(q, q)), -1, 1)
    t = np.arccos(cos_t)
    return sb1**2 + sw1**2 * np.sqrt(np.outer(q, q)) * (np.sin(t) + (np.pi - t) * cos_t) / (
        2 * np.pi
    )


@pytest.mark.parametrize("d_in", [1, 2, 3])
@pytest.mark.parametrize(
    "cls,name,scales",
    [
        (nq.GaussNet, "gauss", dict(sw0=1.3, sb0=0.7, sw1=0.8, sb1=0.5)),
        (nq.ErfNet, "erf", dict(sw0=1.3, sb0=0.7, sw1=0.8, sb1=0.5)),
        (nq.ReLUNet, "relu", dict(sw0=1.3, sb0=0.7, sw1=0.8, sb1=0.5)),
        (nq.ReLUNet, "relu", dict(sw0=1.0, sb0=0.0, sw1=1.0, sb1=0.0)),
    ],
)
def test_closed_forms_match_spec_table(cls, name, scales, d_in):
    X = np.random.default_rng(d_in).normal(size=(5, d_in))
    np.testing.assert_allclose(
        nq.kernel(cls(d_in=d_in, **scales), X), _spec_kernel(name, X, **scales), rtol=1e-12
    )


@pytest.mark.parametrize("name", ["erf", "gauss"])
def test_gauss_hermite_default_agrees_with_closed_form(name):
    """The base-class quadrature (used for smooth activations such as tanh) reproduces the
    smooth closed forms. (It is not meant for kinks: ReLU has its own closed form.)"""
    act = get_activation(name)
    c11, c22, c12 = np.array([0.7, 1.9]), np.array([1.1, 0.4]), np.array([0.3, -0.5])
    with jax.enable_x64(True):  # building blocks compute in the caller's precision
        generic = Activation.gaussian_product(act, c11, c22, c12)
        closed = act.gaussian_product(c11, c22, c12)
    np.testing.assert_allclose(generic, closed, rtol=1e-10)


def test_depth_one_mlp_is_the_single_layer_net():
    X = np.random.default_rng(0).normal(size=(4, 2))
    for act, net in (("erf", nq.ErfNet), ("relu", nq.ReLUNet)):
        np.testing.assert_allclose(
            nq.kernel(nq.MLP(1, act, d_in=2), X), nq.kernel(net(d_in=2), X), rtol=1e-14
        )


def test_cross_kernel_and_interaction_kernel():
    arch = nq.ErfNet(sb1=0.3)
    X, Y = np.array([[0.1], [0.5]]), np.array([[0.2], [-1.0], [2.0]])
    full = nq.kernel(arch, np.concatenate([X, Y]))
    np.testing.assert_allclose(nq.kernel(arch, X, Y), full[:2, 2:], rtol=1e-14)
    np.testing.assert_allclose(nq.interaction_kernel(arch, X, Y), full[:2, 2:] - 0.09)


@pytest.mark.parametrize(
    "arch,width",
    [
        (nq.GaussNet(sb0=0.5), 20),
        (nq.ErfNet(), 20),
        (nq.ReLUNet(d_in=2, sb0=0.5, sb1=0.2), 20),
        (nq.MLP(depth=3, activation="tanh", d_in=2), 32),
        (nq.MLP(depth=2, activation="relu", d_in=2), 32),
    ],
)
def test_kernel_matches_monte_carlo(arch, width):
    """For one hidden layer K is exact at any width; for deep nets it is the N -> oo limit,
    with O(1/N) corrections, so the deep cases use a wide net and a 1/N allowance."""
    X = np.random.default_rng(3).uniform(-1, 1, size=(4, arch.d_in))
    n_networks = 100_000 if arch.depth == 1 else 20_000
    K_mc, se = nq.monte_carlo_kernel(arch, X, width, n_networks=n_networks, seed=7)
    K = nq.kernel(arch, X)
    allowance = 0.0 if arch.depth == 1 else 3.0 * np.abs(K) / width
    z = (np.abs(K_mc - K) - allowance).clip(0) / se
    assert z.max() < 5, z
