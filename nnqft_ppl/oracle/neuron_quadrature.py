"""Noise-free expectations over one hidden neuron: ``E[prod_k phi(z(x_k))]``.

For one neuron ``z(x) = b0 + W0 . x`` with ``b0 ~ N(0, sb0^2)`` and ``W0 ~ N(0, sw0^2/d I)``, so
the pre-activations at P inputs are ``z = L g`` with ``g ~ N(0, I_r)`` and the factor
``L = [sb0, sw0 X / sqrt(d)]`` of rank ``r <= d + 1`` (columns that vanish, e.g. ``sb0 = 0``,
are dropped; when the rows of L span fewer dimensions, e.g. ``P <= d`` inputs, the integral is
rotated onto their span: one input is always a one-dimensional integral). Every expectation
is then an r-dimensional Gaussian integral, done with a fixed rule
``E[h(z)] ~= sum_q w_q h(z_q)`` on nodes that serve all index multisets at once:

* smooth activations (erf, tanh, any user-defined smooth one): the tensor trapezoid rule on a
  ball of radius ~9. For a Gaussian-weighted analytic integrand its error is the Fourier
  transform at the dual lattice points ``2 pi m / h``: for ``erf(a g)^n`` (erf grows like
  ``exp(y^2)`` off the real axis) it is ``exp(-pi^2 / (h^2 (n a^2 + 1/2)))``, for tanh about
  ``exp(-pi^2 / (a h))`` (poles at ``i pi / 2a``). The steps start from
  ``pi / sqrt(T (n a_j^2 + 1/2))`` with ``a_j = max_k |L_kj|`` along axis j and are scaled so
  that the erf model's smallest exponent over all multisets of order n and all dual points
  is T (22 for r = 3, 4; 36 for r <= 2, where nodes are cheap), at most 0.8; of the inputs'
  axes and the principal axes of L, the one with fewer nodes is used. Gauss--Hermite
  converges far more slowly for such integrands (the former 40-node rule was off by up to 6e-4
  at d_in = 2, 22 nodes by up to 5e-3 at d_in = 3, at order 8). For odd or even activations
  the nodes g and -g are merged (even orders only); nodes whose contributions, bounded by
  ``w_q max_k |phi_qk|^n``, add up to less than 1e-13 of every moment are dropped, and the
  ball grows until its outer shell is negligible, so unbounded activations (softplus,
  ``exp(z - q)``) are integrated as accurately.
* positively homogeneous ones (ReLU): ``g = R omega`` splits into the radial moment
  ``E[R^n] = 2^(n/2) Gamma((r+n)/2) / Gamma(r/2)`` and an angular average over the sphere
  ``S^(r-1)``; the angular integrand is smooth between the great circles ``L_k . omega = 0``,
  so the angular rule splits at them: exact for r = 1, Gauss--Legendre arcs between the kinks
  for r = 2 (exact to rounding), and for r = 3 the azimuth is split at its kinks and the polar
  angle at the tangencies (with a cosine map that removes the square-root endpoint behaviour)
  and at the crossings of two kink circles, where the azimuthal integral has a
  ``(t - t*)_+^(k+1)`` singularity (without these breaks the former rule was off by ~3e-9).
  A rank-4 ReLU integral (d_in = 3 with a bias and 4 or more inputs in general position)
  raises ``NotImplementedError``: a sphere rule split along the kinks of ``S^3`` is not
  implemented.

Accuracy. The rules are built for a relative error below ``TARGET_ACCURACY = 1e-10`` for every
order ``n <= max_order``, relative to the largest moment of that order (a diagonal one,
``max_k E[phi_k^n]``, by Hoelder); much smaller entries carry the same absolute error.
``neuron_rule(..., check=True)`` gives an independent finer rule (trapezoid steps times 0.8 on
a ball one unit larger; for ReLU 1.5 times the nodes per piece) whose difference from the
default one estimates the default rule's error: :func:`nnqft_ppl.oracle.exact.oracle_error`.
Measured at order 8 with 6 inputs of modulus ~1 (sb0 = 1, sw0 = 1 or 2, and without bias)
against Gauss--Legendre box rules (r <= 3; the tests also do r = 4 with 4 inputs) or the check
rule (r = 4): erf 1e-14 to 5e-13, tanh 1e-14 to 1e-11; ReLU 4e-15 against a Cartesian rule
with one axis integrated exactly. Where these errors are above rounding, the error estimates
match them to a factor of ~2.

Cost, at order 8 with 6 inputs (CPU time, one BLAS thread): r <= 2: 3e3 to 6e3 nodes, < 0.1 s;
r = 3: 5e4 to 2e5 nodes, 0.2 to 0.5 s; r = 4: 4e5 nodes, ~1 s at sw0 = 1, and 2e6 nodes, 5 to
6 s at sw0 = 2. Nodes grow like ``prod_j sqrt(n a_j^2 + 1/2)``; the weighted sums over them
(:func:`nnqft_ppl.oracle.exact.single_neuron_moments`) cost ~2e4 flops per node. The check rule
costs 2 to 4 times as much.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from math import gamma

import jax
import numpy as np

from ..core.multisets import index_multisets
from ..core.precision import float64
from ..core.quadrature import legendre_on_intervals
from ..networks.architectures import MLP

__all__ = ["NeuronRule", "neuron_rule", "input_factor", "TARGET_ACCURACY"]

#: Relative accuracy the rules are built for (per order, relative to the largest moment).
TARGET_ACCURACY = 1e-10

# Trapezoid steps: the erf model's aliasing exponent T (see _steps). T = 22 gives <= 1e-11 for
# tanh and <= 5e-13 for erf at order 8 (measured, r = 3, 4); low ranks take T = 36 at no cost.
_STEP_T = {1: 36.0, 2: 36.0, 3: 22.0, 4: 22.0}
_MAX_STEP = 0.8  # the Gaussian alone aliases by exp(-2 pi^2 / h^2) < 4e-14 per axis
_CHECK_STEP = 0.8  # the check rule's steps, relative to the default ones
_RADIUS = 9.0  # first ball radius (Gaussian mass beyond it < 1e-16 for r <= 4)
_RADIUS_STEP = 1.5  # the ball grows by this while its outer unit shell is not negligible:
_SHELL = 1e-11  # its relative contribution (beyond it, a Gaussian tail adds < 1e-3 of that)
_TAIL = 1e-13  # relative contribution of the nodes that are dropped
_MAX_NODES = 40_000_000
_CHUNK = 1 << 16  # nodes per activation evaluation (fixed shape: one compilation)
_RANK_TOL = 1e-13  # singular values of L below this (relative) are dropped

# Gauss--Legendre nodes per smooth piece of the angular (ReLU) rules: default and check.
_ARC_NODES = {False: 16, True: 24}
_POLAR_NODES = {False: 24, True: 36}


@dataclass(frozen=True)
class NeuronRule:
    """A quadrature rule for one neuron's activations at P inputs.

    Attributes:
        values: ``(Q, P)`` activations ``phi(z_q)`` (for homogeneous activations: on the unit
            sphere, i.e. without the radial factor).
        weights: ``(Q,)`` positive weights summing to at most 1: nodes whose contributions
            to every moment add up to less than 1e-13 of it are left out (e.g. the origin
            for an odd activation).
        rank: r, the dimension of the Gaussian integral.
        homogeneous: when True, a degree-n monomial must be multiplied by ``radial_moment(n)``.
        even_only: when True the nodes g and -g were merged (odd or even activation), so the
            rule holds for products of an even number of factors only.
    """

    values: np.ndarray
    weights: np.ndarray
    rank: int
    homogeneous: bool
    even_only: bool = False

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
def neuron_rule(arch: MLP, X: np.ndarray, *, max_order: int = 8, check: bool = False) -> NeuronRule:
    """The quadrature rule for ``arch`` (single hidden layer) at inputs ``X (P, d)``.

    Args:
        arch: single-hidden-layer architecture.
        X: inputs ``(P, d_in)``.
        max_order: highest order of the products the rule must integrate to
            ``TARGET_ACCURACY`` (smooth rules refine their steps with it).
        check: return the independent, finer rule that error estimates compare with.
    """
    L = input_factor(arch, X)
    q = np.sum(L * L, axis=1)  # Var z(x_k), invariant under the rotations below
    phi = arch.phi
    if phi.positively_homogeneous:
        L = _row_space(L)
        omega, w = _sphere_rule(L, check)
        values = _activation(phi, omega @ L.T, q)
        return NeuronRule(values, w, L.shape[1], True)
    n = max(2, int(max_order))
    # the axes of the inputs' coordinates or the principal axes, whichever needs fewer nodes
    candidates = [M for M in (L, _row_space(L, always=True)) if M.shape[1] in _STEP_T]
    if not candidates:
        raise NotImplementedError(
            f"exact single-neuron moments need a Gaussian integral of dimension <= 4 "
            f"(d_in <= 3, or at most 4 inputs); got dimension {L.shape[1]} at d_in = {X.shape[1]}"
        )
    steps = [_steps(M, n) for M in candidates]
    best = int(np.argmin([_log_node_count(h) for h in steps]))
    h = steps[best] * (_CHECK_STEP if check else 1.0)
    return _trapezoid_rule(phi, candidates[best], q, n, h, check)


def _activation(phi, z: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``phi(z, q)`` in float64 whatever the global JAX precision."""
    with jax.enable_x64(True):
        return np.asarray(phi(z, q), dtype=np.float64)


