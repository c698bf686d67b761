"""Feynman rules of the NGP effective action: GP n-pt functions and the leading diagrams.

Action (docs/physics.md §3, no 1/n! factors), ``K_int = K - sb1^2`` on every vertex leg:

    S = S_GP + int_{B_L} dy [lambda(y) f^4 + kappa(y) f^6] + lambda_nl int int dy dz f(y)^2 f(z)^2

Connected correlators on unique index multisets T (first order, plus the second-order tree):

    kappa_4(T) = -24 int dy lambda(y) prod_{k in T} K_int(x_k, y)
                 - 8 lambda_nl sum_{3 pairings (ab|cd)} J(a, b) J(c, d),   J(a,b) = int K_int K_int
    kappa_6(T) = -720 int dy kappa(y) prod_{k in T} K_int(x_k, y)
                 + 576 sum_{10 splits (abc|def)} int int lambda(y) lambda(z)
                       K_int(x_a,y) K_int(x_b,y) K_int(x_c,y) K_int(y,z) K_int(x_d,z) ...

24 = 4! ways to attach 4 legs; 720 = 6!; 8 = 2 (legs of f(y)^2) x 2 (of f(z)^2) x 2 (which
pair sits at y); 576 = 4!/1! x 4!/1!: three external legs on 3 of each vertex's 4 legs, the
remaining legs joined (the 1/2! of second order cancels against swapping the vertices). In zero
dimensions (one point, ``S = x^2/(2K) + lambda x^4``) these give ``kappa_4 = -24 lambda K^4`` and
``kappa_6 = 5760 lambda^2 K^7``, which the tests confirm by direct quadrature.

The functions in the first half act on arrays: propagators ``Kx = K_int(X, y_q)`` ``(P, Q)``
and quadrature weights (already multiplied by the coupling at the nodes), so they serve any
rule, cutoff or coupling form and compile with jit. :func:`eft_cumulants` and
:func:`eft_correlators` wrap them for an architecture, inputs and couplings.

Full correlators follow from the moment-cumulant formula with the full K on pairs:
``G_4 = sum_3 K K + kappa_4`` and ``G_6 = sum_15 K K K + sum_15 K kappa_4 + kappa_6``; the
inverse is ``kappa_6 = G_6 - sum_15 G_4 K + 2 sum_15 K K K = G_6 - sum_15 kappa_4 K -
sum_15 K K K`` (:func:`nnqft_ppl.core.multisets.cumulants_from_moments`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import cache

import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..core.multisets import (
    gp_moments,
    index_multisets,
    moments_from_cumulants,
    monomials,
    multiset_rank,
    pair_table,
)
from ..core.precision import float64
from ..core.tuples import tuple_array
from ..core.validation import check_inputs, check_order
from ..networks.architectures import MLP
from ..networks.kernels import interaction_matrix, kernel
from .vertex import node_values, parse_cutoffs, vertex_rule

__all__ = [
    "QUARTIC_FACTOR",
    "SEXTIC_FACTOR",
    "NONLOCAL_FACTOR",
    "TREE_FACTOR",
    "contact_diagram",
    "quartic_contact",
    "sextic_contact",
    "nonlocal_quartic",
    "quartic_tree",
    "full_correlators",
    "eft_cumulants",
    "eft_correlators",
]

QUARTIC_FACTOR = 24  # 4!: ways to attach four external legs to lambda f^4
SEXTIC_FACTOR = 720  # 6!
NONLOCAL_FACTOR = 8  # 2 * 2 * 2 for lambda_nl f(y)^2 f(z)^2
TREE_FACTOR = 576  # (4 * 3 * 2)^2 for two quartic vertices joined by one propagator

Coupling = float | Callable | None


# --------------------------------------------------------------------------- array level
def contact_diagram(Kx, weights, order: int):
    """``sum_q weights[q, ...] prod_{k in T} Kx[k, q]`` for every multiset T of ``order``.

    ``Kx``: ``(P, Q)`` propagators to the nodes; ``weights``: ``(Q, ...)`` (quadrature weight
    times coupling). Returns ``(M, ...)``.
    """
    mono = monomials(Kx.T, order)[order]  # (Q, M)
    return jnp.tensordot(mono.T, weights, axes=1)


def quartic_contact(Kx, lam_weights):
    """First-order ``kappa_4`` of ``lambda(y) f^4``: ``-24 int lambda prod_4 K_int``, ``(M4, ...)``.

    ``lam_weights``: ``(Q, ...)`` quadrature weights times ``lambda(y_q)``.
    """
    return -QUARTIC_FACTOR * contact_diagram(Kx, lam_weights, 4)


def sextic_contact(Kx, kappa_weights):
    """First-order ``kappa_6`` of ``kappa(y) f^6``: ``-720 int kappa prod_6 K_int``, ``(M6, .)``."""
    return -SEXTIC_FACTOR * contact_diagram(Kx, kappa_weights, 6)


def nonlocal_quartic(Kx, weights, lam_nl=1.0):
    """First-order ``kappa_4`` of ``lambda_nl int int f(y)^2 f(z)^2``.

    ``-8 lambda_nl sum_3 J(a,b) J(c,d)`` with ``J = Kx diag(w) Kx^T``: the double integral
    factorises into one-dimensional ones. ``weights``: ``(Q,)``. Returns ``(M4,)``.
    """
    J = (Kx * weights) @ Kx.T
    return -NONLOCAL_FACTOR * lam_nl * gp_moments(J, 4)[4]


@cache
def _three_three_splits(n_inputs: int) -> tuple[np.ndarray, np.ndarray]:
    """For each 6-multiset, the ranks (among 3-multisets) of both halves of its 10 splits.

    Returns two int arrays ``(M6, 10)``.
    """
    tuples = index_multisets(n_inputs, 6)
    firsts = [(0, *rest) for rest in itertools.combinations(range(1, 6), 2)]
    seconds = [tuple(i for i in range(6) if i not in f) for f in firsts]
    left = np.stack([multiset_rank(tuples[:, list(f)], n_inputs) for f in firsts], axis=1)
    right = np.stack([multiset_rank(tuples[:, list(s)], n_inputs) for s in seconds], axis=1)
    return left, right


def quartic_tree(Kx, lam_weights, Kyy):
    """Second-order tree of two quartic vertices joined by ``K_int(y, z)``, on 6-multisets.

    ``576 sum_10 int int lambda(y) lambda(z) K_int(x_a,y) K_int(x_b,y) K_int(x_c,y)
    K_int(y,z) K_int(x_d,z) K_int(x_e,z) K_int(x_f,z)``.

    Args:
        Kx: ``(P, Q)`` propagators from inputs to nodes.
        lam_weights: ``(Q,)`` quadrature weights times ``lambda(y_q)``.
        Kyy: ``(Q, Q)`` propagators between nodes.

    Returns:
        ``(C(P+5, 6),)``.
    """
    P = Kx.shape[0]
    legs = monomials(Kx.T, 3)[3] * lam_weights[:, None]  # (Q, M3)
    half = legs.T @ Kyy @ legs  # (M3, M3)
    left, right = _three_three_splits(P)
    return TREE_FACTOR * half[left, right].sum(axis=-1)


def full_correlators(K, cumulants: dict, max_order: int = 6) -> dict:
    """Full n-pt functions from ``K (P, P)`` and connected ``{4: kappa_4, 6: kappa_6}``.

    Moment-cumulant formula over even partitions: ``G_4 = sum_3 KK + kappa_4``,
    ``G_6 = sum_15 KKK + sum_15 K kappa_4 + kappa_6``. Returns ``{n: (M_n,)}`` for even n.
    """
    tables = {2: pair_table(K)} | {n: c for n, c in cumulants.items() if n > 2}
    return moments_from_cumulants(tables, K.shape[-1], max_order)


# --------------------------------------------------------------------------- arch level
def _at_nodes(coupling: Coupling, nodes: np.ndarray) -> np.ndarray | None:
    """A coupling (constant or function of y ``(Q, d) -> (Q,)``) at the quadrature nodes."""
    if coupling is None:
        return None
    if callable(coupling):
        return node_values(coupling, nodes, "a coupling function")
    return np.full(nodes.shape[0], float(coupling))


@float64
def eft_cumulants(
    arch: MLP,
    X,
    *,
    quartic: Coupling = None,
    sextic: Coupling = None,
    lambda_nl: float = 0.0,
    cutoff=None,
    max_order: int = 6,
    second_order: bool = True,
    nodes_per_panel: int | None = None,
) -> dict[int, xr.DataArray]:
    """Connected 4- and 6-pt functions predicted by the EFT couplings (first order + tree).

    Args:
        arch: architecture (gives ``K_int``).
        X: inputs ``(P, d_in)``.
        quartic: ``lambda``: a number or a function ``y (Q, d) -> (Q,)``; None for 0.
        sextic: ``kappa``: likewise.
        lambda_nl: the non-local coupling ``lambda_nl``.
        cutoff: one cutoff L, or None (all of input space, Gauss-net only).
        max_order: 4 or 6.
        second_order: include the tree of two quartic vertices in ``kappa_6``.
        nodes_per_panel: quadrature order (see :func:`nnqft_ppl.vertex.vertex_rule`).

    Returns:
        ``{4: kappa_4, 6: kappa_6}`` (up to ``max_order``), xarrays over ``tuple``.

    Example:
        >>> k = eft_cumulants(ReLUNet(), X, quartic=-1e-3, cutoff=1.5)
        >>> k[6].sizes["tuple"]          # 462 for 6 inputs
    """
    X = check_inputs(X, arch.d_in)
    max_order = check_order(max_order, 6)
    cutoffs, is_sequence = parse_cutoffs(cutoff)
    if is_sequence:
        raise ValueError("eft_cumulants takes one cutoff (a number or None), not a sequence")
    rule = vertex_rule(arch, X, cutoff, nodes_per_panel)
    w = rule.weights[:, 0]
    keep = w != 0
    nodes, w = rule.nodes[keep], w[keep]
    Kx = interaction_matrix(arch, jnp.asarray(X), jnp.asarray(nodes))
    P = X.shape[0]
    lam = _at_nodes(quartic, nodes)
    kap = _at_nodes(sextic, nodes)
    zeros = {n: jnp.zeros(len(index_multisets(P, n))) for n in (4, 6)}
    out = {4: zeros[4]}
    if lam is not None:
        out[4] = out[4] + quartic_contact(Kx, w * lam)
    if lambda_nl:
        out[4] = out[4] + nonlocal_quartic(Kx, w, float(lambda_nl))
    if max_order >= 6:
        out[6] = zeros[6]
        if kap is not None:
            out[6] = out[6] + sextic_contact(Kx, w * kap)
        if second_order and lam is not None:
            if nodes.shape[0] > 20000:
                raise ValueError(
                    f"the second-order tree needs the {nodes.shape[0]}^2 propagators between "
                    f"quadrature nodes; lower nodes_per_panel or use d_in = 1"
                )
            Kyy = interaction_matrix(arch, jnp.asarray(nodes), jnp.asarray(nodes))
            out[6] = out[6] + quartic_tree(Kx, w * lam, Kyy)
    return {n: tuple_array(v, P, n, f"kappa_{n}", cutoff=float(cutoffs[0])) for n, v in out.items()}


@float64
def eft_correlators(arch: MLP, X, **couplings) -> dict[int, xr.DataArray]:
    """Full ``G_2, G_4, G_6`` predicted by the EFT: GP pairs plus :func:`eft_cumulants`.

    Takes the keyword arguments of :func:`eft_cumulants`. ``G_6`` contains
    ``sum_15 K kappa_4``: the paper's 6-pt prediction from a coupling fitted on the 4-pt
    function. Returns ``{2: G_2, 4: G_4, 6: G_6}`` (up to ``max_order``) over ``tuple``.
    """
    X = check_inputs(X, arch.d_in)
    cumulants = eft_cumulants(arch, X, **couplings)
    K = kernel(arch, X)
    max_order = max(cumulants)
    G = full_correlators(K, {n: c.values for n, c in cumulants.items()}, max_order)
    return {n: tuple_array(v, X.shape[0], n, f"G_{n}") for n, v in G.items()}
