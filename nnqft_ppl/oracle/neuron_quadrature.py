"""Noise-free expectations over one hidden neuron: ``E[prod_k phi(z(x_k))]``.

For one neuron ``z(x) = b0 + W0 . x`` with ``b0 ~ N(0, sb0^2)`` and ``W0 ~ N(0, sw0^2/d I)``, so
the pre-activations at P inputs are ``z = L g`` with ``g ~ N(0, I_r)`` and the factor
``L = [sb0, sw0 X / sqrt(d)]`` of rank ``r <= d + 1`` (columns that vanish, e.g. ``sb0 = 0``,
are dropped). Every expectation is then an r-dimensional Gaussian integral, done with a fixed
rule ``E[h(z)] ~= sum_q w_q h(z_q)`` on nodes that serve all index multisets at once:

* smooth activations (erf, tanh): tensor Gauss--Hermite in r dimensions;
* positively homogeneous ones (ReLU): ``g = R omega`` splits into the radial moment
  ``E[R^n] = 2^(n/2) Gamma((r+n)/2) / Gamma(r/2)`` and an angular average over the sphere
  ``S^(r-1)``; the angular integrand is smooth between the great circles ``L_k . omega = 0``,
  so the angular rule splits at them (exact to rounding for r <= 2; for r = 3 the azimuth is
  split at its kinks and the polar angle at the tangencies, with a cosine map that removes
  the square-root endpoint behaviour).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gamma

import numpy as np

from ..core.precision import float64
from ..networks.architectures import MLP

__all__ = ["NeuronRule", "neuron_rule", "input_factor"]

_GH_NODES_BY_RANK = {1: 120, 2: 72, 3: 40, 4: 22}
_ARC_NODES = 24  # Gauss-Legendre nodes per smooth arc of the angular rules
# Polar pieces of the r = 3 rule carry the (mild) non-smoothness where azimuthal kinks cross:
# the error falls as ~n^-4 (measured: 24 -> 1.7e-6, 96 -> 5e-9 relative on the kernel).
_POLAR_NODES = 96


@dataclass(frozen=True)
class NeuronRule:
    """A quadrature rule for one neuron's activations at P inputs.

    Attributes:
        values: ``(Q, P)`` activations ``phi(z_q)`` (for homogeneous activations: on the unit
            sphere, i.e. without the radial factor).
        weights: ``(Q,)`` weights summing to 1.
        rank: r, the dimension of the Gaussian integral.
        homogeneous: when True, a degree-n monomial must be multiplied by ``radial_moment(n)``.
    """

    values: np.ndarray
    weights: np.ndarray
    rank: int
    homogeneous: bool

    def radial_moment(self, n: int) -> float:
        """``E[|g|^n]`` for ``g ~ N(0, I_rank)`` (1 for non-homogeneous rules)."""
        if not self.homogeneous:
            return 1.0
        r = self.rank
        return 2 ** (n / 2) * gamma((r + n) / 2) / gamma(r / 2)


def input_factor(arch: MLP, X: np.ndarray) -> np.ndarray:
    """``L (P, r)`` with ``z = L g``: columns ``sb0`` and ``sw0 x / sqrt(d)``, zero ones dropped."""
    P, d = X.shape
    L = np.concatenate([np.full((P, 1), arch.sb0), arch.sw0 * X / np.sqrt(d)], axis=1)
    keep = np.any(L != 0, axis=0)
    return L[:, keep] if keep.any() else L[:, :1]


@float64
def neuron_rule(arch: MLP, X: np.ndarray) -> NeuronRule:
    """The quadrature rule for ``arch`` (single hidden layer) at inputs ``X (P, d)``."""
    L = input_factor(arch, X)
    r = L.shape[1]
    q = np.sum(L * L, axis=1)  # Var z(x_k)
    if arch.phi.positively_homogeneous:
        omega, w = _sphere_rule(L)
        values = np.asarray(arch.phi(omega @ L.T, q))
        return NeuronRule(values, w, r, True)
    if r not in _GH_NODES_BY_RANK:
        raise NotImplementedError(
            f"exact single-neuron moments need a Gaussian integral of dimension {r} <= 4 "
            f"(d_in <= 3); got d_in = {X.shape[1]}"
        )
    g, w = _hermite_tensor_rule(r, _GH_NODES_BY_RANK[r])
    values = np.asarray(arch.phi(g @ L.T, q))
    return NeuronRule(values, w, r, False)


def _hermite_tensor_rule(r: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Tensor Gauss--Hermite rule for ``N(0, I_r)``: nodes ``(n^r, r)``, weights ``(n^r,)``."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    grids = np.meshgrid(*([x] * r), indexing="ij")
    weights = np.prod(np.meshgrid(*([w] * r), indexing="ij"), axis=0)
    keep = weights.ravel() > 1e-300  # far-tail nodes carry no weight
    nodes = np.stack([gr.ravel() for gr in grids], axis=1)
    return nodes[keep], weights.ravel()[keep]


def _legendre_on(breaks: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss--Legendre nodes/weights on consecutive intervals of sorted ``breaks (..., B)``.

    Returns ``(..., (B-1) * n)`` nodes and weights (weights include interval lengths).
    """
    s, ws = np.polynomial.legendre.leggauss(n)
    a, b = breaks[..., :-1, None], breaks[..., 1:, None]
    nodes = 0.5 * (a + b) + 0.5 * (b - a) * s
    weights = 0.5 * (b - a) * ws
    shape = breaks.shape[:-1] + (-1,)
    return nodes.reshape(shape), weights.reshape(shape)