def _row_space(L: np.ndarray, always: bool = False) -> np.ndarray:
    """``L`` in an orthonormal basis of its row space (``U S`` of its SVD) when that has fewer
    dimensions than L has columns (or ``always``); otherwise L itself."""
    U, s, _ = np.linalg.svd(L, full_matrices=False)
    k = max(1, int(np.sum(s > _RANK_TOL * s[0]))) if s[0] > 0 else 1
    if k == L.shape[1] and not always:
        return L
    return U[:, :k] * s[:k]


# ------------------------------------------------------------------- smooth activations
def _steps(L: np.ndarray, n: int) -> np.ndarray:
    """Trapezoid steps along the axes of L's basis for products of order ``<= n``.

    Model: ``erf(z)`` grows like ``exp(Im(z)^2)`` off the real axis, so the Fourier transform of
    ``prod_{k in T} phi(L_k . g) N(g)`` decays like ``exp(-w^T (I + 2 B_T)^-1 w / 2)`` with
    ``B_T = sum_{k in T} L_k L_k^T``, and the trapezoid rule's error is its largest value at a
    nonzero point ``w = 2 pi m / h`` (m integer) of the dual lattice. Starting from the per-axis
    steps ``pi / sqrt(T (n a_j^2 + 1/2))`` (exact for one input along an axis), the steps are
    scaled so that the smallest exponent over all multisets of order n and dual points is T.
    The model is conservative (errors ~1e-12 at T = 22) where the activation varies on the
    scale of g, but exact for the Gaussian alone (``exp(-2 pi^2 / h^2)`` per axis), so steps
    are capped at 0.8 (aliasing < 4e-14 per axis) for nearly linear neurons.
    """
    T = _STEP_T[L.shape[1]]
    h = np.pi / np.sqrt(T * (n * np.max(np.abs(L), axis=0) ** 2 + 0.5))
    return np.minimum(h * np.sqrt(_aliasing_exponent(L, h, n) / T), _MAX_STEP)


