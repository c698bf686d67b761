"""Exact finite-width correlators of single-hidden-layer networks (docs/physics.md §2).

``f - b1 = sum_i u_i`` with iid ``u_i = W1_i phi_i``, so ``kappa_n(f) = N kappa_n(u)`` for
``n >= 3`` and ``kappa_2(f) = K``. The moments of one term are
``E[u_T] = (n-1)!! (sw1^2/N)^(n/2) E[p_T]`` (even n; odd ones vanish), with the single-neuron
moments ``E[p_T] = E[prod_{k in T} phi(z(x_k))]`` in closed form where the activation has one
(Gauss-net) and by the fixed quadrature rules of :mod:`nnqft_ppl.oracle.neuron_quadrature`
otherwise. Hence kappa_4 falls
exactly as 1/N and kappa_6 as 1/N^2: the noise-free oracle for ensembles and EFT fits.

The same exact moments (up to order 8) give the exact sampling covariance of the kappa_4
estimator, which batch means cannot estimate for heavy-tailed ensembles.

Accuracy. The single-neuron moments of order n are accurate to ``1e-10`` relative to the
largest moment of that order (erf, tanh, ReLU and user-defined smooth activations at
d_in <= 3, with or without biases; a rank-4 ReLU integral, d_in = 3 with a bias and 4 or more
inputs, is not implemented), and to rounding for Gauss-net. :func:`oracle_error` estimates the
error on demand by comparing with an independent finer rule (it costs 2-4 times one oracle
call, so it is not done on every call). The cumulants inherit this relative accuracy up to
the cancellations of the moment-cumulant map. CPU time at order 8 with 6 inputs (details in
:mod:`nnqft_ppl.oracle.neuron_quadrature`): < 0.1 s for d_in = 1, under a second for d_in = 2 and
for d_in = 3 without a bias, 1 to 6 s for d_in = 3 with a bias (sw0 = 1 to 2).
"""

from __future__ import annotations

import math
from functools import cache
from typing import NamedTuple

import jax
import numpy as np
import xarray as xr
from scipy.linalg.blas import dsyrk

from ..core.multisets import (
    cumulants_from_moments,
    index_multisets,
    moments_from_cumulants,
    monomials,
    multiset_rank,
    pair_matrix,
    pairing_ranks,
    partition_plan,
    union_ranks,
)
from ..core.precision import float64
from ..core.tuples import tuple_array, tuple_covariance
from ..core.validation import check_inputs, check_order, check_width
from ..networks.architectures import MLP
from .deep_linear import exact_deep_linear_cumulants, is_deep_linear
from .neuron_quadrature import neuron_rule

__all__ = [
    "single_neuron_moments",
    "first_layer_moments",
    "oracle_error",
    "exact_cumulants",
    "exact_moments",
    "exact_cumulant",
    "exact_covariance",
    "exact_single_input_moments",
    "estimator_influence",
    "estimator_covariance",
    "monomial_covariance",
    "kernel_cumulants",
    "exact_kernel_covariance",
    "exact_kernel_moment_covariance",
    "KernelEstimatorCovariance",
]


_NODE_CHUNK = 4096  # nodes per block of the weighted sums (bounds memory)


def _require_single_layer(arch: MLP) -> None:
    if arch.depth != 1:
        raise NotImplementedError(
            f"exact finite-width cumulants exist for one hidden layer and for deep linear nets "
            f"without biases; {arch.name} has depth {arch.depth}: use "
            "nq.perturbative_cumulant (the 1/n expansion) or an ensemble"
        )


@float64
def single_neuron_moments(
    arch: MLP, X, max_order: int, *, check: bool = False
) -> dict[int, np.ndarray]:
    """``{n: E[prod_{k in T} phi(z(x_k))] over multisets T}`` for even ``n <= max_order``.

    Accurate to ``1e-10`` relative to the largest moment of each order (closed form for
    Gauss-net); :func:`oracle_error` estimates the error.

    Args:
        arch: single-hidden-layer architecture.
        X: inputs ``(P, d_in)``.
        max_order: highest (even) order.
        check: use the independent finer rule of :func:`oracle_error` (slower).

    Returns:
        ``{n: array (C(P+n-1, n),)}``.
    """
    _require_single_layer(arch)
    return first_layer_moments(arch, X, max_order, check=check)


