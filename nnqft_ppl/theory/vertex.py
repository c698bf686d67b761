"""Vertex integrals over the box cutoff with fixed quadrature rules (docs/physics.md §3).

An interaction vertex at ``y`` with ``n`` legs attached to the inputs of a multiset ``T``
gives the integral

    I_n(T; L) = int_{B_L} dy  w(y) prod_{k in T} K_int(x_k, y),     B_L = [-L, L]^d,

(``w = 1`` for a constant coupling, ``w = B_a`` for the basis functions of a coupling form).
All multisets and all cutoffs are done at once: one node set ``y_q`` (Q, d) and a weight matrix
``W (Q, C)`` whose column ``c`` integrates over ``B_{L_c}``. Then
``I_n = monomials(K_int(X, y_q))_n @ (w * W)``: one kernel evaluation per (input, node)
and one matrix product, never a quadrature per entry.

The rule. The box is cut into ``2d`` pyramids with apex at the origin, one per face
``y_j = +-s``: ``y = s (+-e_j + u)``, ``s in [0, L]`` (the sup-norm radius), ``u in [-1, 1]^(d-1)``,
``dy = s^(d-1) ds du``. Nested boxes are nested ``s``-intervals, so every cutoff is a partial
sum over the same nodes. Composite Gauss--Legendre in ``s`` and in each ``u`` coordinate, with
panel ends at every cutoff and wherever the kernel is not smooth:

* ReLU kernels (any depth) have ``|y - x_k|^3``-type points at ``y = x_k`` and, for
  ``sb0 = 0``, are non-smooth on the rays through ``+-x_k`` (the angle ``t`` between x and y hits 0
  or pi). In pyramid coordinates these rays are fixed points ``u_k`` of a face, so panel ends at
  the ``u_k`` (and at ``s = |x_k|_inf``) leave singularities only at panel corners, where
  Gauss--Legendre keeps high order. In d = 1 the rule is exact to rounding: with ``sb0 = 0``
  the integrand is a polynomial in ``s`` on each half line.
* Smooth kernels (erf, Gauss, tanh) need panels no wider than about half the kernel's length
  scale ``sqrt(d) / sw0``.

``cutoff=None`` is all of input space. It converges for Gauss-net only (its ``K_int`` is a
Gaussian in ``y - x``); there the rule is the box ``[-R, R]^d`` with
``R = max_k |x_k|_inf + 8 sqrt(d)/sw0``, outside of which every integrand with at least two
legs is below ``e^-64`` of its peak: the same as all of space to float64 (the tests check it
against the closed form). For erf, tanh and ReLU kernels ``K_int(x, y)`` tends to a non-zero
limit or grows as ``|y| -> inf`` and the integral diverges: a ValueError says so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..core.multisets import monomials
from ..core.precision import float64
from ..core.tuples import tuple_array
from ..core.validation import check_inputs, check_positive_float, check_positive_int
from ..networks.architectures import MLP
from ..networks.kernels import interaction_matrix

__all__ = [
    "VertexRule",
    "vertex_rule",
    "vertex_integral",
    "vertex_tensor",
    "parse_cutoffs",
    "integrals_converge",
    "node_values",
]

_NODE_CHUNK = 8192  # quadrature nodes per jit-compiled block (bounds memory for d = 3)
_TAIL_LENGTHS = 8.0  # all-space rule for Gauss-net: box half-width max|x| + 8 length scales
_DEFAULT_NODES = {1: 16, 2: 12, 3: 8}  # Gauss-Legendre nodes per panel and coordinate


@dataclass(frozen=True)
class VertexRule:
    """Quadrature nodes and per-cutoff weights for integrals over boxes ``[-L_c, L_c]^d``.

    Attributes:
        nodes: ``(Q, d)`` points y_q.
        weights: ``(Q, C)``; ``sum_q weights[q, c] g(y_q) ~= int_{B_{L_c}} g(y) dy``.
        cutoffs: ``(C,)`` the cutoffs L_c (``inf`` for all of input space).
    """

    nodes: np.ndarray
    weights: np.ndarray
    cutoffs: np.ndarray

    @property
    def n_nodes(self) -> int:
        return self.nodes.shape[0]


# --------------------------------------------------------------------------- cutoffs
def parse_cutoffs(cutoff) -> tuple[np.ndarray, bool]:
    """``cutoff`` (None, a number or a sequence) -> ``(float64 array (C,), is_sequence)``.

    ``None`` becomes ``[inf]`` (all of input space). Each cutoff must be finite and > 0.
    """
    if cutoff is None:
        return np.array([np.inf]), False
    is_sequence = not np.isscalar(cutoff) and np.ndim(cutoff) > 0
    values = np.atleast_1d(np.asarray(cutoff, dtype=object))
    if is_sequence and values.size == 0:
        raise ValueError("cutoff sequence is empty; give at least one cutoff L > 0")
    out = []
    for value in values.ravel():
        if value is None:
            raise ValueError("cutoff=None (all of input space) must be given alone, not in a list")
        out.append(check_positive_float(value, "cutoff", " (box [-L, L]^d)"))
    return np.array(out), is_sequence


# --------------------------------------------------------------------------- kernel
def _length_scale(arch: MLP) -> float:
    """The distance over which ``K(x, y)`` changes: ``sqrt(d) / sw0`` (inf when sw0 = 0)."""
    return math.sqrt(arch.d_in) / arch.sw0 if arch.sw0 > 0 else math.inf


def node_values(function, nodes: np.ndarray, name: str) -> np.ndarray:
    """``function(nodes)`` for nodes ``(Q, d)``, checked to be a float64 array ``(Q,)``."""
    values = np.asarray(function(nodes), dtype=np.float64)
    if values.shape != (nodes.shape[0],):
        raise ValueError(f"{name} must map nodes (Q, d) to shape (Q,), got {values.shape}")
    return values


def _has_kinks(arch: MLP) -> bool:
    return arch.phi.positively_homogeneous


def integrals_converge(arch: MLP) -> bool:
    """True when ``K_int(x, y) -> 0`` as ``|y| -> inf`` (Gauss-net): all-space integrals exist."""
    return arch.phi.propagator_decays and arch.sw0 > 0


# --------------------------------------------------------------------------- rules
@cache
def _gauss_legendre(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss--Legendre nodes and weights on [0, 1]."""
    x, w = np.polynomial.legendre.leggauss(m)
    return (x + 1) / 2, w / 2


