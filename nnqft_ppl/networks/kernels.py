"""Gaussian-process kernels: the exact 2-pt functions of the network ensembles (docs/physics.md §1).

For one hidden layer the kernel is exact at every width; for deeper networks it is the
infinite-width (NNGP) limit, from the layer recursion ``C <- sb1^2 + sw1^2 E[phi(u) phi(v)]``
starting at the input covariance ``sb0^2 + sw0^2 x.x'/d``. Each activation supplies its
Gaussian two-point map (closed form for erf, relu, gauss; Gauss--Hermite otherwise), so one
function serves every architecture.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..core.precision import float64
from ..core.validation import check_inputs
from .architectures import MLP

__all__ = [
    "kernel",
    "kernel_entry",
    "kernel_matrix",
    "layer_map",
    "interaction_kernel",
    "interaction_matrix",
]


def layer_map(arch: MLP, C: jnp.ndarray, *, derivative: bool = False) -> jnp.ndarray:
    """One layer of the recursion: ``C (P, P) -> E[phi(u_a) phi(u_b)]`` for ``u ~ N(0, C)``
    (``derivative=True``: ``E[phi'(u_a) phi'(u_b)]``, the tangent kernel's factor)."""
    diag = jnp.diag(C)
    product = arch.phi.gaussian_derivative_product if derivative else arch.phi.gaussian_product
    return product(diag[:, None], diag[None, :], C)


def kernel_entry(arch: MLP, x1: jnp.ndarray, x2: jnp.ndarray) -> jnp.ndarray:
    """``K(x1, x2)`` for two single points ``(d,)``: the recursion on their 2 x 2 covariance.

    Pure JAX (jit/vmap/grad-able); :func:`kernel_matrix` vectorises it over all pairs.
    """
    X = jnp.stack([x1, x2])
    C = arch.input_covariance(X)
    for _ in range(arch.depth):
        C = arch.sb1**2 + arch.sw1**2 * layer_map(arch, C)
    return C[0, 1]


@jax.jit(static_argnums=0)
def kernel_matrix(arch: MLP, X: jnp.ndarray, Y: jnp.ndarray) -> jnp.ndarray:
    """``K(x_a, y_b)`` for every pair, ``(P, d), (Q, d) -> (P, Q)``; O(P Q), so Q can be the
    millions of quadrature nodes of a vertex integral."""

    def entry(x, y):
        return kernel_entry(arch, x, y)

    return jax.vmap(jax.vmap(entry, (None, 0)), (0, None))(X, Y)


@jax.jit(static_argnums=0)
def interaction_matrix(arch: MLP, X: jnp.ndarray, Y: jnp.ndarray) -> jnp.ndarray:
    """``K_int(x_a, y_b) = K(x_a, y_b) - sb1^2`` for every pair: ``(P, d), (Q, d) -> (P, Q)``.

    The propagator attached to interaction vertices (docs/physics.md §3): the output bias is a
    free constant mode that does not interact. Q can be millions of quadrature nodes.
    """
    return kernel_matrix(arch, X, Y) - arch.sb1**2


@float64
def kernel(arch: MLP, X, X2=None) -> np.ndarray:
    """GP kernel ``K(x, x')`` of ``arch`` (validated inputs, NumPy output).

    Args:
        arch: the architecture.
        X: inputs ``(P, d_in)`` (``(P,)`` when ``d_in == 1``).
        X2: optional second set ``(Q, d_in)``; default ``X``.

    Returns:
        float64 array ``(P, P)`` (or ``(P, Q)``).

    Example:
        >>> kernel(GaussNet(), [[0.0], [1.0]])[0, 1]  # 1 + exp(-1/2)
        1.6065306597126334
    """
    X = check_inputs(X, arch.d_in)
    Y = X if X2 is None else check_inputs(X2, arch.d_in)
    return np.asarray(kernel_matrix(arch, jnp.asarray(X), jnp.asarray(Y)))


@float64
def interaction_kernel(arch: MLP, X, X2=None) -> np.ndarray:
    """``K_int = K - sb1^2`` (validated inputs, NumPy output): see :func:`interaction_matrix`."""
    X = check_inputs(X, arch.d_in)
    Y = X if X2 is None else check_inputs(X2, arch.d_in)
    return np.asarray(interaction_matrix(arch, jnp.asarray(X), jnp.asarray(Y)))
