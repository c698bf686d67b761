"""Exact finite-width correlators of deep linear networks without biases.

For ``s(z) = z`` and zero biases every layer is a linear map of the previous one, and given
layer l the pre-activations of layer l+1 are Gaussian with covariance
``G^(l+1) = (C_W / n_l) sum_j z_j^(l) z_j^(l)^T`` (on the inputs). Two facts make the
finite-width ensemble exactly solvable:

1. At one input x, ``G^(l+1)(x) = C_W G^(l)(x) chi^2_(n_l) / n_l`` with independent
   chi-square variables, so ``G^(L+1)(x) = K(x, x) prod_l chi^2_(n_l)/n_l`` and
   ``E[f(x)^(2m)] = (2m-1)!! K(x, x)^m prod_l E[(chi^2_(n_l)/n_l)^m]`` with
   ``E[(chi^2_n/n)^m] = prod_(j<m) (1 + 2j/n)``.
2. The network is linear in x, ``f(sum_i t_i x_i) = sum_i t_i f(x_i)``, so the symmetric
   2m-point function is fixed by the polynomial ``t -> E[f(sum t_i x_i)^(2m)]`` (polarisation).
   The Gaussian-process Wick sum gives the same polynomial with factor 1, hence

       G_(2m)(x_1 .. x_2m) = c_m * (sum over pairings of products of K),
       c_m = prod_(l=1..L) prod_(j=0..m-1) (1 + 2j / n_l).

In particular ``G_2 = K`` at every width and
``kappa_4 = (prod_l (1 + 2/n_l) - 1) (K12 K34 + K13 K24 + K14 K23)``, whose first-order term
``(2 sum_l 1/n_l) sum_3 K K`` is what the 1/n vertex recursion gives. (For order 4 the same
result follows from the second moments of G: ``E[G_ab G_cd]`` obeys
``M^(l+1)(ab,cd) = C_W^2 [M^(l)(ab,cd) + (M^(l)(ac,bd) + M^(l)(ad,bc)) / n_l]`` and the sum
over the three pairings picks up a factor ``1 + 2/n_l`` per layer.)
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..core.multisets import cumulants_from_moments, gp_moments
from ..core.tuples import tuple_array
from ..core.validation import check_inputs, check_order
from ..networks.architectures import MLP, hidden_widths

__all__ = [
    "is_deep_linear",
    "deep_linear_factor",
    "exact_deep_linear_moments",
    "exact_deep_linear_cumulants",
    "exact_deep_linear_cumulant",
]


def is_deep_linear(arch) -> bool:
    """Whether ``arch`` is a linear network without biases (this module's exact case)."""
    return isinstance(arch, MLP) and arch.activation == "linear" and not (arch.sb0 or arch.sb1)


def _check_deep_linear(arch) -> MLP:
    if not is_deep_linear(arch):
        raise ValueError(
            "arch must be a deep linear network without biases (activation 'linear', "
            f"sb0 = sb1 = 0), got {arch!r}"
        )
    return arch


def deep_linear_factor(widths, m: int) -> float:
    """``c_m = prod_l prod_(j<m) (1 + 2j/n_l)``: ``E[f^(2m)] / ((2m-1)!! K^m)`` at any input.

    Example:
        >>> deep_linear_factor([4, 4], 2)  # (1 + 2/4)^2
        2.25
    """
    n = np.asarray(widths, dtype=np.float64)
    return float(np.prod([np.prod(1 + 2 * j / n) for j in range(m)]))


def _kernel(arch: MLP, X: np.ndarray) -> np.ndarray:
    """``K = C_W^L sw0^2 x.x'/d``: the exact 2-pt function at every width."""
    return arch.sw1 ** (2 * arch.depth) * arch.sw0**2 * (X @ X.T) / arch.d_in


def exact_deep_linear_moments(arch: MLP, X, width, max_order: int = 4) -> dict[int, np.ndarray]:
    """Exact ``{n: G_n}`` (even ``n <= max_order``) on index multisets, any depth and width.

    Args:
        arch: ``MLP(depth, "linear", sb0=0, sb1=0, ...)``.
        X: inputs ``(P, d_in)``.
        width: hidden width, or one width per hidden layer.
        max_order: highest even order (<= 8).
    """
    arch = _check_deep_linear(arch)
    X = check_inputs(X, arch.d_in)
    max_order = check_order(max_order)
    n = np.array(hidden_widths(arch, width), dtype=np.float64)
    wick = gp_moments(_kernel(arch, X), max_order)
    return {order: deep_linear_factor(n, order // 2) * G for order, G in wick.items()}


def exact_deep_linear_cumulants(arch: MLP, X, width, max_order: int = 4) -> dict[int, np.ndarray]:
    """Exact connected correlators ``{n: kappa_n}`` (even ``n <= max_order``)."""
    arch = _check_deep_linear(arch)
    X = check_inputs(X, arch.d_in)
    G = exact_deep_linear_moments(arch, X, width, max_order)
    return cumulants_from_moments(G, X.shape[0], max(G))


def exact_deep_linear_cumulant(arch: MLP, X, width, order: int = 4) -> xr.DataArray:
    """Exact connected ``order``-pt function of a deep linear net without biases.

    ``order = 4``: ``kappa_4 = (prod_l (1 + 2/n_l) - 1) (K12 K34 + K13 K24 + K14 K23)``;
    ``order = 2``: ``K`` (no 1/n correction); 6 and 8 from the same moment formula.

    Returns:
        xarray over ``tuple`` (index multisets, labels ``"i,j,k,l"``), named
        ``kappa_<order>``, attrs ``order`` and ``width``: the format of
        :func:`nnqft_ppl.oracle.exact.exact_cumulant`.

    Example:
        >>> arch = MLP(depth=4, activation="linear", sb0=0.0, sb1=0.0)
        >>> exact_deep_linear_cumulant(arch, [[1.0]], width=10).item()  # (1.2^4 - 1) * 3
        3.2207999999999997
    """
    order = check_order(order)
    arch = _check_deep_linear(arch)
    X = check_inputs(X, arch.d_in)
    values = exact_deep_linear_cumulants(arch, X, width, order)[order]
    width_attr = list(hidden_widths(arch, width)) if np.iterable(width) else int(width)
    return tuple_array(values, X.shape[0], order, f"kappa_{order}", width=width_attr)