def _composite(breaks: np.ndarray, max_width, m: int):
    """Composite Gauss--Legendre over sorted ``breaks``; panels no wider than ``max_width(a)``.

    Returns nodes, weights and the upper end of each node's panel (all ``(n,)``).
    """
    x, w = _gauss_legendre(m)
    nodes, weights, upper = [], [], []
    for a, b in itertools.pairwise(breaks):
        n_sub = max(1, math.ceil((b - a) / max_width(a) - 1e-9))
        edges = np.linspace(a, b, n_sub + 1)
        h = np.diff(edges)[:, None]
        nodes.append((edges[:-1, None] + h * x).ravel())
        weights.append((h * w).ravel())
        upper.append(np.repeat(edges[1:], m))
    if not nodes:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    return np.concatenate(nodes), np.concatenate(weights), np.concatenate(upper)


def _ray_points(X: np.ndarray, axis: int, sign: int) -> np.ndarray:
    """Face coordinates ``u`` where the rays through ``+-x_k`` cross the face ``y_axis = +-s``."""
    V = np.concatenate([X, -X])
    norm = np.abs(V).max(axis=1)
    V, norm = V[norm > 0], norm[norm > 0]
    hits = sign * V[:, axis] >= norm * (1 - 1e-12)
    others = np.delete(V[hits] / norm[hits, None], axis, axis=1)
    return others  # (n_hits, d - 1)


def _tensor_grid(rules) -> tuple[np.ndarray, np.ndarray]:
    """Tensor product of 1-d rules ``[(nodes, weights)]``: nodes ``(N, k)``, weights ``(N,)``."""
    if not rules:
        return np.zeros((1, 0)), np.ones(1)
    grids = np.meshgrid(*(r[0] for r in rules), indexing="ij")
    wgrids = np.meshgrid(*(r[1] for r in rules), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=1)
    return nodes, np.prod(np.stack([w.ravel() for w in wgrids], axis=1), axis=1)