def _sphere_rule(L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angular rule on ``S^(r-1)`` split at the kinks ``L_k . omega = 0``: ``(Q, r)``, ``(Q,)``."""
    r = L.shape[1]
    if r == 1:
        return np.array([[1.0], [-1.0]]), np.array([0.5, 0.5])
    if r == 2:
        kinks = np.arctan2(L[:, 1], L[:, 0])[:, None] + np.array([0.5, -0.5]) * np.pi
        phi, w = _legendre_on(_sorted_breaks(kinks.ravel()), _ARC_NODES)
        return np.stack([np.cos(phi), np.sin(phi)], axis=1), w / (2 * np.pi)
    if r == 3:
        return _sphere3_rule(L)
    raise NotImplementedError(
        f"exact ReLU moments are implemented for Gaussian dimension r <= 3 (d_in <= 2, or "
        f"d_in = 3 with sb0 = 0); got r = {r}"
    )


def _sorted_breaks(angles: np.ndarray) -> np.ndarray:
    """Angles mod 2 pi, with 0 and 2 pi added, sorted along the last axis."""
    wrapped = np.mod(angles, 2 * np.pi)
    ends = np.broadcast_to(np.array([0.0, 2 * np.pi]), wrapped.shape[:-1] + (2,))
    return np.sort(np.concatenate([wrapped, ends], axis=-1), axis=-1)


def _sphere3_rule(L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``omega = (cos t, sin t cos p, sin t sin p)``, measure ``sin t dt dp / (4 pi)``."""
    a1, rho = np.abs(L[:, 0]), np.hypot(L[:, 1], L[:, 2])
    # Polar angles where a kink circle touches a latitude: there the azimuthal kinks appear.
    tangencies = np.arctan2(a1, rho)
    t_breaks = np.unique(
        np.clip(np.concatenate([[0.0, np.pi], tangencies, np.pi - tangencies]), 0.0, np.pi)
    )
    s, ws = np.polynomial.legendre.leggauss(_POLAR_NODES)
    s, ws = 0.5 * (s + 1), 0.5 * ws
    # t = a + (b - a)(1 - cos(pi s))/2 clusters nodes at both ends of each piece.
    a, b = t_breaks[:-1, None], t_breaks[1:, None]
    t = (a + (b - a) * 0.5 * (1 - np.cos(np.pi * s))).ravel()
    wt = ((b - a) * 0.5 * np.pi * np.sin(np.pi * s) * ws).ravel() * np.sin(t)
    # Azimuthal kinks at each t: L1 cos t + sin t (L2 cos p + L3 sin p) = 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        c = -L[None, :, 0] * np.cos(t)[:, None] / (rho[None, :] * np.sin(t)[:, None])
    has_roots = np.abs(c) <= 1
    half = np.arccos(np.clip(np.nan_to_num(c), -1, 1))
    centre = np.arctan2(L[:, 2], L[:, 1])[None, :]
    roots = np.where(has_roots[..., None], centre[..., None] + np.stack([half, -half], -1), 0.0)
    p, wp = _legendre_on(_sorted_breaks(roots.reshape(len(t), -1)), _ARC_NODES)
    st = np.sin(t)[:, None]
    omega = np.stack(
        [np.broadcast_to(np.cos(t)[:, None], p.shape), st * np.cos(p), st * np.sin(p)], axis=-1
    )
    weights = wt[:, None] * wp / (4 * np.pi)
    return omega.reshape(-1, 3), weights.ravel()
