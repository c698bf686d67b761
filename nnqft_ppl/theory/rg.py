"""Wilsonian RG in the cutoff: how the measured quartic coupling runs with the box size L.

``lambda_m(T; L) = -kappa_4(T) / (24 I_4(T; L))`` changes with L only through ``I_4``. The flow
reports, per cutoff, the constant coupling that fits all tuples best (generalised least squares
with the correlator covariance, or ordinary least squares), the fitted slope of
``log|lambda| `` against ``log L`` with its R^2, and the analytic exponent where one exists:

* ReLU-net with ``sb0 = 0`` (and ``sb1 = 0`` for depth > 1): ``K_int(x, a y) = a K_int(x, y)``
  for ``a > 0``, so ``I_4(L) = L^(d+4) I_4(1)`` on a box and ``lambda ~ L^-(d+4)``
  (docs/physics.md §3; for d = 1 and positive inputs ``K_int = sw1^2 sw0^2 x y / 2`` on
  y > 0).
* Gauss-net: the integrals converge, ``lambda(L)`` tends to its all-space value and the flow
  stops (``flow.stops``; ``flow.limit`` is the all-space coupling).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy import stats

from ..core.linalg import whitening
from ..core.precision import float64
from ..core.tuples import as_tuple_array
from ..core.validation import check_inputs
from ..networks.architectures import MLP
from .couplings import measured_coupling
from .feynman import QUARTIC_FACTOR
from .vertex import integrals_converge, parse_cutoffs, vertex_integral

__all__ = ["RGFlow", "rg_flow", "analytic_exponent"]


@dataclass(frozen=True)
class RGFlow:
    """Result of :func:`rg_flow`.

    Attributes:
        coupling: constant coupling ``lambda(L)`` over ``cutoff``, coordinate ``stderr``.
        tuple_coupling: ``lambda_m`` over ``(tuple, cutoff)``.
        slope, slope_stderr, r2: least-squares fit of ``log|lambda|`` against ``log L``.
        analytic_exponent: ``-(d + 4)`` where known (see module docstring), else None.
        local_slope: ``d log|lambda| / d log L`` over ``cutoff`` (finite differences).
        limit: all-space coupling where the integrals converge (Gauss-net), else None.
        stops: True when the flow has stopped at the largest cutoffs
            (``|local_slope| < stop_tolerance`` there).
    """

    coupling: xr.DataArray
    tuple_coupling: xr.DataArray
    slope: float
    slope_stderr: float
    r2: float
    analytic_exponent: float | None
    local_slope: xr.DataArray
    limit: float | None
    stops: bool

    def summary(self) -> str:
        exponent = "unknown" if self.analytic_exponent is None else f"{self.analytic_exponent:g}"
        text = (
            f"slope d log|lambda| / d log L = {self.slope:.6g} +- {self.slope_stderr:.2g} "
            f"(R^2 = {self.r2:.6f}); analytic exponent: {exponent}"
        )
        if self.limit is not None:
            text += f"; all-space limit lambda = {self.limit:.6g}"
        return text + ("; the flow stops" if self.stops else "")


def analytic_exponent(arch: MLP) -> float | None:
    """``-(d + 4)`` if ``K_int`` is homogeneous of degree 1 in y (ReLU, zero biases); else None."""
    homogeneous = (
        arch.phi.positively_homogeneous and arch.sb0 == 0 and (arch.depth == 1 or arch.sb1 == 0)
    )
    return -(arch.d_in + 4.0) if homogeneous else None


def _constant_fit(I4: np.ndarray, k4: np.ndarray, covariance) -> tuple[np.ndarray, np.ndarray]:
    """GLS of ``k4 = -24 lambda I4`` at every cutoff at once: ``I4 (M, C)`` -> lambda, stderr."""
    D = -QUARTIC_FACTOR * I4
    if covariance is None:
        lam = (D * k4[:, None]).sum(0) / (D * D).sum(0)
        resid = k4[:, None] - D * lam
        dof = max(D.shape[0] - 1, 1)
        err = np.sqrt((resid**2).sum(0) / dof / (D * D).sum(0))
        return lam, err
    W = whitening(covariance).whitener
    A, b = W @ D, W @ k4
    info = (A * A).sum(0)
    return (A * b[:, None]).sum(0) / info, 1 / np.sqrt(info)


@float64
def rg_flow(arch: MLP, X, k4, cutoffs, covariance=None, stop_tolerance: float = 1e-2) -> RGFlow:
    """The running quartic coupling ``lambda(L)`` over a grid of cutoffs.

    Args:
        arch: architecture.
        X: inputs ``(P, d_in)``.
        k4: connected 4-pt values over ``tuple`` (xarray or ``(M,)`` array), e.g. from
            ``nq.exact_cumulant`` or ``stats.cumulant(4)``.
        cutoffs: sequence of at least 2 cutoffs L > 0.
        covariance: optional ``(M, M)`` covariance of ``k4`` (GLS per cutoff).
        stop_tolerance: the flow "stops" when ``|d log|lambda| / d log L| < stop_tolerance``
            between the two largest cutoffs.

    Returns:
        :class:`RGFlow`.

    Example:
        >>> k4 = nq.exact_cumulant(ReLUNet(), X, width=20)
        >>> flow = rg_flow(ReLUNet(), X, k4, cutoffs=np.geomspace(1, 10, 21))
        >>> flow.slope, flow.analytic_exponent      # -5.0, -5.0
    """
    X = check_inputs(X, arch.d_in)
    Ls, is_sequence = parse_cutoffs(cutoffs)
    if not is_sequence or len(np.unique(Ls)) < 2:
        raise ValueError(
            f"cutoffs must be a sequence of at least 2 distinct L > 0, got {cutoffs!r}"
        )
    order = np.argsort(Ls)
    Ls = Ls[order]
    k4 = as_tuple_array(k4, X.shape[0], 4, "k4")
    if k4.ndim != 1:
        raise ValueError(f"k4 must be one-dimensional over 'tuple', got dims {k4.dims}")
    I4 = vertex_integral(arch, X, 4, Ls)
    lam, err = _constant_fit(I4.values, k4.values, covariance)
    if np.any(lam == 0) or not np.all(np.isfinite(lam)):
        raise ValueError(
            "the fitted coupling is zero or undefined at some cutoff; "
            "the connected 4-pt function carries no signal"
        )
    logL, loglam = np.log(Ls), np.log(np.abs(lam))
    line = stats.linregress(logL, loglam)
    # an exact power law has zero residuals: R^2 = 1 (linregress gives NaN when y is constant)
    r2 = float(line.rvalue**2) if np.isfinite(line.rvalue) else 1.0
    slope_stderr = float(line.stderr) if len(Ls) > 2 else np.nan
    local = np.gradient(loglam, logL)
    limit = None
    if integrals_converge(arch):
        I_inf = vertex_integral(arch, X, 4, None).values
        limit = float(_constant_fit(I_inf[:, None], k4.values, covariance)[0][0])
    coupling = xr.DataArray(
        lam, dims=("cutoff",), coords={"cutoff": Ls, "stderr": ("cutoff", err)}, name="lambda"
    )
    return RGFlow(
        coupling=coupling,
        tuple_coupling=measured_coupling(arch, X, k4, Ls),
        slope=float(line.slope),
        slope_stderr=slope_stderr,
        r2=r2,
        analytic_exponent=analytic_exponent(arch),
        local_slope=xr.DataArray(
            local, dims=("cutoff",), coords={"cutoff": Ls}, name="local_slope"
        ),
        limit=limit,
        stops=bool(abs(local[-1]) < stop_tolerance),
    )