def vertex_rule(arch: MLP, X, cutoff=None, nodes_per_panel: int | None = None) -> VertexRule:
    """The quadrature rule for vertex integrals of ``arch`` at inputs ``X`` (module docstring).

    Args:
        arch: architecture (its kernel decides the panel widths and the kink points).
        X: inputs ``(P, d_in)``.
        cutoff: None (all of input space; Gauss-net only), a cutoff L > 0, or a sequence.
        nodes_per_panel: Gauss--Legendre nodes per panel and coordinate (default 16, 12, 8
            for d = 1, 2, 3); raise it to check convergence.

    Returns:
        :class:`VertexRule` with ``weights (Q, C)``, columns in the order of ``cutoff``.

    Example:
        >>> rule = vertex_rule(ReLUNet(), [0.2, 0.4], cutoff=[1.0, 2.0])
        >>> rule.weights.sum(0)    # lengths of [-1, 1] and [-2, 2]
        array([2., 4.])
    """
    X = check_inputs(X, arch.d_in)
    d = arch.d_in
    cutoffs, _ = parse_cutoffs(cutoff)
    m = check_positive_int(nodes_per_panel or _DEFAULT_NODES.get(d, 8), "nodes_per_panel")
    ell = _length_scale(arch)
    x_sup = np.abs(X).max(axis=1)
    if np.isinf(cutoffs).any():
        if not integrals_converge(arch):
            raise ValueError(
                f"the vertex integral over all of input space diverges for {arch.name}: "
                f"K_int(x, y) does not decay as |y| -> inf (it does only for Gauss-net); "
                f"give a finite cutoff L"
            )
        support = x_sup.max() + _TAIL_LENGTHS * ell
        box = np.where(np.isinf(cutoffs), support, cutoffs)
    else:
        box = cutoffs
    # Smooth decaying kernels (Gauss-net) need the same resolution everywhere; the others
    # vary on the scale of |y| itself far out, so their panels may grow with s.
    grade = 0.0 if integrals_converge(arch) else 0.5
    h = 0.5 * min(ell, 1e300)

    def max_width(a):
        return max(h, grade * a)

    s_breaks = [0.0, *box.tolist()]
    if _has_kinks(arch):
        s_breaks += x_sup[x_sup < box.max()].tolist()
    s, ws, s_upper = _composite(np.unique(s_breaks), max_width, m)
    s_weights = ws[:, None] * (s_upper[:, None] <= box[None, :] * (1 + 1e-12))

    # Far-out directions matter on the face: keep s * du below the kernel's length scale where
    # the integrand lives (Gauss-net: near the inputs) and below 1/2 otherwise.
    reach = x_sup.max() + 3 * ell if integrals_converge(arch) else 1.0
    du = min(0.5, 2 * h / max(reach, 1e-300))
    nodes, weights = [], []
    for axis, sign in itertools.product(range(d), (1, -1)):
        kinks = _ray_points(X, axis, sign) if _has_kinks(arch) else np.zeros((0, d - 1))
        u_rules = [
            _composite(np.unique(np.clip([-1.0, 1.0, *kinks[:, j]], -1, 1)), lambda a: du, m)[:2]
            for j in range(d - 1)
        ]
        u_nodes, u_weights = _tensor_grid(u_rules)
        direction = np.insert(u_nodes, axis, float(sign), axis=1)  # (Nu, d)
        nodes.append((s[:, None, None] * direction[None]).reshape(-1, d))
        jac = s ** (d - 1)
        weights.append(
            (s_weights[:, None, :] * (jac[:, None] * u_weights[None, :])[..., None]).reshape(
                -1, len(box)
            )
        )
    return VertexRule(np.concatenate(nodes), np.concatenate(weights), cutoffs)