def _aliasing_exponent(L: np.ndarray, h: np.ndarray, n: int) -> float:
    """``min_{T, m != 0} w^T (I + 2 B_T)^-1 w / 2`` with ``w = 2 pi m / h`` (see :func:`_steps`)."""
    P, r = L.shape
    omega = 2 * np.pi * _dual_points(r) / h  # (D, r)
    smallest = np.inf
    multisets = index_multisets(P, n)
    for start in range(0, len(multisets), 256):
        rows = L[multisets[start : start + 256]]  # (t, n, r)
        precision = np.linalg.inv(np.eye(r) + 2 * np.einsum("tki,tkj->tij", rows, rows))
        quad = np.einsum("tdi,di->td", omega @ precision, omega)
        smallest = min(smallest, 0.5 * float(quad.min()))
    return smallest


@cache
def _dual_points(r: int) -> np.ndarray:
    """Nonzero integer vectors in ``[-3, 3]^r``, one of each pair ``+-m``."""
    grid = np.stack(np.meshgrid(*[np.arange(-3, 4)] * r, indexing="ij"), axis=-1).reshape(-1, r)
    first = grid[np.arange(len(grid)), np.argmax(grid != 0, axis=1)]
    return grid[first > 0].astype(np.float64)


def _log_node_count(h: np.ndarray) -> float:
    """Log of the node count of the trapezoid rule with steps h on the ball."""
    r = len(h)
    log_ball = (r / 2) * np.log(np.pi) - np.log(gamma(r / 2 + 1)) + r * np.log(_RADIUS)
    return float(log_ball - np.sum(np.log(h)))


