"""The infinite-width neural tangent kernel (NTK) of an MLP in the NTK parametrisation.

Every weight of :class:`~nnqft_ppl.networks.architectures.MLP` is ``sw / sqrt(fan_in)`` times a
standard normal parameter and every bias ``sb`` times one; gradient descent acts on those N(0, 1)
parameters ``theta``. The tangent kernel of one network is the parameter-gradient inner product

    Theta_hat(x, x') = sum_p  d f(x) / d theta_p  *  d f(x') / d theta_p ,

a random quantity at finite width whose infinite-width limit is deterministic. Split the
gradient by layer: the parameters of the layer that produces ``z^(l+1) = b + W s(z^(l))``
contribute ``sb^2 + sw^2 <s s>`` = the NNGP kernel ``K^(l+1)``, and every earlier parameter
reaches ``z^(l+1)`` through ``W s'(z^(l))``, whose inner product over the ``fan_in`` neurons
concentrates on ``sw^2 <s'(z_a) s'(z_b)>`` times the earlier layers' tangent kernel. So

    Theta^(0) = K^(0) = sb0^2 + sw0^2 x.x' / d                 (first pre-activation)
    Theta^(l+1) = K^(l+1) + sw1^2 <s'(u_a) s'(u_b)>_{K^(l)} Theta^(l)_ab ,

where ``<.>_{K}`` is the expectation over ``(u_a, u_b) ~ N(0, K)`` and ``K^(l+1) = sb1^2 + sw1^2
<s(u_a) s(u_b)>_{K^(l)}``. The output ``f`` is the last pre-activation (the readout is a layer
like the others, with scales ``sw1``, ``sb1``), so a network of ``depth`` hidden layers applies
the step ``depth`` times. ``<s' s'>`` is closed form for relu (``(pi - t)/(2 pi)``), erf and the
Gauss-net unit, Gauss--Hermite quadrature otherwise
(:meth:`~nnqft_ppl.networks.activations.Activation.gaussian_derivative_product`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..core.precision import float64
from ..core.validation import check_inputs, check_positive_float
from .architectures import MLP
from .kernels import layer_map

__all__ = ["ntk", "ntk_entry", "ntk_matrix", "learning_rate_limit", "check_learning_rate"]


def ntk_entry(arch: MLP, x1: jnp.ndarray, x2: jnp.ndarray) -> jnp.ndarray:
    """``Theta(x1, x2)`` for two single points ``(d,)``: the recursion on 2 x 2 blocks.

    Pure JAX (jit/vmap/grad-able); :func:`ntk_matrix` vectorises it over all pairs. The
    diagonal entries of the block are needed because every layer's Gaussian expectation
    depends on the variances at both points.
    """
    C = arch.input_covariance(jnp.stack([x1, x2]))  # K^(0) = Theta^(0)
    theta = C
    for _ in range(arch.depth):  # hidden-to-hidden layers, then the readout
        C_next = arch.sb1**2 + arch.sw1**2 * layer_map(arch, C)
        theta = C_next + arch.sw1**2 * layer_map(arch, C, derivative=True) * theta
        C = C_next
    # The exact kernel is symmetric; a Gauss-Hermite rule (tanh) is not quite symmetric in
    # the order of its two variances (~1e-7), and averaging both orderings keeps Theta_XX
    # exactly symmetric for the eigendecompositions downstream.
    return 0.5 * (theta[0, 1] + theta[1, 0])


@jax.jit(static_argnums=0)
def ntk_matrix(arch: MLP, X: jnp.ndarray, Y: jnp.ndarray) -> jnp.ndarray:
    """``Theta(x_a, y_b)`` for every pair, ``(P, d), (Q, d) -> (P, Q)``."""

    def entry(x, y):
        return ntk_entry(arch, x, y)

    return jax.vmap(jax.vmap(entry, (None, 0)), (0, None))(X, Y)


@float64
def ntk(arch: MLP, X1, X2=None) -> np.ndarray:
    """Infinite-width neural tangent kernel ``Theta(x, x')`` of ``arch`` (NTK parametrisation).

    Computed in float64 whatever the global ``jax_enable_x64`` setting.

    Args:
        arch: the architecture (any depth; gradient descent on its N(0, 1) parameters).
        X1: inputs ``(P, d_in)`` (``(P,)`` when ``d_in == 1``).
        X2: optional second set ``(Q, d_in)``; default ``X1``.

    Returns:
        float64 array ``(P, P)`` (or ``(P, Q)``), symmetric positive semi-definite for
        ``X2 = None``.

    Example:
        >>> from nnqft_ppl.networks.architectures import ReLUNet
        >>> ntk(ReLUNet(), [[1.0], [2.0]])  # no biases, equal signs: K = K0/2, <s's'> = 1/2
        array([[1., 2.],
               [2., 4.]])
    """
    X = check_inputs(X1, arch.d_in)
    Y = X if X2 is None else check_inputs(X2, arch.d_in)
    return np.asarray(ntk_matrix(arch, jnp.asarray(X), jnp.asarray(Y)))


def learning_rate_limit(arch: MLP, X_train) -> float:
    """``2 / lambda_max(Theta_XX)``: full-batch gradient descent on ``1/2 sum (f - y)^2`` with a
    learning rate at or above this diverges at infinite width.

    The linearised residual evolves as ``r_(t+1) = (1 - eta Theta_XX) r_t``, which shrinks along
    every eigenvector only if ``|1 - eta lambda| < 1``. At finite width the empirical tangent
    kernel fluctuates by O(1/sqrt(N)), so rates just below the limit can still diverge there.

    Example:
        >>> learning_rate_limit(ReLUNet(), [[1.0], [2.0]])  # Theta = [[1, 2], [2, 4]]
        0.4
    """
    return 2.0 / float(np.linalg.eigvalsh(ntk(arch, X_train))[-1])


def check_learning_rate(learning_rate, limit: float | None = None) -> float:
    """``learning_rate`` as a positive float below ``limit`` (if given), else a one-line
    ValueError naming the rate and the limit."""
    rate = check_positive_float(learning_rate, "learning_rate")
    if limit is not None and rate >= limit:
        raise ValueError(
            f"learning_rate={rate:.6g} is not below the stability limit "
            f"2 / lambda_max(Theta_XX) = {limit:.6g} of gradient descent on these training inputs"
        )
    return rate
