"""Small statistical tools shared by tests, fits and the report."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as _stats

__all__ = ["ChiSquare", "chi_square"]


@dataclass(frozen=True)
class ChiSquare:
    """``value`` of a chi-square statistic with ``dof`` degrees of freedom and its ``p_value``."""

    value: float
    dof: int
    p_value: float

    @property
    def z(self) -> float:
        """The same tail probability as a one-sided Gaussian z-score."""
        return float(_stats.norm.isf(max(self.p_value, 1e-300)))


def chi_square(residual, covariance, rtol: float = 1e-10) -> ChiSquare:
    """``r^T C^+ r`` on the eigen-directions of C above ``rtol * max eigenvalue``.

    Correlator entries are strongly correlated (nearby inputs), so C is often numerically
    singular; the directions it does not resolve are dropped and the dof count says how many
    remain.

    Args:
        residual: ``(M,)`` estimate minus reference.
        covariance: ``(M, M)`` covariance of the estimate.
    """
    r = np.asarray(residual, dtype=np.float64)
    C = np.asarray(covariance, dtype=np.float64)
    if C.shape != (r.size, r.size):
        raise ValueError(f"covariance shape {C.shape} does not match residual size {r.size}")
    w, V = np.linalg.eigh(0.5 * (C + C.T))
    keep = w > rtol * w.max()
    y = V[:, keep].T @ r
    value = float(np.sum(y**2 / w[keep]))
    dof = int(keep.sum())
    return ChiSquare(value, dof, float(_stats.chi2.sf(value, dof)))
