"""Deep networks at order 1/n: the four-point vertex, the NLO kernel and criticality.

Layer l of an MLP has pre-activations ``z^(l)`` of width ``n_l``; ``z^(1) = b + W x`` with
``W ~ N(0, C_W^(1)/d)``, ``b ~ N(0, C_b^(1))`` and ``z^(l+1) = b + W s(z^(l))`` with
``W ~ N(0, C_W/n_l)``, ``b ~ N(0, C_b)``. For :class:`~nnqft_ppl.networks.architectures.MLP`,
``C_W^(1) = sw0^2``, ``C_b^(1) = sb0^2`` and ``C_W = sw1^2``, ``C_b = sb1^2`` for every later
layer, the scalar output being ``z^(L+1)`` for depth L.

Given layer l, the neurons of layer l+1 are independent centred Gaussians with the random
covariance ``G^(l+1)_ab = C_b + (C_W/n_l) sum_j s(z_j^(l)(x_a)) s(z_j^(l)(x_b))``. Everything
below follows from the statistics of ``G^(l)`` at large width:

* mean ``E[G^(l)] = K^(l) + K1^(l)/n + O(1/n^2)``, with ``K^(l)`` the Gaussian-process kernel;
* covariance ``Cov(G^(l)_ab, G^(l)_cd) = V^(l)_(ab)(cd) / n_(l-1) + O(1/n^2)``: ``V`` is the
  *four-point vertex*; the first layer is deterministic, ``V^(1) = 0``.

The output is Gaussian given ``G^(L+1)``, so its connected 4-pt function is exactly
``kappa_4(1234) = sum over the 3 pairings of Cov(G_12, G_34)``, i.e. at leading order
``(V_(12)(34) + V_(13)(24) + V_(14)(23)) / n_L``. Writing ``<.>_K`` for the expectation of one
neuron whose pre-activations are Gaussian with covariance K, and ``F_ab(G) = <s_a s_b>_G``,

    V^(l+1)_(ab)(cd) = C_W^2 [<s_a s_b s_c s_d>_K - <s_a s_b>_K <s_c s_d>_K]
                       + C_W^2 (n_l / n_(l-1)) sum_(u,v) J_ab[u] V^(l)[u, v] J_cd[v],
    K1^(l+1)_ab      = C_W [ sum_u J_ab[u] K1^(l)[u] + (1/2) sum_(u,v) H_ab[u, v] V^(l)[u, v] ]

(equal widths in the second line), with ``K = K^(l)``. The first term of V is the
same-neuron covariance, the second the propagation of the previous layer's fluctuations
through the layer map; the NLO kernel is the second-order Taylor expansion of
``E[F(G^(l))]`` around ``K^(l)``.

Convention for J and H. ``u, v`` run over the *unique* entries ``a <= b`` of a symmetric
matrix, and ``F`` is a function of those entries with ``G_ab = G_ba`` tied together:
``J_ab[u] = dF_ab/dG_u`` and ``H_ab[u, v] = d^2 F_ab / dG_u dG_v``. Then ``delta F = J . delta G``
and the sums above carry no extra factors (with the untied partials of a full matrix an
off-diagonal entry would count twice). ``F_ab`` depends on the three entries
``(G_aa, G_bb, G_ab)`` only; by Price's theorem, for the two-point map
``F(c11, c22, c12) = E[s(u) s(v)]``,

    dF/dc12 = <s'(u) s'(v)>,   dF/dc11 = (1/2) <s''(u) s(v)>,   dF/dc22 = (1/2) <s(u) s''(v)>,

(the off-diagonal derivative of the tied entry is the full mixed derivative, a diagonal one
half the second derivative), and likewise at second order, e.g.
``d^2F/dc11 dc12 = (1/2) <s'''(u) s'(v)>``, ``d^2F/dc11 dc22 = (1/4) <s''(u) s''(v)>``. A
diagonal pair ``a = b`` has ``F_aa(c) = F(c, c, c)``: its J is the sum of the three partials
and its H the sum of all nine second partials (the code scatters the partials onto the
unique entries ``(aa, bb, ab)``, so the repeated index sums them automatically).

How each piece is computed:

* ``K^(l)``: the activation's Gaussian two-point map where it has a closed form (erf, relu,
  linear, gauss), as :func:`nnqft_ppl.networks.kernels.kernel`; otherwise the smooth rule below
  (more accurate than the library's 80-node Gauss--Hermite default). In the first layer,
  when the exact single-layer rule applies (input rank ``r = d + 1`` small enough), the
  first layer's two- and four-point expectations come from that same rule, so depth 1
  reproduces the exact single-layer cumulant to rounding.
* ``<s_a s_b s_c s_d>_K``: only the inputs present matter, so the (up to) 4-dimensional
  Gaussian of each subset of at most 4 distinct inputs is integrated once, all subsets of a
  size at once, and the results are gathered into the ``(M2, M2)`` pair-pair matrix
  (``M2 = P (P + 1) / 2``). Linear: Isserlis. Gauss-net: closed form. ReLU: its positive
  homogeneity splits ``z = R L omega`` into a radial moment and an angular average whose
  integrand is piecewise polynomial between the great circles ``L_j . omega = 0``; for up to
  3 distinct inputs the angular rule is split at those circles (2 inputs: exact to
  rounding; 3 inputs: relative error ~1e-8); for 4 distinct inputs the fourth pre-activation
  is integrated out exactly given the other three (``E[relu(z4) | z1..3]`` is the closed-form
  ramp ``mu Phi(mu/sigma) + sigma phi(mu/sigma)``, and its radial moment is elementary too),
  leaving the same 3-input angular rule. Smooth activations (erf, tanh, user-defined): a
  tensor rule in the subset's principal axes, sized per axis by its standard deviation sd:
  a trapezoid rule with step ``min(0.55, 0.33 / sd)`` on ``[-8.6, 8.6]`` (exponentially
  convergent for integrands analytic in a strip, and unlike Gauss--Hermite not slowed down
  by saturation at large variance), or 16-node Gauss--Hermite for ``sd <= 0.25``; relative
  accuracy ~1e-9 (``docs/deep_networks.md``). The step stops shrinking at pre-activation
  variances above ~25, where the accuracy degrades.
* J, H: JAX autodiff of the closed-form two-point map (erf, linear; gauss never needs them),
  hand-derived closed forms for ReLU (its map is singular where ``|rho| = 1``: there the
  fluctuations of ``G`` stay on the set ``|rho| = 1`` on which ReLU's map is linear, so
  H is set to 0 and J to its one-sided limit), and Price's theorem with the smooth rule
  above applied to the derivatives of ``s`` (by autodiff) for everything else, including
  the kernel itself when the activation has no closed form.
  :func:`pair_map_derivatives` exposes both routes so they can be compared.

Everything here computes in float64 whatever the global JAX setting.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from scipy import optimize

from ..core.multisets import (
    diagonal_ranks,
    index_multisets,
    multiset_rank,
    pair_matrix,
    tuple_labels,
    union_ranks,
)
from ..core.precision import float64
from ..core.quadrature import legendre_on_intervals
from ..core.tuples import tuple_array
from ..core.validation import check_inputs, check_order, check_positive_int, check_width
from ..networks.activations import Activation, ReLU, get_activation
from ..networks.architectures import MLP, hidden_widths
from ..oracle.exact import first_layer_moments

__all__ = [
    "four_point_vertex",
    "perturbative_cumulant",
    "nlo_kernel",
    "NLOKernel",
    "pair_map_derivatives",
    "gaussian_four_point",
    "kernel_fixed_point",
    "chi_parallel",
    "chi_perpendicular",
    "is_critical",
    "critical_initialization",
    "Initialization",
    "vertex_growth",
]

#: Smooth activations: per principal axis of standard deviation sd, a trapezoid rule with
#: step ``min(_TRAP_MAX_STEP, _TRAP_SCALE / sd)`` on ``[-_TRAP_RADIUS, _TRAP_RADIUS]``, or a
#: short Gauss--Hermite rule when ``sd <= _SMALL_AXIS`` (nearly polynomial direction).
_TRAP_RADIUS = 8.6
_TRAP_SCALE = 0.33
_TRAP_MAX_STEP = 0.55
_TRAP_MAX_HALF = 128
_SMALL_AXIS = 0.25
_SMALL_AXIS_NODES = 16
#: Tensor-rule nodes whose weight is below this fraction of the largest are dropped.
_PRUNE = 1e-13
#: Angular rules for ReLU: Gauss--Legendre nodes per smooth arc / per polar piece.
_ARC_NODES = 24
_POLAR_NODES = 96
#: (subset x node) evaluations per block of a tensor rule (bounds memory).
_NODE_BLOCK = 1 << 20
_BLOCK_SIZES = (1 << 12, 1 << 16, _NODE_BLOCK)
#: |rho| above this counts as the boundary |rho| = 1 for ReLU's two-point derivatives.
_RHO_EDGE = 1.0 - 1e-12


# ============================================================================ validation
def _hidden_widths(arch: MLP, width) -> np.ndarray:
    return np.array(hidden_widths(arch, width), dtype=np.int64)


def _width_attr(width):
    return [int(w) for w in np.ravel(width)] if np.iterable(width) else int(width)


def _check_arch(arch) -> MLP:
    if not isinstance(arch, MLP):
        raise ValueError(f"arch must be an MLP architecture, got {type(arch).__name__}")
    return arch


def _as_activation(activation) -> Activation:
    act = activation if isinstance(activation, Activation) else get_activation(activation)
    if act.needs_variance:
        raise ValueError(
            f"activation {act.name!r} normalises by the pre-activation variance and has no "
            "layer-to-layer recursion (depth 1 only)"
        )
    return act


# ============================================================================ pair tables
class _Pairs(NamedTuple):
    """Index tables for the unique pairs ``a <= b`` of P inputs."""

    pairs: np.ndarray  # (M2, 2)
    diag: np.ndarray  # (P,) rank of (a, a)
    entries: np.ndarray  # (M2, 3) ranks of (aa, bb, ab): the entries F_ab depends on
    quads: np.ndarray  # (M2, M2) rank of the 4-multiset ab u cd


@functools.cache
def _pair_tables(P: int) -> _Pairs:
    pairs = index_multisets(P, 2)
    diag = diagonal_ranks(P, 2)
    a, b = pairs.T
    entries = np.stack([diag[a], diag[b], np.arange(len(pairs))], axis=-1)
    return _Pairs(pairs, diag, entries, union_ranks(P, 2, 2))


# ============================================================================ two-point map
def _two_point(act: Activation, K: np.ndarray) -> np.ndarray:
    """``<s_a s_b>_K`` on the unique pairs ``(M2,)``: closed form, else the smooth rule."""
    P = K.shape[0]
    pairs = index_multisets(P, 2)
    a, b = pairs.T
    d = np.diag(K)
    if _overrides_gaussian_product(act):
        return np.asarray(act.gaussian_product(d[a], d[b], K[a, b]), dtype=np.float64)
    C = K[pairs[:, :, None], pairs[:, None, :]]
    return _smooth_expectations(C, _integrand(act, "pair"), 1)[:, 0]


def _overrides_gaussian_product(act: Activation) -> bool:
    return type(act).gaussian_product is not Activation.gaussian_product


@float64
def pair_map_derivatives(activation, c11, c22, c12, method: str = "auto"):
    """First and second derivatives of the two-point map ``F = E[s(u) s(v)]``.

    ``(u, v)`` is centred Gaussian with variances ``c11, c22`` and covariance ``c12``; the
    derivatives are with respect to ``(c11, c22, c12)``, ``c12`` being the single symmetric
    entry (so ``dF/dc12 = <s'(u) s'(v)>``, ``dF/dc11 = <s''(u) s(v)> / 2``: Price's theorem).

    Args:
        activation: name or :class:`~nnqft_ppl.networks.activations.Activation`.
        c11, c22, c12: arrays of one shape ``S``.
        method: ``"autodiff"`` (JAX derivatives of the activation's ``gaussian_product``;
            for an activation without a closed form that is its fixed-node quadrature),
            ``"price"`` (Price's theorem: Gaussian expectations of the derivatives of s, by
            autodiff, with the adaptive smooth rule), ``"relu"`` (closed forms, ReLU only;
            finite limits where ``|rho| = 1``) or
            ``"auto"`` (relu for ReLU, autodiff for other closed forms, price otherwise).

    Returns:
        ``(grad (*S, 3), hess (*S, 3, 3))`` float64 arrays.

    Example:
        >>> g, h = pair_map_derivatives("relu", 1.0, 1.0, 0.0)
        >>> g  # [sqrt(c22/c11) sin(t)/(4 pi), same, (pi - t)/(2 pi)] at t = pi/2
        array([0.07957747, 0.07957747, 0.25      ])
    """
    act = _as_activation(activation)
    c = np.stack(np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (c11, c22, c12))))
    shape = c.shape[1:]
    flat = c.reshape(3, -1).T  # (S, 3)
    if method == "auto":
        if isinstance(act, ReLU):
            method = "relu"
        elif _overrides_gaussian_product(act):
            method = "autodiff"
        else:
            method = "price"
    if method == "autodiff":
        grad, hess = _autodiff_derivatives(act, flat)
    elif method == "price":
        grad, hess = _price_derivatives(act, flat)
    elif method == "relu":
        if not isinstance(act, ReLU):
            raise ValueError(f"method='relu' is for the ReLU activation, got {act.name!r}")
        grad, hess = _relu_derivatives(flat)
    else:
        raise ValueError(f"method must be 'auto', 'autodiff', 'price' or 'relu', got {method!r}")
    return grad.reshape(*shape, 3), hess.reshape(*shape, 3, 3)


@functools.cache
def _autodiff_functions(act: Activation):
    def f(v):
        return act.gaussian_product(v[0], v[1], v[2])

    return jax.jit(jax.vmap(jax.grad(f))), jax.jit(jax.vmap(jax.hessian(f)))


def _autodiff_derivatives(act: Activation, c: np.ndarray):
    grad, hess = _autodiff_functions(act)
    cj = jnp.asarray(c)
    return np.asarray(grad(cj)), np.asarray(hess(cj))


def _derivatives(act: Activation, order: int):
    """``[s, s', ..., s^(order)]`` as elementwise JAX functions (autodiff of ``act``)."""
    scalar = [lambda z: act(z, None)]
    for _ in range(order):
        scalar.append(jax.grad(scalar[-1]))
    return [lambda z: act(z, None)] + [jnp.vectorize(f) for f in scalar[1:]]


@functools.cache
def _integrand(act: Activation, kind: str, patterns: tuple = ()):
    """Jitted integrands ``z (B, k) -> (B, n_out)`` (cached: compiled once per shape).

    ``"pair"``: ``s(z_0) s(z_1)``; ``"price"``: the products of derivatives in
    ``_PRICE_TERMS``; ``"moments"``: ``prod_j s(z_j)^(m_j)`` for each pattern m.
    """
    if kind == "pair":

        def f(z):
            v = act(z, None)
            return (v[..., 0] * v[..., 1])[..., None]

    elif kind == "price":
        d = _derivatives(act, 4)

        def f(z):
            u = [g(z[..., 0]) for g in d]
            v = [g(z[..., 1]) for g in d]
            return jnp.stack([u[i] * v[j] for i, j in _PRICE_TERMS], axis=-1)

    else:
        powers = [np.asarray(m) for m in patterns]

        def f(z):
            v = act(z, None)
            return jnp.stack([jnp.prod(v**m, axis=-1) for m in powers], axis=-1)

    return jax.jit(f)


#: Price's theorem: (i, j) with E[s^(i)(u) s^(j)(v)], and the factor, for each of the 3
#: first and 6 second partials of F(c11, c22, c12).
_PRICE_TERMS = ((2, 0), (0, 2), (1, 1), (4, 0), (0, 4), (2, 2), (3, 1), (1, 3))


def _price_derivatives(act: Activation, c: np.ndarray):
    C = np.stack([np.stack([c[:, 0], c[:, 2]], -1), np.stack([c[:, 2], c[:, 1]], -1)], -2)
    E = _smooth_expectations(C, _integrand(act, "price"), len(_PRICE_TERMS))
    e20, e02, e11, e40, e04, e22, e31, e13 = E.T
    grad = np.stack([0.5 * e20, 0.5 * e02, e11], axis=-1)
    h00, h11, h22 = 0.25 * e40, 0.25 * e04, e22
    h01, h02, h12 = 0.25 * e22, 0.5 * e31, 0.5 * e13
    hess = np.stack(
        [
            np.stack([h00, h01, h02], -1),
            np.stack([h01, h11, h12], -1),
            np.stack([h02, h12, h22], -1),
        ],
        axis=-2,
    )
    return grad, hess


def _relu_derivatives(c: np.ndarray):
    """Closed-form Price derivatives of the arc-cosine map ``sqrt(c11 c22) k(rho) / (2 pi)``.

    With ``rho = cos t = c12 / sqrt(c11 c22)``: ``dF/dc12 = (pi - t)/(2 pi)``,
    ``dF/dc11 = sqrt(c22/c11) sin t / (4 pi)``, ``d2F/dc12^2 = 1 / (2 pi sqrt(c11 c22) sin t)``,
    ``d2F/dc11 dc12 = -rho / (4 pi c11 sin t)``, ``d2F/dc11^2 = sqrt(c22/c11) (2 rho^2 - 1) /
    (8 pi c11 sin t)``, ``d2F/dc11 dc22 = 1 / (8 pi sqrt(c11 c22) sin t)``. On the boundary
    ``|rho| = 1`` (and for a zero variance) F is linear along every admissible fluctuation
    (``F = c12 / 2`` for ``rho = 1``, ``0`` for ``rho = -1``): the gradient takes its finite
    limit and the Hessian is 0.
    """
    c11, c22, c12 = c.T
    norm = np.sqrt(np.clip(c11 * c22, 0.0, None))
    safe = np.where(norm > 0, norm, 1.0)
    rho = np.where(norm > 0, np.clip(c12 / safe, -1.0, 1.0), 1.0)
    t = np.arccos(rho)
    sin = np.sin(t)
    edge = (np.abs(rho) >= _RHO_EDGE) | (norm <= 0)
    s = np.where(edge, 1.0, sin)
    c11s, c22s = np.where(edge, 1.0, c11), np.where(edge, 1.0, c22)
    g12 = (np.pi - t) / (2 * np.pi)
    g11 = np.where(edge, 0.0, np.sqrt(c22s / c11s) * sin / (4 * np.pi))
    g22 = np.where(edge, 0.0, np.sqrt(c11s / c22s) * sin / (4 * np.pi))
    g12 = np.where(edge, np.where(rho > 0, 0.5, 0.0), g12)
    ns = np.where(edge, 1.0, norm)
    h22 = 1 / (2 * np.pi * ns * s)
    h02 = -rho / (4 * np.pi * c11s * s)
    h12 = -rho / (4 * np.pi * c22s * s)
    h00 = np.sqrt(c22s / c11s) * (2 * rho**2 - 1) / (8 * np.pi * c11s * s)
    h11 = np.sqrt(c11s / c22s) * (2 * rho**2 - 1) / (8 * np.pi * c22s * s)
    h01 = 1 / (8 * np.pi * ns * s)
    hess = np.stack(
        [
            np.stack([h00, h01, h02], -1),
            np.stack([h01, h11, h12], -1),
            np.stack([h02, h12, h22], -1),
        ],
        axis=-2,
    )
    hess = np.where(edge[:, None, None], 0.0, hess)
    return np.stack([g11, g22, g12], axis=-1), hess


def _tied_jacobian(grad: np.ndarray, tables: _Pairs) -> np.ndarray:
    """``J (M2, M2)``: ``J[p, u] = dF_p / dG_u`` over unique entries (partials scattered)."""
    M2 = len(tables.pairs)
    J = np.zeros((M2, M2))
    np.add.at(J, (np.arange(M2)[:, None], tables.entries), grad)
    return J


def _hessian_contraction(hess: np.ndarray, V: np.ndarray, tables: _Pairs) -> np.ndarray:
    """``sum_(u,v) H_p[u, v] V[u, v]`` for every pair p: ``(M2,)``."""
    e = tables.entries
    return np.einsum("pij,pij->p", hess, V[e[:, :, None], e[:, None, :]])


# ============================================================================ 4-pt expectations
_PATTERNS = {
    1: [(4,)],
    2: [(3, 1), (2, 2), (1, 3)],
    3: [(2, 1, 1), (1, 2, 1), (1, 1, 2)],
    4: [(1, 1, 1, 1)],
}


def _pattern_ranks(subsets: np.ndarray, pattern: tuple[int, ...], P: int) -> np.ndarray:
    """Rank among 4-multisets of ``subset`` repeated by ``pattern``: ``(S,)``."""
    cols = np.repeat(np.arange(len(pattern)), pattern)
    return multiset_rank(subsets[:, cols], P)


def _subset_factors(K: np.ndarray, subsets: np.ndarray) -> np.ndarray:
    """Symmetric square roots ``L (S, k, k)`` (principal axes) of the subsets' covariances."""
    Ks = K[subsets[:, :, None], subsets[:, None, :]]
    w, U = np.linalg.eigh(Ks)
    return U * np.sqrt(np.clip(w, 0.0, None))[:, None, :]


def _axis_key(sd: np.ndarray) -> np.ndarray:
    """Rule code per principal axis: 0 one node, -1 short Gauss--Hermite, m > 0 trapezoid
    with ``2m + 1`` nodes (m rounded up to a multiple of 4 so that few distinct rules occur)."""
    step = np.minimum(_TRAP_MAX_STEP, _TRAP_SCALE / np.maximum(sd, 1e-300))
    half = np.minimum(4 * np.ceil(_TRAP_RADIUS / step / 4), _TRAP_MAX_HALF).astype(np.int64)
    scale = np.max(sd, axis=-1, keepdims=True)
    return np.where(sd <= 1e-7 * np.maximum(scale, 1.0), 0, np.where(sd <= _SMALL_AXIS, -1, half))


@functools.cache
def _axis_rule(key: int) -> tuple[np.ndarray, np.ndarray]:
    if key == 0:
        return np.zeros(1), np.ones(1)
    if key < 0:
        x, w = np.polynomial.hermite_e.hermegauss(_SMALL_AXIS_NODES)
        return x, w / w.sum()
    x = np.linspace(-_TRAP_RADIUS, _TRAP_RADIUS, 2 * key + 1)
    w = np.exp(-0.5 * x**2)
    return x, w / w.sum()


@functools.cache
def _tensor_rule(keys: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Product of the axis rules, nodes below ``_PRUNE`` of the largest weight dropped
    (pruned axis by axis, so the full grid is never built)."""
    nodes, weights = np.zeros((1, 0)), np.ones(1)
    for key in keys:
        x, w = _axis_rule(key)
        w = w / w.max()
        prod = weights[:, None] * w[None, :]
        keep = prod > _PRUNE
        i, j = np.nonzero(keep)
        nodes = np.concatenate([nodes[i], x[j, None]], axis=1)
        weights = prod[keep]
    return nodes, weights / weights.sum()


def _smooth_expectations(C: np.ndarray, integrand, n_out: int) -> np.ndarray:
    """``E[integrand(z)]`` for ``z ~ N(0, C_s)``, each of S covariances ``C (S, k, k)``.

    The Gaussian is integrated in its principal axes with a per-axis rule sized to that
    axis' standard deviation (:func:`_axis_key`); subsets that need the same rules are done
    together. ``integrand``: JAX function ``z (B, k) -> (B, n_out)``, evaluated jitted on
    blocks of a fixed size (one compilation per k). Returns ``(S, n_out)``.
    """
    S, k, _ = C.shape
    w, U = np.linalg.eigh(C)
    w, U = w[:, ::-1], U[:, :, ::-1]  # descending
    sd = np.sqrt(np.clip(w, 0.0, None))
    L = U * sd[:, None, :]
    keys = _axis_key(sd)
    f = integrand
    out = np.empty((S, n_out))
    groups, inverse = np.unique(keys, axis=0, return_inverse=True)
    for g, key in enumerate(groups):  # one tensor rule per group of subsets
        members = np.flatnonzero(inverse.ravel() == g)
        nodes, weights = _tensor_rule(tuple(int(x) for x in key))
        Lg = L[members]
        total = np.zeros((len(members), n_out))
        block = max(1, _NODE_BLOCK // len(members))
        for lo in range(0, len(weights), block):
            z = np.einsum("qj,sij->sqi", nodes[lo : lo + block], Lg)
            vals = _blocked(f, z.reshape(-1, k), n_out).reshape(z.shape[0], z.shape[1], n_out)
            total += np.einsum("sqo,q->so", vals, weights[lo : lo + block])
        out[members] = total
    return out


def _blocked(f, z: np.ndarray, n_out: int) -> np.ndarray:
    """``f(z)`` on rows of ``z (R, k)``, in zero-padded blocks of one of ``_BLOCK_SIZES``."""
    R = z.shape[0]
    size = next((b for b in _BLOCK_SIZES if b >= R), _BLOCK_SIZES[-1])  # few compilations
    out = np.empty((R, n_out))
    for lo in range(0, R, size):
        chunk = z[lo : lo + size]
        if len(chunk) < size:
            chunk = np.concatenate([chunk, np.zeros((size - len(chunk), z.shape[1]))])
        out[lo : lo + size] = np.asarray(f(jnp.asarray(chunk)))[: min(size, R - lo)]
    return out


def _smooth_subset_moments(act: Activation, K: np.ndarray, subsets, patterns) -> np.ndarray:
    """``E[prod_j s(z_j)^(m_j)]`` over each subset's Gaussian: ``(S, n_patterns)``."""
    Ks = K[subsets[:, :, None], subsets[:, None, :]]
    f = _integrand(act, "moments", tuple(tuple(m) for m in patterns))
    return _smooth_expectations(Ks, f, len(patterns))


# --------------------------------------------------------------------- ReLU angular rules
def _sorted_breaks(angles: np.ndarray) -> np.ndarray:
    wrapped = np.mod(angles, 2 * np.pi)
    ends = np.broadcast_to(np.array([0.0, 2 * np.pi]), wrapped.shape[:-1] + (2,))
    return np.sort(np.concatenate([wrapped, ends], axis=-1), axis=-1)


def _circle_rule(rows: np.ndarray):
    """Uniform average on S^1 split where ``rows_j . omega = 0``: ``omega (S, Q, 2), w (S, Q)``."""
    centre = np.arctan2(rows[..., 1], rows[..., 0])  # (S, J)
    kinks = centre[..., None] + np.array([0.5, -0.5]) * np.pi
    phi, w = legendre_on_intervals(_sorted_breaks(kinks.reshape(len(rows), -1)), _ARC_NODES)
    return np.stack([np.cos(phi), np.sin(phi)], axis=-1), w / (2 * np.pi)


def _sphere_rule(rows: np.ndarray):
    """Uniform average on S^2 split at the great circles ``rows_j . omega = 0``.

    ``omega = (cos t, sin t cos p, sin t sin p)``: the polar angle is split where a circle is
    tangent to a latitude (there its azimuthal crossings appear or merge), with a cosine map
    clustering nodes at both ends of each piece; at every polar node the azimuth is split at
    the crossings. Batched over S subsets with the same number J of circles (duplicate break
    points give empty intervals). Returns ``omega (S, Q, 3), w (S, Q)``.
    """
    S, J, _ = rows.shape
    a1, rho = np.abs(rows[..., 0]), np.hypot(rows[..., 1], rows[..., 2])
    tangency = np.arctan2(a1, rho)
    ends = np.broadcast_to(np.array([0.0, np.pi]), (S, 2))
    tb = np.sort(np.concatenate([ends, tangency, np.pi - tangency], axis=-1), axis=-1)
    s, ws = np.polynomial.legendre.leggauss(_POLAR_NODES)
    s, ws = 0.5 * (s + 1), 0.5 * ws
    a, b = tb[:, :-1, None], tb[:, 1:, None]
    t = (a + (b - a) * 0.5 * (1 - np.cos(np.pi * s))).reshape(S, -1)
    wt = ((b - a) * 0.5 * np.pi * np.sin(np.pi * s) * ws).reshape(S, -1) * np.sin(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = -rows[:, None, :, 0] * np.cos(t)[..., None] / (rho[:, None, :] * np.sin(t)[..., None])
    has_roots = np.abs(c) <= 1
    half = np.arccos(np.clip(np.nan_to_num(c), -1, 1))
    centre = np.arctan2(rows[..., 2], rows[..., 1])[:, None, :]
    roots = np.where(
        has_roots[..., None], centre[..., None] + np.stack([half, -half], axis=-1), 0.0
    )
    p, wp = legendre_on_intervals(_sorted_breaks(roots.reshape(S, t.shape[1], -1)), _ARC_NODES)
    st = np.sin(t)[..., None]
    omega = np.stack(
        [np.broadcast_to(np.cos(t)[..., None], p.shape), st * np.cos(p), st * np.sin(p)], -1
    )
    weights = wt[..., None] * wp / (4 * np.pi)
    return omega.reshape(S, -1, 3), weights.reshape(S, -1)


def _chi_moment(r: int, n: int) -> float:
    """``E[R^n]`` for the length R of a standard Gaussian vector in r dimensions."""
    return 2 ** (n / 2) * math.gamma((r + n) / 2) / math.gamma(r / 2)


def _ramp_radial(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """``E[R^3 ramp(R mu, sigma)]`` for R ~ chi_3, ``ramp(m, s) = E[relu(m + s eps)]``.

    ``ramp(m, s) = m Phi(m/s) + s phi(m/s)``. With ``a = mu / sigma``,
    ``int_0^inf R^6 e^(-R^2/2) Phi(a R) dR = (15/2) sqrt(pi/2) + (48/sqrt(2 pi)) C6(atan a)``,
    ``C6(th) = int_0^th cos^6 = 5 th/16 + 15 sin(2th)/64 + 3 sin(4th)/64 + sin(6th)/192``, and
    ``int_0^inf R^5 e^(-R^2/2) phi(a R) dR = 8 / (sqrt(2 pi) (1 + a^2)^3)``.
    """
    with np.errstate(over="ignore", divide="ignore"):
        a = mu / np.maximum(sigma, 1e-300)
        tail = np.where(np.isfinite(a), 8 / (np.sqrt(2 * np.pi) * (1 + a**2) ** 3), 0.0)
    th = np.arctan(a)
    c6 = 5 * th / 16 + 15 * np.sin(2 * th) / 64 + 3 * np.sin(4 * th) / 64 + np.sin(6 * th) / 192
    T = 7.5 * np.sqrt(np.pi / 2) + 48 / np.sqrt(2 * np.pi) * c6
    return np.sqrt(2 / np.pi) * (mu * T + sigma * tail)


def _relu_subset_moments(K: np.ndarray, subsets: np.ndarray, patterns) -> np.ndarray:
    """ReLU ``E[prod_j relu(z_j)^(m_j)]`` over each k-subset: ``(S, n_patterns)``."""
    S, k = subsets.shape
    if k == 1:
        return 1.5 * K[subsets[:, 0], subsets[:, 0]][:, None] ** 2
    L = _subset_factors(K, subsets)
    if k in (2, 3):
        omega, w = (_circle_rule if k == 2 else _sphere_rule)(L)
        vals = np.maximum(np.einsum("sqj,sij->sqi", omega, L), 0.0)
        rows = [np.einsum("sq,sq->s", w, np.prod(vals ** np.array(m), -1)) for m in patterns]
        return _chi_moment(k, 4) * np.stack(rows, axis=-1)
    # k == 4: integrate the best-determined input out given the other three.
    Ks = K[subsets[:, :, None], subsets[:, None, :]]
    cond_var = np.empty((S, 4))
    for i in range(4):  # loop over the 4 positions, vectorised over subsets
        rest = [j for j in range(4) if j != i]
        k3 = Ks[:, rest, i]
        cond_var[:, i] = Ks[:, i, i] - np.einsum(
            "sj,sj->s", k3, np.einsum("sij,sj->si", np.linalg.pinv(Ks[:, rest][:, :, rest]), k3)
        )
    last = np.argmax(cond_var, axis=1)
    order = np.argsort(np.arange(4)[None, :] == last[:, None], axis=1, kind="stable")
    Ks = np.take_along_axis(np.take_along_axis(Ks, order[:, :, None], 1), order[:, None, :], 2)
    K3, k3, k44 = Ks[:, :3, :3], Ks[:, :3, 3], Ks[:, 3, 3]
    beta = np.einsum("sij,sj->si", np.linalg.pinv(K3, hermitian=True), k3)
    sigma = np.sqrt(np.clip(k44 - np.einsum("si,si->s", beta, k3), 0.0, None))
    w3, U3 = np.linalg.eigh(K3)
    L3 = U3 * np.sqrt(np.clip(w3, 0.0, None))[:, None, :]
    m = np.einsum("sij,si->sj", L3, beta)  # z4 | g = m . g + sigma eps
    omega, w = _sphere_rule(np.concatenate([L3, m[:, None, :]], axis=1))
    z3 = np.maximum(np.einsum("sqj,sij->sqi", omega, L3), 0.0)
    radial = _ramp_radial(np.einsum("sqj,sj->sq", omega, m), sigma[:, None])
    return np.einsum("sq,sq->s", w, np.prod(z3, -1) * radial)[:, None]


@float64
def gaussian_four_point(activation, K) -> np.ndarray:
    """``<s_a s_b s_c s_d>_K`` for every 4-multiset of P inputs, pre-activations ``N(0, K)``.

    Each subset of at most 4 distinct inputs is integrated once in its own dimension (see
    the module notes for the rules and their accuracy).

    Args:
        activation: name or :class:`~nnqft_ppl.networks.activations.Activation` (not Gauss-net).
        K: ``(P, P)`` covariance.

    Returns:
        ``(C(P+3, 4),)`` float64 array in :func:`~nnqft_ppl.core.multisets.index_multisets` order.

    Example:
        >>> gaussian_four_point("relu", [[1.0]])  # E[relu(z)^4] = 3/2
        array([1.5])
    """
    act = _as_activation(activation)
    K = np.asarray(K, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] == 0:
        raise ValueError(f"K must be a square (P, P) matrix, got shape {K.shape}")
    P = K.shape[0]
    if act.name == "linear":
        T = index_multisets(P, 4)
        i, j, k, l = T.T
        return K[i, j] * K[k, l] + K[i, k] * K[j, l] + K[i, l] * K[j, k]
    out = np.full(len(index_multisets(P, 4)), np.nan)
    for k in range(1, min(P, 4) + 1):
        subsets = np.array(list(itertools.combinations(range(P), k)), dtype=np.int64)
        patterns = _PATTERNS[k]
        if isinstance(act, ReLU):
            vals = _relu_subset_moments(K, subsets, patterns)
        else:
            vals = _smooth_subset_moments(act, K, subsets, patterns)
        for col, pattern in enumerate(patterns):
            out[_pattern_ranks(subsets, pattern, P)] = vals[:, col]
    return out


# ============================================================================ the recursion
class _Layer(NamedTuple):
    K: np.ndarray  # (P, P) GP kernel of this layer
    V: np.ndarray  # (M2, M2) four-point vertex
    dK: np.ndarray  # (M2,) 1/n shift of E[G] at the given widths (absolute)


def _first_layer_moments(arch: MLP, X: np.ndarray, K: np.ndarray):
    """``(E2 (M2,), E4 (M4,))`` of the first hidden layer (covariance ``K``): the exact
    oracle's rules, else the subset rules of any layer."""
    try:
        E = first_layer_moments(arch, X, 4)
    except NotImplementedError:
        return _two_point(arch.phi, K), gaussian_four_point(arch.phi, K)
    return E[2], E[4]


def _recursion(arch: MLP, X: np.ndarray, widths: np.ndarray, nlo: bool) -> list[_Layer]:
    """Layers ``1 .. L+1``: GP kernel, vertex and (optionally) the 1/n shift of the mean."""
    P = X.shape[0]
    tables = _pair_tables(P)
    M2 = len(tables.pairs)
    act = arch.phi
    CW, Cb = arch.sw1**2, arch.sb1**2
    K = arch.sb0**2 + arch.sw0**2 * (X @ X.T) / arch.d_in
    layers = [_Layer(K, np.zeros((M2, M2)), np.zeros(M2))]
    for l in range(1, arch.depth + 1):  # layer l -> l + 1
        V, dK = layers[-1].V, layers[-1].dK
        if l == 1:
            E2, E4 = _first_layer_moments(arch, X, K)
        else:
            E2, E4 = _two_point(act, K), gaussian_four_point(act, K)
        E4pp = E4[tables.quads]
        V_next = CW**2 * (E4pp - np.outer(E2, E2))
        dK_next = np.zeros(M2)
        if l > 1:  # V^(1) = 0 and dK^(1) = 0: the first layer has no fluctuation terms
            a, b = tables.pairs.T
            grad, hess = pair_map_derivatives(act, np.diag(K)[a], np.diag(K)[b], K[a, b])
            J = _tied_jacobian(grad, tables)
            ratio = widths[l - 1] / widths[l - 2]
            V_next = V_next + CW**2 * ratio * (J @ V @ J.T)
            if nlo:
                cov = V / widths[l - 2]  # Cov(G^(l)) at leading order
                dK_next = CW * (J @ dK + 0.5 * _hessian_contraction(hess, cov, tables))
        K = Cb + CW * pair_matrix(E2, P)
        layers.append(_Layer(K, V_next, dK_next))
    return layers


def _prepare(arch, X):
    arch = _check_arch(arch)
    return arch, check_inputs(X, arch.d_in)


# ============================================================================ public API
@float64
def four_point_vertex(arch: MLP, X, width=None) -> xr.Dataset:
    """The four-point vertex ``V^(l)`` and GP kernel ``K^(l)`` of every layer.

    ``V^(l)_(ab)(cd) = n_(l-1) Cov(G^(l)_ab, G^(l)_cd)`` at leading order in 1/n, for the
    hidden layers ``l = 1..L`` and the output ``l = L + 1`` (``V^(1) = 0``). With equal
    widths it does not depend on the width; unequal widths enter through ``n_l / n_(l-1)``.

    Args:
        arch: an :class:`~nnqft_ppl.networks.architectures.MLP` (any depth and activation).
        X: inputs ``(P, d_in)``.
        width: ``None`` or an int (equal widths), or a sequence of the L hidden widths.

    Returns:
        Dataset with ``V (layer, pair, pair_)`` and ``K (layer, pair)``; ``layer = 1..L+1``,
        ``pair`` the unique input pairs ``"a,b"`` (``a <= b``, multiset order).

    Example:
        >>> ds = four_point_vertex(MLP(depth=3, activation="relu"), X)
        >>> ds.V.sel(pair="0,0", pair_="0,0")  # grows linearly with l at criticality
    """
    arch, X = _prepare(arch, X)
    widths = np.ones(arch.depth, dtype=np.int64) if width is None else _hidden_widths(arch, width)
    layers = _recursion(arch, X, widths, nlo=False)
    P = X.shape[0]
    a, b = index_multisets(P, 2).T
    labels = tuple_labels(P, 2)
    return xr.Dataset(
        {
            "V": (("layer", "pair", "pair_"), np.stack([lay.V for lay in layers])),
            "K": (("layer", "pair"), np.stack([lay.K[a, b] for lay in layers])),
        },
        coords={"layer": np.arange(1, arch.depth + 2), "pair": labels, "pair_": labels},
        attrs={
            "architecture": arch.name,
            "width": "equal" if width is None else _width_attr(width),
            "definition": "V^(l)_(ab)(cd) = n_(l-1) Cov(G^(l)_ab, G^(l)_cd), leading order",
        },
    )


def _kappa4_from_vertex(V: np.ndarray, P: int) -> np.ndarray:
    """``V_(12)(34) + V_(13)(24) + V_(14)(23)`` for every 4-multiset: ``(M4,)``."""
    T = index_multisets(P, 4)

    def rank(i, j):
        return multiset_rank(T[:, [i, j]], P)

    return V[rank(0, 1), rank(2, 3)] + V[rank(0, 2), rank(1, 3)] + V[rank(0, 3), rank(1, 2)]


@float64
def perturbative_cumulant(arch: MLP, X, width, order: int = 4) -> xr.DataArray:
    """Leading-order (1/n) connected 4-pt function of an MLP of any depth.

    ``kappa_4(1234) = (V_(12)(34) + V_(13)(24) + V_(14)(23)) / n_L`` with the output vertex
    ``V^(L+1)`` of :func:`four_point_vertex`. For one hidden layer it is the exact
    finite-width cumulant (which is exactly 1/N); for deeper nets the neglected terms are
    O(1/n^2).

    Args:
        arch: the architecture.
        X: inputs ``(P, d_in)``.
        width: hidden width (int), or one width per hidden layer.
        order: 4 (the only order implemented).

    Returns:
        xarray over ``tuple`` (index multisets, labels ``"i,j,k,l"``), named ``kappa_4``, attrs
        ``order`` and ``width``: the format of :func:`nnqft_ppl.oracle.exact.exact_cumulant`.

    Example:
        >>> k4 = perturbative_cumulant(MLP(depth=3, activation="tanh"), X, width=32)
    """
    order = check_order(order)
    if order != 4:
        raise ValueError(f"order must be 4 (the 1/n vertex gives the 4-pt function), got {order}")
    arch, X = _prepare(arch, X)
    widths = _hidden_widths(arch, width)
    V = _recursion(arch, X, widths, nlo=False)[-1].V
    P = X.shape[0]
    return tuple_array(_kappa4_from_vertex(V, P) / widths[-1], P, 4, "kappa_4",
                       width=_width_attr(width))  # fmt: skip


class NLOKernel(NamedTuple):
    """The 2-pt function to next-to-leading order, ``E[f_a f_b] = K + K1 / n + O(1/n^2)``.

    Attributes:
        K: ``(P, P)`` Gaussian-process kernel of the output.
        K1: ``(P, P)`` the 1/n coefficient, ``n_L (E[f_a f_b] - K)`` at leading order (for
            equal widths it does not depend on n).
        G2: ``(P, P)`` ``K + K1 / n_L``, the prediction at the given width.
        width: the width(s) used.
    """

    K: np.ndarray
    K1: np.ndarray
    G2: np.ndarray
    width: int | list


@float64
def nlo_kernel(arch: MLP, X, width) -> NLOKernel:
    """The output 2-pt function including its leading 1/n correction.

    ``K1^(1) = 0``, ``K1^(l+1)_ab = C_W [sum_u J_ab[u] K1^(l)[u] + (1/2) sum_(u,v) H_ab[u,v]
    V^(l)[u,v]]`` (module notes for the tied-entry convention of J and H). It vanishes for
    one hidden layer (the GP kernel is exact there) and for deep linear nets; ReLU's
    diagonal is exactly linear, ``<s^2>_K = K/2``, so its K1 vanishes on the diagonal unless
    off-diagonal entries feed in (they do not: ``F_aa`` depends on ``G_aa`` only).

    Args:
        arch: the architecture.
        X: inputs ``(P, d_in)``.
        width: hidden width (int), or one width per hidden layer.

    Returns:
        :class:`NLOKernel`.

    Example:
        >>> out = nlo_kernel(MLP(depth=3, activation="relu", sb0=0.5, sb1=0.5), X, width=16)
        >>> out.K1  # n (E[f f] - K) at leading order
    """
    arch, X = _prepare(arch, X)
    widths = _hidden_widths(arch, width)
    last = _recursion(arch, X, widths, nlo=True)[-1]
    P = X.shape[0]
    K1 = pair_matrix(widths[-1] * last.dK, P)
    return NLOKernel(last.K, K1, last.K + K1 / widths[-1], _width_attr(width))


@float64
def vertex_growth(arch: MLP, X, depths, width) -> xr.DataArray:
    """Normalised diagonal vertex ``V_(aa)(aa) / (n K_aa^2)`` at the output, against depth.

    The ratio is a third of the output's excess kurtosis, ``kappa_4(aaaa) / (3 K_aa^2)``, at
    leading order. For ReLU at criticality (``sw1^2 = 2``, ``sb1 = 0``) it is exactly
    ``5 L / n``; for deep linear nets ``2 L / n``.

    Args:
        arch: the architecture; its depth is replaced by each entry of ``depths``.
        X: inputs ``(P, d_in)``; the ratio is reported for each input separately.
        depths: positive ints (numbers of hidden layers).
        width: hidden width n.

    Returns:
        xarray ``(depth, input)`` named ``vertex_ratio``.

    Example:
        >>> vertex_growth(MLP(activation="relu", sw0=2**0.5, sw1=2**0.5), [[1.0]], [1, 2, 3], 100)
    """
    arch, X = _prepare(arch, X)
    depths = np.array([check_positive_int(L, "depths") for L in np.atleast_1d(depths).tolist()])
    width = check_width(width)
    deepest = MLP(
        depth=int(depths.max()),
        activation=arch.activation,
        d_in=arch.d_in,
        sw0=arch.sw0,
        sb0=arch.sb0,
        sw1=arch.sw1,
        sb1=arch.sb1,
    )
    ds = four_point_vertex(deepest, X)
    P = X.shape[0]
    diag = _pair_tables(P).diag
    V = ds.V.values[:, diag, diag]  # (layer, input)
    Kd = ds.K.values[:, diag]
    ratio = V[depths] / (width * Kd[depths] ** 2)  # output of depth L is layer L + 1
    return xr.DataArray(
        ratio,
        dims=("depth", "input"),
        coords={"depth": depths, "input": np.arange(P)},
        name="vertex_ratio",
        attrs={"width": width, "definition": "V_(aa)(aa) / (n K_aa^2) at the output"},
    )


# ============================================================================ criticality
def _diagonal_map(act: Activation, K):
    """``<s(z)^2>`` for ``z ~ N(0, K)`` (vectorised): closed form, else the smooth rule."""
    K = np.asarray(K, dtype=np.float64)
    if _overrides_gaussian_product(act):
        return np.asarray(act.gaussian_product(K, K, K), dtype=np.float64)
    C = np.reshape(K, (-1, 1, 1))
    f = _integrand(act, "moments", ((2,),))
    return _smooth_expectations(C, f, 1)[:, 0].reshape(K.shape)


@float64
def kernel_fixed_point(activation, sw1: float, sb1: float, k0: float = 1.0) -> float:
    """Fixed point ``K*`` of the diagonal recursion ``K -> sb1^2 + sw1^2 <s(z)^2>_K``.

    The map is iterated from ``k0``: for an increasing map the iterates move monotonically
    to the nearest fixed point in the direction of ``map(k0) - k0``; that point is returned
    (found by bracketing and Brent's method, not by iterating). ``inf`` when the iterates
    grow without bound; ``k0`` itself when it is a fixed point (ReLU at criticality, where
    every K is one).

    Example:
        >>> kernel_fixed_point("relu", sw1=1.0, sb1=1.0)  # C_b / (1 - C_W / 2)
        2.0
    """
    act = _as_activation(activation)
    CW, Cb = _scale(sw1, "sw1") ** 2, _scale(sb1, "sb1") ** 2
    k0 = float(k0)
    if not math.isfinite(k0) or k0 < 0:
        raise ValueError(f"k0 must be a finite number >= 0, got {k0!r}")

    def g(K):
        return Cb + CW * _diagonal_map(act, K) - K

    g0 = float(g(k0))
    if abs(g0) <= 1e-13 * max(1.0, k0):
        return k0
    if g0 > 0:
        grid = k0 + max(k0, 1.0) * np.logspace(-12, 12, 481)
    else:
        grid = np.concatenate([k0 * (1 - np.logspace(-12, 0, 241))[:-1], [0.0]])
    vals = g(grid)
    hit = np.flatnonzero(np.sign(vals) != np.sign(g0))
    if hit.size == 0:
        return math.inf if g0 > 0 else 0.0
    i = hit[0]
    if vals[i] == 0:
        return float(grid[i])
    lo = k0 if i == 0 else grid[i - 1]
    return float(
        optimize.brentq(
            lambda K: float(g(K)), min(lo, grid[i]), max(lo, grid[i]), xtol=1e-15, rtol=1e-14
        )
    )


def _scale(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _susceptibilities(act: Activation, CW: float, K: float) -> tuple[float, float]:
    grad, _ = pair_map_derivatives(act, K, K, K)
    return float(CW * grad.sum()), float(CW * grad[2])


@float64
def chi_parallel(activation, sw1: float, sb1: float, K: float | None = None) -> float:
    """Parallel susceptibility ``chi_par = C_W d<s^2>_K / dK = C_W <s'^2 + s s''>_K``.

    The slope of the diagonal recursion at ``K`` (default: :func:`kernel_fixed_point`); a
    small change of the variance grows by this factor per layer.

    Example:
        >>> chi_parallel("relu", 2**0.5, 0.0)
        1.0000000000000004
    """
    return _susceptibility(activation, sw1, sb1, K)[0]


@float64
def chi_perpendicular(activation, sw1: float, sb1: float, K: float | None = None) -> float:
    """Perpendicular susceptibility ``chi_perp = C_W <s'(z)^2>_K``.

    The derivative of the off-diagonal recursion ``K_12 -> C_b + C_W <s_1 s_2>`` at
    coincident inputs (``K_11 = K_22 = K_12 = K``, default the fixed point): how a small
    difference between two inputs grows (> 1, chaos) or shrinks (< 1, order) per layer.

    Example:
        >>> chi_perpendicular("tanh", 1.0, 0.0)
        1.0
    """
    return _susceptibility(activation, sw1, sb1, K)[1]


def _susceptibility(activation, sw1, sb1, K) -> tuple[float, float]:
    """``(chi_par, chi_perp)`` at ``K`` (default: the fixed point)."""
    act = _as_activation(activation)
    CW = _scale(sw1, "sw1") ** 2
    K = kernel_fixed_point(act, sw1, sb1) if K is None else float(K)
    return _susceptibilities(act, CW, K)


@float64
def is_critical(arch: MLP, tol: float = 1e-6) -> bool:
    """True when the later layers sit at criticality: ``chi_par = chi_perp = 1`` at ``K*``.

    ``K*`` is the fixed point reached from the first layer's variance at ``|x|^2 / d = 1``
    (:func:`kernel_fixed_point` with ``k0 = sb0^2 + sw0^2``). At criticality perturbations
    of the kernel neither grow nor decay exponentially with depth, only as powers: ReLU with
    ``sw1^2 = 2, sb1 = 0`` (every K is a fixed point), tanh with ``sw1 = 1, sb1 = 0``
    (``K* = 0``).

    Example:
        >>> is_critical(MLP(depth=5, activation="relu", sw1=2**0.5, sb1=0.0))
        True
    """
    arch = _check_arch(arch)
    act = _as_activation(arch.phi)
    K = kernel_fixed_point(act, arch.sw1, arch.sb1, k0=arch.sb0**2 + arch.sw0**2)
    if not math.isfinite(K):
        return False
    chi_par, chi_perp = _susceptibilities(act, arch.sw1**2, K)
    return bool(abs(chi_par - 1) <= tol and abs(chi_perp - 1) <= tol)


class Initialization(NamedTuple):
    """Weight and bias scales ``(sw1, sb1)`` of the hidden-to-hidden layers."""

    sw1: float
    sb1: float


@float64
def critical_initialization(activation) -> Initialization:
    """Scales ``(sw1, sb1)`` with ``chi_par = chi_perp = 1`` at the fixed point.

    Criticality needs both susceptibilities at 1 at the fixed point K*: ``chi_perp = 1``
    fixes ``C_W = 1 / <s'^2>_K*``; then ``chi_par = chi_perp`` needs ``<s s''>_K* = 0``, and
    ``C_b = K* - C_W <s^2>_K*`` must be ``>= 0``.

    * positively homogeneous activations (ReLU, linear): ``<s^2>_K`` is linear in K, so
      ``chi_par = chi_perp = C_W <s'^2>`` for every K: ``C_W = 1 / <s'^2>``, ``C_b = 0``
      (ReLU: ``sw1 = sqrt 2``);
    * ``s(0) = s''(0) = 0 != s'(0)`` (tanh, erf): ``K* = 0``, ``C_b = 0``,
      ``C_W = 1 / s'(0)^2`` (tanh: ``sw1 = 1``; erf: ``sw1 = sqrt(pi) / 2``);
    * otherwise the smallest ``K* > 0`` (up to 1e4) with ``<s s''>_K* = 0`` and ``C_b >= 0``
      (e.g. SWISH, GELU); if there is none but ``s(0) = 0``, the ``K* = 0`` point above
      (which is then only half-stable).

    Example:
        >>> critical_initialization("relu")
        Initialization(sw1=1.4142135623730951, sb1=0.0)
    """
    act = _as_activation(activation)
    if act.positively_homogeneous or act.name == "linear":
        grad, _ = pair_map_derivatives(act, 1.0, 1.0, 1.0)
        return Initialization(float(1 / math.sqrt(grad[2])), 0.0)
    d = _derivatives(act, 2)
    s0, ds0, dds0 = (float(f(jnp.asarray(0.0))) for f in d)
    if abs(s0) < 1e-15 and abs(dds0) < 1e-15 and abs(ds0) > 0:
        return Initialization(float(1 / abs(ds0)), 0.0)
    Ks = np.logspace(-6, 4, 201)
    grad, _ = pair_map_derivatives(act, Ks, Ks, Ks)
    s_s2 = grad[:, 0] + grad[:, 1]  # <s s''> = dF/dc11 + dF/dc22 at coincident points

    def f(K):
        g, _ = pair_map_derivatives(act, K, K, K)
        return float(g[0] + g[1])

    for i in np.flatnonzero(np.sign(s_s2[1:]) != np.sign(s_s2[:-1])):
        K_star = optimize.brentq(f, Ks[i], Ks[i + 1], xtol=1e-13, rtol=1e-13)
        g, _ = pair_map_derivatives(act, K_star, K_star, K_star)
        CW = 1 / float(g[2])
        Cb = K_star - CW * float(_diagonal_map(act, K_star))
        if Cb >= 0:
            return Initialization(math.sqrt(CW), math.sqrt(Cb))
    if abs(s0) < 1e-15 and abs(ds0) > 0:
        return Initialization(float(1 / abs(ds0)), 0.0)
    raise ValueError(
        f"activation {act.name!r}: no critical initialisation found (no K* with "
        "<s s''> = 0 and a non-negative bias variance)"
    )
