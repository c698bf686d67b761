"""Covariances, whitening, chi-square and least squares: one home, one tolerance.

Correlator estimates at nearby inputs are strongly correlated, so their covariance matrices are
numerically singular (eigenvalues spanning 16 decades at the classic inputs). Every statistic
here works on the eigen-directions of the covariance whose eigenvalues exceed ``rtol`` times the
largest (:data:`DEFAULT_RTOL`); the rest are rounding-level and dropped, and the number kept is
reported as the *rank* (the number of independent numbers the data hold).

The factor, not the inverse, is what is needed (whitened residuals ``W r`` with ``W C W^T = 1``),
so the decomposition is ``scipy.linalg.eigh``; a pseudo-inverse (``scipy.linalg.pinvh``) would
square the condition number of the chi-square sums.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg
from scipy import stats as _stats

__all__ = [
    "DEFAULT_RTOL",
    "as_covariance",
    "Whitening",
    "whitening",
    "ChiSquare",
    "chi_square",
    "LeastSquares",
    "whitened_least_squares",
    "generalized_least_squares",
    "ordinary_least_squares",
]

#: Relative eigenvalue cutoff below which covariance directions count as rounding noise.
DEFAULT_RTOL = 1e-12
#: Design columns whose (scaled) singular values fall below this are not identified.
_IDENTIFIED = 1e-7


def as_covariance(covariance, size: int, name: str = "covariance") -> np.ndarray:
    """A finite symmetric ``(size, size)`` float64 matrix (xarray or array input)."""
    C = np.asarray(getattr(covariance, "values", covariance), dtype=np.float64)
    if C.shape != (size, size):
        raise ValueError(f"{name} must have shape ({size}, {size}), got {C.shape}")
    if not np.all(np.isfinite(C)):
        raise ValueError(f"{name} contains NaN or inf")
    return 0.5 * (C + C.T)


class Whitening(NamedTuple):
    """The kept eigen-directions of a covariance C, largest first.

    Attributes:
        eigenvalues: ``(r,)`` kept eigenvalues.
        eigenvectors: ``(M, r)``.
        whitener: ``(r, M)`` ``W`` with ``W C W^T = I_r``: ``W x`` has unit covariance.
        root: ``(M, r)`` with ``root @ root.T`` the kept part of C (draws ``root @ eps``).
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    whitener: np.ndarray
    root: np.ndarray

    @property
    def rank(self) -> int:
        """Number of kept directions: the independent numbers the data resolve."""
        return len(self.eigenvalues)


def whitening(covariance, rtol: float = DEFAULT_RTOL) -> Whitening:
    """Eigen-decomposition of a covariance restricted to eigenvalues above ``rtol * max``.

    Example:
        >>> w = whitening(stats.covariance(4)); z = w.whitener @ residual   # ~ N(0, 1)^rank
    """
    C = np.asarray(getattr(covariance, "values", covariance), dtype=np.float64)
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"a covariance must be a square matrix, got shape {C.shape}")
    if not 0 < rtol < 1:
        raise ValueError(f"rtol must be in (0, 1), got {rtol}")
    evals, evecs = scipy.linalg.eigh(0.5 * (C + C.T))
    if not evals[-1] > 0:
        raise ValueError("covariance is zero or not positive semi-definite")
    keep = evals > rtol * evals[-1]
    evals, evecs = evals[keep][::-1], evecs[:, keep][:, ::-1]
    root = np.sqrt(evals)
    return Whitening(evals, evecs, evecs.T / root[:, None], evecs * root[None, :])


class ChiSquare(NamedTuple):
    """A chi-square statistic ``value`` on ``dof`` degrees of freedom and its ``p_value``."""

    value: float
    dof: int
    p_value: float

    @classmethod
    def of(cls, value: float, dof: int) -> ChiSquare:
        """The statistic with its upper-tail p-value (NaN when ``dof <= 0``)."""
        value, dof = float(value), int(dof)
        p = float(_stats.chi2.sf(value, dof)) if dof > 0 and np.isfinite(value) else np.nan
        return cls(value, dof, p)

    @property
    def z(self) -> float:
        """The same tail probability as a one-sided Gaussian z-score."""
        return float(_stats.norm.isf(max(self.p_value, 1e-300)))


