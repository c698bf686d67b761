"""Quadrature building blocks shared by the exact oracle and the deep-network theory."""

from __future__ import annotations

import numpy as np

__all__ = ["legendre_on_intervals"]


def legendre_on_intervals(breaks: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss--Legendre nodes and weights on the consecutive intervals of sorted ``breaks``.

    Args:
        breaks: ``(..., B)`` sorted interval ends (e.g. the kink angles of a ReLU integrand).
        n: nodes per interval (exact for polynomials of degree ``2n - 1`` on each).

    Returns:
        ``(nodes, weights)``, each ``(..., (B - 1) * n)``; the weights include the interval
        lengths, so ``sum(w * g(nodes))`` integrates ``g`` from ``breaks[0]`` to ``breaks[-1]``.
    """
    s, ws = np.polynomial.legendre.leggauss(n)
    a, b = breaks[..., :-1, None], breaks[..., 1:, None]
    nodes = 0.5 * (a + b) + 0.5 * (b - a) * s
    weights = 0.5 * (b - a) * ws
    shape = breaks.shape[:-1] + (-1,)
    return nodes.reshape(shape), weights.reshape(shape)
