"""The trained ensemble at infinite width: a Gaussian process fixed by the kernels K and Theta.

At infinite width a network trained by full-batch gradient descent on
``L = 1/2 sum_i (f(x_i) - y_i)^2`` moves like its linearisation in the parameters, with the
deterministic tangent kernel ``Theta`` of :mod:`nnqft_ppl.networks.ntk` (Lee et al. 2019). One step
with learning rate ``eta`` changes the outputs by ``-eta Theta(x, X) (f_t(X) - y)``, so the
training residual ``r_t = f_t(X) - y`` obeys ``r_(t+1) = (1 - eta Theta_XX) r_t`` and

    f_t(X) = f_0(X) + A_t (y - f_0(X)),          A_t = 1 - (1 - eta Theta_XX)^t .

Summing the steps at a test input, ``f_t(x) - f_0(x) = -eta Theta_xX sum_(s<t) (1 - eta
Theta_XX)^s r_0 = Theta_xX Theta_XX^-1 A_t (y - f_0(X))`` (the geometric series), i.e.

    f_t(x) = f_0(x) + T_t(x) (y - f_0(X)),        T_t = Theta_xX Theta_XX^-1 A_t ,

a linear map of the initial function ``f_0``, itself the GP with kernel ``K``. Hence the trained
ensemble is Gaussian with

    mean        mu_t(x) = T_t(x) y
    covariance  Sigma_t(x, x') = K(x, x') + T_t(x) K_XX T_t(x')^T
                                 - T_t(x) K_Xx' - K_xX T_t(x')^T .

``t = 0`` is the untrained GP (mean 0, covariance K); ``t -> infinity`` (``steps=None``) has
``A = 1``: the mean interpolates the data, ``Theta_xX Theta_XX^-1 y``, and at a training input the
variance vanishes. Gradient flow (``d f / d tau = -eta Theta (f - y)``, time ``tau = steps``) has
``A = 1 - exp(-eta t Theta_XX)``, the small-``eta`` limit of the discrete form at fixed ``eta t``.

Everything is evaluated in the eigenbasis ``Theta_XX = V diag(lambda) V^T``: ``Theta_XX^-1 A_t``
is ``V diag(g(lambda)) V^T`` with ``g = (1 - (1 - eta lambda)^t) / lambda`` (no explicit inverse,
and no cancellation for small ``eta lambda t`` thanks to ``expm1``/``log1p``). Eigenvalues below
``n_train * machine epsilon * lambda_max`` are treated as exact zeros: gradient descent never
moves along them, and ``Theta_xX`` annihilates them too (a direction with ``v^T Theta_XX v = 0``
has zero feature vector), so the converged limit is the pseudo-inverse one.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..core.validation import check_inputs
from ..networks.architectures import MLP
from ..networks.kernels import kernel
from ..networks.ntk import check_learning_rate, ntk

__all__ = ["NTKPrediction", "ntk_predict", "ntk_linearized_outputs", "ntk_transfer"]


class NTKPrediction(NamedTuple):
    """Infinite-width trained ensemble at the test inputs; unpacks as ``mean, covariance``.

    Attributes:
        mean: ``(P_test,)`` ensemble mean ``mu_t(x) = Theta_xX Theta_XX^-1 A_t y``.
        covariance: ``(P_test, P_test)`` ensemble covariance ``Sigma_t(x, x')``.
    """

    mean: np.ndarray
    covariance: np.ndarray


def _check_steps(steps) -> int | None:
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer or None (converged), got {steps!r}")
    return int(steps)


def _check_targets(y_train, n_train: int) -> np.ndarray:
    y = np.asarray(y_train, dtype=np.float64)
    if y.shape != (n_train,):
        raise ValueError(f"y_train must have shape (n_train,) = ({n_train},), got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("y_train contains NaN or inf")
    return y


def _spectral_gain(lam, steps, learning_rate, gradient_flow) -> np.ndarray:
    """``g(lambda)`` with ``Theta_XX^-1 A_t = V diag(g) V^T``; 0 on the numerical null space."""
    lam = np.asarray(lam, dtype=np.float64)
    null = lam <= lam.size * np.finfo(np.float64).eps * max(lam.max(), 0.0)
    safe = np.where(null, 1.0, lam)
    if steps is None:
        gain = 1.0 / safe
    elif gradient_flow:
        gain = -np.expm1(-learning_rate * steps * safe) / safe
    else:
        x = learning_rate * safe
        # (1 - x)^t via exp(t log1p(-x)) keeps full relative accuracy of 1 - (1 - x)^t when
        # x t is small; for 1 <= x < 2 (allowed, still contracting) the base is <= 0.
        with np.errstate(invalid="ignore", divide="ignore"):
            smooth = -np.expm1(steps * np.log1p(-x))
        gain = np.where(x < 1, smooth, 1.0 - (1.0 - x) ** steps) / safe
    return np.where(null, 0.0, gain)


def ntk_transfer(
    arch: MLP, X_train, X_test, steps, learning_rate, *, gradient_flow: bool = False
) -> np.ndarray:
    """The linear map ``T_t = Theta_xX Theta_XX^-1 A_t``, ``(P_test, n_train)``.

    At infinite width every network of the ensemble trains to
    ``f_t(x) = f_0(x) + T_t (y - f_0(X))``. Arguments as in :func:`ntk_predict`.

    Example:
        >>> T = ntk_transfer(ErfNet(), X_train, X_test, steps=100, learning_rate=0.1)
    """
    steps = _check_steps(steps)
    X = check_inputs(X_train, arch.d_in)
    Xt = check_inputs(X_test, arch.d_in)
    lam, V = np.linalg.eigh(ntk(arch, X))  # lam[-1]: the stability limit is 2 / lam[-1]
    rate = check_learning_rate(learning_rate, None if gradient_flow else 2.0 / lam[-1])
    gain = _spectral_gain(lam, steps, rate, gradient_flow)
    return (ntk(arch, Xt, X) @ V) * gain @ V.T


def ntk_predict(
    arch: MLP,
    X_train,
    y_train,
    X_test,
    steps: int | None,
    learning_rate: float,
    *,
    gradient_flow: bool = False,
) -> NTKPrediction:
    """Mean and covariance of the infinite-width ensemble after gradient descent.

    Full-batch gradient descent on ``1/2 sum_i (f(x_i) - y_i)^2`` over the N(0, 1) parameters
    (NTK parametrisation), starting from the untrained ensemble; computed in float64 whatever
    the global ``jax_enable_x64`` setting.

    Args:
        arch: the architecture (any depth).
        X_train: training inputs ``(n_train, d_in)``; y_train: targets ``(n_train,)``.
        X_test: inputs ``(P_test, d_in)`` at which the ensemble is described.
        steps: number of gradient-descent steps (0 = untrained), or ``None`` for the converged
            limit ``t -> infinity``.
        learning_rate: ``eta``; must be below ``2 / lambda_max(Theta_XX)``
            (:func:`~nnqft_ppl.networks.ntk.learning_rate_limit`) unless ``gradient_flow``.
        gradient_flow: continuous time instead, ``A = 1 - exp(-eta steps Theta_XX)``.

    Returns:
        :class:`NTKPrediction` ``(mean (P_test,), covariance (P_test, P_test))``.

    Example:
        >>> X = np.linspace(-1, 1, 8)[:, None]
        >>> mean, cov = ntk_predict(ErfNet(), X, np.sin(3 * X[:, 0]), [[0.1], [0.5]],
        ...                         steps=None, learning_rate=0.1)
    """
    X = check_inputs(X_train, arch.d_in)
    Xt = check_inputs(X_test, arch.d_in)
    y = _check_targets(y_train, X.shape[0])
    T = ntk_transfer(arch, X, Xt, steps, learning_rate, gradient_flow=gradient_flow)
    cross = T @ kernel(arch, Xt, X).T  # T_t(x) K_Xx'
    cov = kernel(arch, Xt) + T @ kernel(arch, X) @ T.T - cross - cross.T
    return NTKPrediction(mean=T @ y, covariance=0.5 * (cov + cov.T))


def ntk_linearized_outputs(
    arch: MLP,
    X_train,
    y_train,
    X_test,
    initial_train,
    initial_test,
    steps: int | None,
    learning_rate: float,
    *,
    gradient_flow: bool = False,
) -> np.ndarray:
    """Each network's infinite-width trajectory from its own initial function.

    ``f_t(x) = f_0(x) + T_t (y - f_0(X))`` per network: what the network would output after
    ``steps`` steps if its tangent kernel were the infinite-width one and stayed fixed. Its
    ensemble mean and covariance are exactly those of :func:`ntk_predict`, so subtracting it from
    the trained finite-width outputs of the same networks isolates the finite-width effect with
    far smaller noise than either term alone (a control variate).

    Args:
        initial_train: untrained outputs at ``X_train``, ``(n, n_train)``.
        initial_test: untrained outputs at ``X_test``, ``(n, P_test)``.
        Other arguments as in :func:`ntk_predict`.

    Returns:
        float64 array ``(n, P_test)``.

    Example:
        >>> f0 = sample_outputs(arch, np.vstack([X_train, X_test]), width, n, seed)
        >>> lin = ntk_linearized_outputs(arch, X_train, y, X_test, f0[:, :8], f0[:, 8:], 100, 0.1)
    """
    X = check_inputs(X_train, arch.d_in)
    Xt = check_inputs(X_test, arch.d_in)
    y = _check_targets(y_train, X.shape[0])
    f0_train = np.asarray(initial_train, dtype=np.float64)
    f0_test = np.asarray(initial_test, dtype=np.float64)
    if f0_train.ndim != 2 or f0_train.shape[1] != X.shape[0]:
        raise ValueError(f"initial_train must have shape (n, {X.shape[0]}), got {f0_train.shape}")
    if f0_test.shape != (f0_train.shape[0], Xt.shape[0]):
        raise ValueError(
            f"initial_test must have shape ({f0_train.shape[0]}, {Xt.shape[0]}), "
            f"got {f0_test.shape}"
        )
    T = ntk_transfer(arch, X, Xt, steps, learning_rate, gradient_flow=gradient_flow)
    return f0_test + (y[None, :] - f0_train) @ T.T