def chi_square(residual, covariance, rtol: float = DEFAULT_RTOL, n_params: int = 0) -> ChiSquare:
    """``r^T C^+ r`` on the resolved eigen-directions of C; ``dof = rank - n_params``.

    Args:
        residual: ``(M,)`` estimate minus reference (array or xarray).
        covariance: ``(M, M)`` covariance of the estimate.
        rtol: relative eigenvalue cutoff (:data:`DEFAULT_RTOL`).
        n_params: parameters fitted to the same data (subtracted from the rank).
    """
    r = np.asarray(getattr(residual, "values", residual), dtype=np.float64).reshape(-1)
    w = whitening(as_covariance(covariance, r.size), rtol)
    z = w.whitener @ r
    return ChiSquare.of(z @ z, w.rank - n_params)


class LeastSquares(NamedTuple):
    """Estimates of a linear model ``k ~ D theta``.

    Attributes:
        theta: ``(p,)`` estimates.
        covariance: ``(p, p)`` their covariance.
        chi_square: goodness of fit (``value`` NaN when no data covariance was given).
        rank: number of data directions used (the resolved rank of the data covariance).
    """

    theta: np.ndarray
    covariance: np.ndarray
    chi_square: ChiSquare
    rank: int

    @property
    def stderr(self) -> np.ndarray:
        return np.sqrt(np.diag(self.covariance))


def _solve_scaled(A: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``argmin |z - A theta|`` and ``(A^T A)^-1``, with the columns of A scaled to unit norm
    (design entries of different basis functions differ by many decades)."""
    p = A.shape[1]
    col = np.linalg.norm(A, axis=0)
    if np.any(col == 0):
        raise ValueError(
            f"parameter {int(np.argmin(col))} does not affect the prediction (zero design column)"
        )
    U, s, Vt = np.linalg.svd(A / col, full_matrices=False)
    if len(s) < p or s.min() < _IDENTIFIED * s.max():
        raise ValueError(
            f"the {p} parameters are not identified by these data (design of numerical rank "
            f"{int(np.sum(s >= _IDENTIFIED * s.max()))} on {A.shape[0]} resolved directions); "
            "use a form with fewer terms"
        )
    theta = (Vt.T @ ((U.T @ z) / s)) / col
    cov = (Vt.T / s**2) @ Vt / np.outer(col, col)
    return theta, cov


def whitened_least_squares(A, z) -> LeastSquares:
    """Least squares on whitened data ``z ~ N(A theta, I)``: ``A (r, p)``, ``z (r,)``."""
    A, z = np.asarray(A, dtype=np.float64), np.asarray(z, dtype=np.float64)
    theta, cov = _solve_scaled(A, z)
    resid = z - A @ theta
    return LeastSquares(theta, cov, ChiSquare.of(resid @ resid, len(z) - A.shape[1]), len(z))


def generalized_least_squares(D, k, covariance, rtol: float = DEFAULT_RTOL) -> LeastSquares:
    """GLS of ``k ~ D theta`` with data covariance C on its resolved directions.

    Args:
        D: ``(M, p)`` design; k: ``(M,)`` data; covariance: ``(M, M)``.
        rtol: relative eigenvalue cutoff of C (:data:`DEFAULT_RTOL`).
    """
    D, k = np.asarray(D, dtype=np.float64), np.asarray(k, dtype=np.float64)
    w = whitening(as_covariance(covariance, k.size), rtol)
    return whitened_least_squares(w.whitener @ D, w.whitener @ k)


def ordinary_least_squares(D, k, covariance=None) -> LeastSquares:
    """Unweighted least squares of ``k ~ D theta`` with an honest (sandwich) covariance.

    With a data covariance C the parameter covariance is ``B C B^T``, ``B = (D^T D)^-1 D^T``,
    whatever the weighting; without one, the residual variance scales ``(D^T D)^-1``. Useful
    where the covariance is too ill-conditioned for a fully weighted fit to be robust against a
    form that is only approximately right (its tiniest directions would drive the fit).
    """
    D, k = np.asarray(D, dtype=np.float64), np.asarray(k, dtype=np.float64)
    theta, unscaled = _solve_scaled(D, k)
    resid = k - D @ theta
    dof = len(k) - D.shape[1]
    if covariance is None:
        cov = unscaled * (resid @ resid / dof if dof > 0 else np.nan)
    else:
        B = unscaled @ D.T
        cov = B @ as_covariance(covariance, k.size) @ B.T
    return LeastSquares(theta, cov, ChiSquare.of(np.nan, dof), len(k))