def _half_ball_indices(n_axis: np.ndarray, h: np.ndarray, radius: float) -> np.ndarray:
    """Integer grid points ``i`` with ``|i h| <= radius`` and first nonzero entry positive.

    Returns ``(Q, r)`` int32; one loop over the first axis (slabs), vectorised within a slab.
    """
    r = len(h)
    if r == 1:
        return np.arange(1, n_axis[0] + 1, dtype=np.int32)[:, None]
    rest = np.stack(
        [
            g.ravel()
            for g in np.meshgrid(*[np.arange(-m, m + 1) for m in n_axis[1:]], indexing="ij")
        ],
        axis=1,
    ).astype(np.int32)
    rest_sq = np.sum((rest * h[1:]) ** 2, axis=1)
    nonzero = rest != 0
    first = rest[np.arange(len(rest)), np.argmax(nonzero, axis=1)]
    positive_rest = first > 0  # lexicographically positive (the zero vector is excluded)
    slabs = []
    for i0 in range(0, n_axis[0] + 1):
        inside = rest_sq <= radius**2 - (i0 * h[0]) ** 2
        if i0 == 0:
            inside &= positive_rest
        block = rest[inside]
        slabs.append(np.concatenate([np.full((len(block), 1), i0, np.int32), block], axis=1))
    return np.concatenate(slabs, axis=0)


def _trapezoid_rule(
    phi, L: np.ndarray, q: np.ndarray, n: int, h: np.ndarray, check: bool
) -> NeuronRule:
    """Tensor trapezoid rule with steps h on a ball, merged over g <-> -g when phi is odd or
    even (a check rule starts from a larger ball)."""
    r = L.shape[1]
    radius = _RADIUS + (1.0 if check else 0.0)
    orders = np.arange(2, n + 1, 2)
    while True:
        idx = _half_ball_indices(np.floor(radius / h).astype(int), h, radius)
        if 2 * len(idx) + 1 > _MAX_NODES:
            raise ValueError(
                f"the moments of order {n} of activation {phi.name!r} need a quadrature ball "
                f"of radius > {radius:.0f} ({2 * len(idx) + 1} nodes): the activation grows "
                f"too fast for exact single-neuron moments"
            )
        g = np.concatenate([np.zeros((1, r)), idx * h], axis=0)  # the origin, then a half
        del idx
        symmetric = _odd_or_even(phi, g, L, q)
        if not symmetric:
            g = np.concatenate([g, -g[1:]], axis=0)
        sq = np.sum(g * g, axis=1)
        weights = np.prod(h) * np.exp(-0.5 * sq) / (2 * np.pi) ** (r / 2)
        if symmetric:
            weights[1:] *= 2  # node g stands for g and -g
        values = _activations(phi, g, L, q)
        del g
        bound = _contribution_bound(values, weights, orders)
        if np.sum(bound[sq > (radius - 1.0) ** 2]) <= _SHELL:
            break
        radius += _RADIUS_STEP
    keep = _negligible_dropped(bound, _TAIL)
    return NeuronRule(values[keep], weights[keep], r, False, even_only=symmetric)