# --------------------------------------------------------------------------- integrals
@partial(jax.jit, static_argnums=(0, 5))
def _block_integrals(arch, X, nodes, weights, basis_values, orders):
    Kx = interaction_matrix(arch, X, nodes)  # (P, q)
    mono = monomials(Kx.T, max(orders))  # {n: (q, M_n)}
    wb = weights[:, :, None] * basis_values[:, None, :]  # (q, C, A)
    return tuple(jnp.einsum("qm,qca->mca", mono[n], wb) for n in orders)


def vertex_tensor(
    arch: MLP,
    X,
    orders: Sequence[int],
    rule: VertexRule,
    basis: Callable | None = None,
) -> dict[int, np.ndarray]:
    """Vertex integrals of several orders on a rule: ``{n: (M_n, C, A)}``.

    ``basis(y)`` maps nodes ``(Q, d)`` to ``(Q, A)`` basis-function values (default: one
    constant column). Nodes are processed in fixed-size jit-compiled blocks.
    """
    X = jnp.asarray(check_inputs(X, arch.d_in))
    orders = tuple(sorted({check_positive_int(n, "order") for n in orders}))
    values = np.ones((rule.n_nodes, 1)) if basis is None else np.asarray(basis(rule.nodes))
    if values.ndim == 1:
        values = values[:, None]
    total = None
    chunk = min(_NODE_CHUNK, rule.n_nodes)
    for start in range(0, rule.n_nodes, chunk):
        sl = slice(start, start + chunk)
        nodes, weights, vals = rule.nodes[sl], rule.weights[sl], values[sl]
        pad = chunk - nodes.shape[0]
        if pad:  # same block shape every time: one compilation
            nodes = np.pad(nodes, ((0, pad), (0, 0)))
            weights = np.pad(weights, ((0, pad), (0, 0)))
            vals = np.pad(vals, ((0, pad), (0, 0)))
        block = _block_integrals(arch, X, nodes, weights, vals, orders)
        total = block if total is None else tuple(a + b for a, b in zip(total, block, strict=True))
    return {n: np.asarray(t) for n, t in zip(orders, total, strict=True)}


@float64
def vertex_integral(
    arch: MLP,
    X,
    order: int = 4,
    cutoff=None,
    basis: Callable | None = None,
    nodes_per_panel: int | None = None,
) -> xr.DataArray:
    """``I_n(T; L) = int_{B_L} dy w(y) prod_{k in T} K_int(x_k, y)`` for all unique multisets T.

    Args:
        arch: architecture.
        X: inputs ``(P, d_in)`` (``(P,)`` for d_in = 1).
        order: number of legs n (4 for the quartic vertex, 6 for the sextic, 2 for ``J``).
        cutoff: L > 0 (box ``[-L, L]^d``), a sequence of cutoffs (adds a ``cutoff``
            dimension), or None for all of input space (converges for Gauss-net only).
        basis: optional weight ``w(y)``: ``(Q, d) -> (Q,)`` (default 1).
        nodes_per_panel: quadrature order per panel (see :func:`vertex_rule`).

    Returns:
        float64 xarray over ``tuple`` (``C(P+n-1, n)`` labels ``"i,j,k,l"``), plus ``cutoff``
        when a sequence was given.

    Example:
        >>> I4 = vertex_integral(ReLUNet(), [0.2, 0.4, 0.6], order=4, cutoff=[1.0, 2.0, 4.0])
        >>> I4.sizes
        Frozen({'tuple': 15, 'cutoff': 3})
    """
    X = check_inputs(X, arch.d_in)
    order = check_positive_int(order, "order")
    cutoffs, is_sequence = parse_cutoffs(cutoff)
    if basis is not None:
        user_basis = basis

        def basis(y):
            return node_values(user_basis, y, "basis(y)")

    rule = vertex_rule(arch, X, None if np.isinf(cutoffs).all() else cutoffs, nodes_per_panel)
    values = vertex_tensor(arch, X, (order,), rule, basis)[order][..., 0]  # (M, C)
    P, name = X.shape[0], f"I_{order}"
    if is_sequence:
        return tuple_array(values, P, order, name, dims=("tuple", "cutoff"),
                           coords={"cutoff": cutoffs})  # fmt: skip
    return tuple_array(values[:, 0], P, order, name, coords={"cutoff": cutoffs[0]})