def first_layer_moments(
    arch: MLP, X, max_order: int, *, check: bool = False
) -> dict[int, np.ndarray]:
    """:func:`single_neuron_moments` of the first hidden layer of a network of any depth (its
    units depend only on ``sw0``, ``sb0`` and the activation); ``NotImplementedError`` where no
    quadrature rule exists (e.g. ReLU with a Gaussian dimension above 3)."""
    X = check_inputs(X, arch.d_in)
    P = X.shape[0]
    orders = range(2, max_order + 1, 2)
    closed = _closed_form_moments(arch, X, orders)
    if closed is not None:
        return closed
    rule = neuron_rule(arch, X, max_order=max_order, check=check)
    gram = _weighted_half_products(rule.values, rule.weights, max_order // 2)
    out = {}
    for n in orders:
        first, second = _half_split(P, n)
        out[n] = rule.radial_moment(n) * gram[n // 2][first, second]
    return out


def oracle_error(arch: MLP, X, max_order: int = 8) -> dict[int, float]:
    """Estimated relative error of :func:`single_neuron_moments`, per even order n.

    ``max_T |E_rule[T] - E_check[T]| / max_T |E_check[T]|`` between the default rule and an
    independent finer one (trapezoid steps times 0.8 on a larger ball for smooth activations;
    more Gauss--Legendre nodes per piece for ReLU). The check rule's error is much smaller
    than the default one's, so this is close to the default rule's actual error. For Gauss-net
    (closed form) it is the rounding error of the exponent. Costs 2-4 oracle calls.
    """
    _require_single_layer(arch)
    X = check_inputs(X, arch.d_in)
    orders = range(2, max_order + 1, 2)
    closed = _closed_form_moments(arch, X, orders)
    if closed is not None:  # rounding only: a few ulps of the log of each moment
        eps = np.finfo(np.float64).eps
        return {n: float(4 * eps * (1 + np.max(np.abs(np.log(np.abs(m[m != 0]))))))
                for n, m in closed.items()}  # fmt: skip
    default = single_neuron_moments(arch, X, max_order)
    finer = single_neuron_moments(arch, X, max_order, check=True)
    return {
        n: float(np.max(np.abs(default[n] - finer[n])) / np.max(np.abs(finer[n]))) for n in default
    }


def _closed_form_moments(arch: MLP, X: np.ndarray, orders) -> dict | None:
    """The activation's closed-form single-neuron moments (Gauss-net, linear), else None."""
    with jax.enable_x64(True):  # float64 whatever the global JAX precision
        C = np.asarray(arch.input_covariance(X), dtype=np.float64)
    P = X.shape[0]
    closed = {n: arch.phi.closed_form_moments(C, index_multisets(P, n)) for n in orders}
    return closed if all(v is not None for v in closed.values()) else None


def _weighted_half_products(values: np.ndarray, weights: np.ndarray, half: int) -> dict:
    """``{h: G_h}`` with ``G_h[A, B] = sum_q w_q m_A(q) m_B(q)`` over multisets A, B of order h
    (upper triangle, ``rank A <= rank B``): a product of two degree-h monomials is a degree-2h
    one, so these Gram matrices hold every even moment. One BLAS ``syrk`` per node block
    (~2e4 flops per node at order 8 with 6 inputs); needs ``weights >= 0``."""
    n_inputs = values.shape[1]
    if np.any(weights < 0):
        raise ValueError("quadrature weights must be non-negative")
    gram = {
        h: np.zeros((len(index_multisets(n_inputs, h)),) * 2, order="F") for h in range(1, half + 1)
    }
    root = np.sqrt(weights)
    for start in range(0, len(weights), _NODE_CHUNK):  # bounds memory at order 8
        block = slice(start, start + _NODE_CHUNK)
        mono = monomials(values[block], half)
        for h in gram:
            scaled = (mono[h] * root[block, None]).T  # (M_h, nodes), Fortran order
            gram[h] = dsyrk(1.0, scaled, beta=1.0, c=gram[h], trans=0, overwrite_c=1)
    return gram


@cache
def _half_split(n_inputs: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Ranks of the first and second halves of each multiset of ``order`` (sorted indices, so
    the first half's rank never exceeds the second's: the upper triangle of a Gram matrix)."""
    T = index_multisets(n_inputs, order)
    h = order // 2
    return multiset_rank(T[:, :h], n_inputs), multiset_rank(T[:, h:], n_inputs)


@float64
def exact_cumulants(arch: MLP, X, width: int, max_order: int = 6) -> dict[int, np.ndarray]:
    """Exact connected correlators ``{n: kappa_n}`` (even ``n <= max_order``) at width N.

    One hidden layer, any activation; or a deep linear net without biases
    (:mod:`nnqft_ppl.oracle.deep_linear`).
    """
    if arch.depth > 1 and is_deep_linear(arch):
        return exact_deep_linear_cumulants(arch, X, width, max_order)
    width = check_width(width)
    E = single_neuron_moments(arch, X, max_order)
    v = arch.sw1**2 / width
    term_moments = {n: _double_factorial(n - 1) * v ** (n // 2) * E[n] for n in E}
    P = check_inputs(X, arch.d_in).shape[0]
    kappa = {n: width * k for n, k in cumulants_from_moments(term_moments, P, max_order).items()}
    kappa[2] = kappa[2] + arch.sb1**2
    return kappa


@float64
def exact_moments(arch: MLP, X, width: int, max_order: int = 6) -> dict[int, np.ndarray]:
    """Exact full correlators ``{n: G_n}`` (even ``n <= max_order``) at width N."""
    P = check_inputs(X, arch.d_in).shape[0]
    return moments_from_cumulants(exact_cumulants(arch, X, width, max_order), P, max_order)


@float64
def exact_cumulant(arch: MLP, X, width: int, order: int = 4) -> xr.DataArray:
    """Exact connected ``order``-pt function of a single-hidden-layer net at width ``width``.

    Returns an xarray over ``tuple`` (unique index multisets, labels ``"i,j,k,l"``).

    Example:
        >>> k4 = exact_cumulant(GaussNet(sb0=0.5), X, width=10, order=4)
    """
    order = check_order(order)
    X = check_inputs(X, arch.d_in)
    values = exact_cumulants(arch, X, width, order)[order]
    return tuple_array(values, X.shape[0], order, f"kappa_{order}", width=width)


def _double_factorial(k: int) -> int:
    return math.prod(range(k, 0, -2)) if k > 0 else 1


@float64
def exact_single_input_moments(arch: MLP, x, width: int, max_order: int = 12) -> np.ndarray:
    """Exact raw moments ``E[f(x)^n]``, ``n = 0..max_order``, at one input ``x (d_in,)``.

    At a single input the moment-cumulant maps are the scalar recursions
    ``m_n = sum_k C(n-1, k-1) kappa_k m_(n-k)``, so high orders (the variance of a 6-pt
    estimate needs ``E[f^12]``) cost nothing, unlike the set-partition sums over multisets.
    """
    width = check_width(width)
    X = check_inputs(np.asarray(x, dtype=np.float64).reshape(1, -1), arch.d_in)
    E = single_neuron_moments(arch, X, max_order)
    v = arch.sw1**2 / width
    u = np.zeros(max_order + 1)
    u[0] = 1.0
    for n in E:
        u[n] = _double_factorial(n - 1) * v ** (n // 2) * E[n][0]
    kappa = width * _scalar_cumulants(u)
    kappa[2] += arch.sb1**2
    return _scalar_moments(kappa)


def _scalar_cumulants(m: np.ndarray) -> np.ndarray:
    """Cumulants ``kappa_1..`` from raw moments ``m_0 = 1, m_1, ...`` (index = order)."""
    kappa = np.zeros_like(m)
    for n in range(1, len(m)):
        kappa[n] = m[n] - sum(math.comb(n - 1, k - 1) * kappa[k] * m[n - k] for k in range(1, n))
    return kappa


def _scalar_moments(kappa: np.ndarray) -> np.ndarray:
    """Raw moments from cumulants (index = order, ``kappa[0]`` ignored)."""
    m = np.zeros_like(kappa)
    m[0] = 1.0
    for n in range(1, len(kappa)):
        m[n] = sum(math.comb(n - 1, k - 1) * kappa[k] * m[n - k] for k in range(1, n + 1))
    return m


# ----------------------------------------------------------------- sampling covariance
def estimator_influence(moments: dict, n_inputs: int, order: int) -> dict[int, np.ndarray]:
    """Linearisation of the plug-in cumulant estimator around the true moments.

    The estimator is ``kappa_n(T) = sum_pi mu(pi) prod_B M(T_B)`` with sample raw moments M
    (the mean is known to vanish). To first order, ``delta kappa_n(T) =
    sum_k sum_m A_k[T, m] delta M_k(m)``; this returns ``{k: A_k (M_n, M_k)}``.
    """
    M_n = index_multisets(n_inputs, order).shape[0]
    A = {k: np.zeros((M_n, index_multisets(n_inputs, k).shape[0])) for k in range(2, order + 1, 2)}
    rows = np.arange(M_n)[:, None]
    for sizes, ranks in partition_plan(n_inputs, order):
        k = len(sizes)
        mobius = (-1) ** (k - 1) * math.factorial(k - 1)
        for b, (size, rank) in enumerate(zip(sizes, ranks, strict=True)):
            coef = np.full(rank.shape, float(mobius))
            for b2, (size2, rank2) in enumerate(zip(sizes, ranks, strict=True)):
                if b2 != b:
                    coef = coef * moments[size2][rank2]
            np.add.at(A[size], (np.broadcast_to(rows, rank.shape), rank), coef)
    return A


def monomial_covariance(moments: dict, n_inputs: int, k: int, l: int) -> np.ndarray:
    """``Cov(f_m, f_m')`` for multisets m of order k and m' of order l: ``(M_k, M_l)``.

    ``= G_{k+l}(m u m') - G_k(m) G_l(m')``; needs ``moments`` up to order ``k + l``.
    """
    joint = moments[k + l][union_ranks(n_inputs, k, l)]
    return joint - np.outer(moments[k], moments[l])


def estimator_covariance(moments: dict, n_inputs: int, order: int) -> np.ndarray:
    """Per-network covariance of the plug-in ``kappa_order`` estimator (divide by n).

    Delta method: ``A Cov(monomials) A^T`` with the influence matrices of
    :func:`estimator_influence`; needs ``moments`` up to ``2 * order``.
    """
    A = estimator_influence(moments, n_inputs, order)
    total = 0.0
    for k, A_k in A.items():
        for l, A_l in A.items():
            total = total + A_k @ monomial_covariance(moments, n_inputs, k, l) @ A_l.T
    return 0.5 * (total + total.T)


@float64
def exact_covariance(arch: MLP, X, width: int, order: int = 4) -> xr.DataArray:
    """Exact per-network sampling covariance of the ``kappa_order`` estimator.

    ``Cov(kappa_hat(T), kappa_hat(U)) = exact_covariance[T, U] / n_networks`` to leading order
    in 1/n, from the exact moments of f up to order ``2 * order`` (order 4 needs 8-pt
    single-neuron moments). Returns an xarray with dims ``("tuple", "tuple_")``.
    """
    order = check_order(order, max_allowed=4)
    X = check_inputs(X, arch.d_in)
    P = X.shape[0]
    G = exact_moments(arch, X, width, 2 * order)
    cov = estimator_covariance(G, P, order)
    return tuple_covariance(cov, P, order, f"kappa_{order}_covariance", width=width, per="network")


# ----------------------------------------------------------------- kernel estimator
class KernelEstimatorCovariance(NamedTuple):
    """Exact sampling covariance of the kernel estimator of ``kappa_4`` (single hidden layer).

    The estimator is ``sum_3 k_2(G_p, G_q)`` over the pairings, with ``k_2`` the unbiased sample
    covariance of the kernel entries over n networks, whose covariance is exactly
    ``cov(k_pq, k_rs) = kappa_pqrs / n + (kappa_pr kappa_qs + kappa_ps kappa_qr) / (n - 1)``.

    Attributes:
        fourth: ``(M, M)``: the pairing sums of the fourth joint cumulants of G.
        second: ``(M, M)``: the pairing sums of the products of its second cumulants.
    """

    fourth: np.ndarray
    second: np.ndarray

    def at(self, n_networks: int) -> np.ndarray:
        """``fourth / n + second / (n - 1)``: the covariance for ``n_networks`` networks."""
        return self.fourth / n_networks + self.second / (n_networks - 1)


@cache
def _pairs_to_inputs(n_inputs: int, k: int) -> np.ndarray:
    """Rank among 2k-multisets of the inputs of each k-multiset of input pairs ``i <= j``."""
    pairs = index_multisets(n_inputs, 2)
    T = index_multisets(n_inputs * (n_inputs + 1) // 2, k)
    return multiset_rank(pairs[T].reshape(len(T), 2 * k), n_inputs)


@float64
def kernel_cumulants(arch: MLP, X, width: int, max_degree: int = 4) -> dict[int, np.ndarray]:
    """Exact joint cumulants of the entries of the readout kernel G of a single-layer net.

    ``G_ij = sb1^2 + (sw1^2 / N) sum_n p_n(x_i) p_n(x_j)`` is a sum of N independent neurons,
    so its cumulants of degree k >= 2 are ``N (sw1^2 / N)^k`` times those of one neuron's
    ``psi_ij = p(x_i) p(x_j)``, whose moments are single-neuron moments of order 2k. Returns
    ``{k: (C(V+k-1, k),)}`` for ``k = 1..max_degree`` over the ``V = C(P+1, 2)`` entries.
    """
    _require_single_layer(arch)
    X = check_inputs(X, arch.d_in)
    P = X.shape[0]
    V = P * (P + 1) // 2
    E = single_neuron_moments(arch, X, 2 * max_degree)
    psi = {k: E[2 * k][_pairs_to_inputs(P, k)] for k in range(1, max_degree + 1)}
    cumulants = cumulants_from_moments(psi, V, max_degree, even=False)
    v = arch.sw1**2 / width
    out = {k: width * v**k * c for k, c in cumulants.items()}
    out[1] = out[1] + arch.sb1**2
    return out


@float64
def exact_kernel_covariance(arch: MLP, X, width: int) -> KernelEstimatorCovariance:
    """Exact sampling covariance of the kernel estimator of ``kappa_4`` (single hidden layer).

    Example:
        >>> cov = exact_kernel_covariance(ErfNet(), X, width=5).at(n_networks=10**5)  # (M, M)
    """
    X = check_inputs(X, arch.d_in)
    P = X.shape[0]
    V = P * (P + 1) // 2
    c = kernel_cumulants(arch, X, width, 4)
    second = pair_matrix(c[2], V)
    # covariance of the unbiased sample covariances k_pq, k_rs over pairs (p<=q), (r<=s)
    fourth_pq_rs = c[4][union_ranks(V, 2, 2)]
    p, q = index_multisets(V, 2).T
    second_pq_rs = second[p[:, None], p[None, :]] * second[q[:, None], q[None, :]]
    second_pq_rs = second_pq_rs + second[p[:, None], q[None, :]] * second[q[:, None], p[None, :]]
    return KernelEstimatorCovariance(
        _pairing_sum(fourth_pq_rs, P, 4), _pairing_sum(second_pq_rs, P, 4)
    )


def _pairing_sum(table: np.ndarray, n_inputs: int, order: int) -> np.ndarray:
    """``out[T, T'] = sum over the pairings a of T and b of T' of table[a, b]``, with ``table``
    over the ``order/2``-multisets of kernel entries: ``(M_order, M_order)``."""
    R = pairing_ranks(n_inputs, order)
    return table[R[:, :, None, None], R[None, None]].sum(axis=(1, 3))


@float64
def exact_kernel_moment_covariance(arch: MLP, X, width: int, order: int = 4) -> xr.DataArray:
    """Exact per-network covariance of the kernel estimator of the moments ``G_order``.

    The estimator is the Wick sum of sample means of products of ``order/2`` kernel entries, so
    its covariance is ``sum_{pairings} (E[G_a G_b] - E[G_a] E[G_b]) / n_networks``; the moments
    of G follow from :func:`kernel_cumulants`. Returns dims ``("tuple", "tuple_")``.
    """
    order = check_order(order, max_allowed=4)
    X = check_inputs(X, arch.d_in)
    P = X.shape[0]
    V = P * (P + 1) // 2
    m = order // 2
    moments = moments_from_cumulants(kernel_cumulants(arch, X, width, order), V, order, even=False)
    cov = _pairing_sum(monomial_covariance(moments, V, m, m), P, order)
    return tuple_covariance(cov, P, order, f"G_{order}_kernel_covariance", width=width,
                            per="network")  # fmt: skip