def _activations(phi, g: np.ndarray, L: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``phi(L g)`` at nodes ``g (Q, r)``: ``(Q, P)``, in blocks of one fixed shape."""
    Q, P = len(g), len(L)
    size = min(_CHUNK, 1 << max(0, Q - 1).bit_length())  # one compiled shape per power of 2
    out = np.empty((Q, P))
    pad = np.zeros((size, P))
    for start in range(0, Q, size):
        block = g[start : start + size] @ L.T
        pad[: len(block)] = block
        pad[len(block) :] = 0.0
        out[start : start + len(block)] = _activation(phi, pad, q)[: len(block)]
    return out


def _odd_or_even(phi, g: np.ndarray, L: np.ndarray, q: np.ndarray) -> bool:
    """Whether ``phi(-z) = +-phi(z)`` (to rounding) at an evenly strided sample of the nodes."""
    sample = g[:: max(1, len(g) // _CHUNK)]
    plus = _activations(phi, sample, L, q)
    minus = _activations(phi, -sample, L, q)
    scale = 4 * np.finfo(np.float64).eps * np.abs(plus)
    return bool(np.all(np.abs(minus + plus) <= scale) or np.all(np.abs(minus - plus) <= scale))


def _contribution_bound(values: np.ndarray, weights: np.ndarray, orders) -> np.ndarray:
    """Per node ``max_n w_q max_k |phi_qk|^n / max_k E[phi_k^n]`` over the even orders
    ``2, 4, ...``: a bound on the node's share of every moment of order n, relative to the
    largest one (a diagonal moment, by Hoelder)."""
    diag = np.zeros((len(orders), values.shape[1]))
    for start in range(0, len(weights), _CHUNK):  # blocks bound the memory
        square = values[start : start + _CHUNK] ** 2
        power = square.copy()
        for i in range(len(orders)):
            diag[i] += weights[start : start + _CHUNK] @ power
            power *= square
    largest = np.max(diag, axis=1)
    top = np.max(values * values, axis=1)
    power, bound = top.copy(), np.zeros_like(weights)
    for i in range(len(orders)):
        if largest[i] > 0:
            np.maximum(bound, power / largest[i], out=bound)
        power *= top
    return weights * bound


def _negligible_dropped(bound: np.ndarray, tol: float) -> np.ndarray:
    """Mask keeping all but the smallest contributions, which add up to at most ``tol``.

    Bins the bounds by powers of 2 (O(Q), no sort) and drops whole bins from the bottom.
    """
    with np.errstate(divide="ignore"):
        level = np.clip(np.floor(np.log2(bound)), -1100, 64).astype(np.int64) + 1100
    mass = np.cumsum(np.bincount(level, weights=bound, minlength=1165))
    cut = int(np.searchsorted(mass, tol, side="right"))  # bins [0, cut) add up to <= tol
    return level >= cut


# ------------------------------------------------------------ positively homogeneous
def _sphere_rule(L: np.ndarray, check: bool) -> tuple[np.ndarray, np.ndarray]:
    """Angular rule on ``S^(r-1)`` split at the kinks ``L_k . omega = 0``: ``(Q, r)``, ``(Q,)``."""
    r = L.shape[1]
    if r == 1:
        return np.array([[1.0], [-1.0]]), np.array([0.5, 0.5])
    if r == 2:
        kinks = np.arctan2(L[:, 1], L[:, 0])[:, None] + np.array([0.5, -0.5]) * np.pi
        phi, w = legendre_on_intervals(_sorted_breaks(kinks.ravel()), _ARC_NODES[check])
        return np.stack([np.cos(phi), np.sin(phi)], axis=1), w / (2 * np.pi)
    if r == 3:
        return _sphere3_rule(L, check)
    raise NotImplementedError(
        f"exact ReLU moments are implemented for Gaussian dimension r <= 3 (d_in <= 2, or "
        f"d_in = 3 with sb0 = 0 or with at most 3 inputs); got r = {r}"
    )


def _sorted_breaks(angles: np.ndarray) -> np.ndarray:
    """Angles mod 2 pi, with the quarter turns 0, pi/2, pi, 3 pi/2, 2 pi added (so that no arc
    is longer than pi/2), sorted along the last axis."""
    wrapped = np.mod(angles, 2 * np.pi)
    quarters = np.arange(5) * (np.pi / 2)
    ends = np.broadcast_to(quarters, wrapped.shape[:-1] + (5,))
    return np.sort(np.concatenate([wrapped, ends], axis=-1), axis=-1)


def _kink_crossings(L: np.ndarray) -> np.ndarray:
    """Polar angles (from axis 0) of the points where two kink circles ``L_a . omega = 0``
    and ``L_b . omega = 0`` cross: ``+-(L_a x L_b) / |L_a x L_b|``."""
    a, b = np.triu_indices(len(L), k=1)
    n = np.cross(L[a], L[b])
    norm = np.linalg.norm(n, axis=1)
    ok = norm > 1e-12 * np.linalg.norm(L[a], axis=1) * np.linalg.norm(L[b], axis=1)
    t = np.arccos(np.clip(n[ok, 0] / norm[ok], -1.0, 1.0))
    return np.concatenate([t, np.pi - t])


def _sphere3_rule(L: np.ndarray, check: bool) -> tuple[np.ndarray, np.ndarray]:
    """``omega = (cos t, sin t cos p, sin t sin p)``, measure ``sin t dt dp / (4 pi)``."""
    a1, rho = np.abs(L[:, 0]), np.hypot(L[:, 1], L[:, 2])
    # Polar angles where a kink circle touches a latitude (there the azimuthal kinks appear)
    # and where two kink circles cross (there two azimuthal kinks swap).
    tangencies = np.arctan2(a1, rho)
    t_breaks = np.concatenate([[0.0, np.pi], tangencies, np.pi - tangencies, _kink_crossings(L)])
    t_breaks = np.unique(np.clip(t_breaks, 0.0, np.pi))
    t_breaks = t_breaks[np.concatenate([[True], np.diff(t_breaks) > 1e-15])]
    s, ws = np.polynomial.legendre.leggauss(_POLAR_NODES[check])
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
    p, wp = legendre_on_intervals(_sorted_breaks(roots.reshape(len(t), -1)), _ARC_NODES[check])
    st = np.sin(t)[:, None]
    omega = np.stack(
        [np.broadcast_to(np.cos(t)[:, None], p.shape), st * np.cos(p), st * np.sin(p)], axis=-1
    )
    weights = wt[:, None] * wp / (4 * np.pi)
    keep = weights.ravel() > 0  # zero-length arcs (absent kinks) carry no weight
    return omega.reshape(-1, 3)[keep], weights.ravel()[keep]
