"""What every study shares: claims, results, cached ensembles and small statistics.

A study returns a :class:`StudyResult`: named tables (xarray Datasets), claims, posteriors
(ArviZ DataTrees) and notes. Everything is JSON- or xarray-able, so the report can be rebuilt
from the stored results alone.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from ..correlators import BatchErrorWarning, CorrelatorStats, correlators

__all__ = ["Claim", "StudyResult", "cached_correlators", "power_law_fit", "within_sigma"]


@dataclass
class Claim:
    """One checkable statement: measured value with error, the reference, the rule, pass/fail.

    Example:
        >>> Claim("falloff_m4", "m_4 falls as 1/N", -0.98, 0.05, -1.0, "analytic",
        ...       "|slope + 1| < 3 sigma", True)
    """

    key: str
    title: str
    measured: float
    error: float
    reference: float
    reference_label: str
    rule: str
    passed: bool
    details: str = ""

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"{verdict}: {self.title}: measured {fmt(self.measured, self.error)} vs "
            f"{self.reference_label} {self.reference:.6g} ({self.rule})"
        )


@dataclass
class StudyResult:
    """Tables over named dims, claims, posteriors and notes of one spec."""

    tables: dict[str, xr.Dataset] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    posteriors: dict[str, xr.DataTree] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def claims_json(self) -> str:
        return json.dumps([asdict(c) for c in self.claims])


def fmt(value: float, error: float | None = None) -> str:
    """``1.234e-3 ± 5.6e-5`` (or just the value when the error is 0 / NaN)."""
    if error is None or not np.isfinite(error) or error == 0:
        return f"{value:.6g}"
    return f"{value:.4g} ± {error:.2g}"


def within_sigma(measured: float, error: float, reference: float, k: float = 3.0) -> bool:
    """``|measured - reference| < k * error`` (False for a non-finite error)."""
    return bool(np.isfinite(error) and abs(measured - reference) < k * error)


def power_law_fit(x, y, yerr) -> tuple[float, float, float, int]:
    """Weighted least squares of ``log y = a + s log x`` with errors ``yerr / y``.

    Returns ``(slope, slope_stderr, chi2, dof)``; the stderr is the plain weighted-LSQ one
    (not rescaled by chi2: the chi2 is reported next to it).
    """
    x, y, yerr = (np.asarray(v, dtype=np.float64) for v in (x, y, yerr))
    lx, ly, w = np.log(x), np.log(np.abs(y)), (np.abs(y) / yerr) ** 2
    A = np.stack([np.ones_like(lx), lx], axis=1)
    F = A.T @ (A * w[:, None])
    cov = np.linalg.inv(F)
    beta = cov @ (A.T @ (w * ly))
    chi2 = float(np.sum(w * (ly - A @ beta) ** 2))
    return float(beta[1]), float(np.sqrt(cov[1, 1])), chi2, len(x) - 2


def _ensemble_key(arch, X, width: int, n: int, seed: int, max_order: int, n_batches: int) -> str:
    text = json.dumps(
        [arch.to_dict(), np.round(X, 15).tolist(), width, n, seed, max_order, n_batches]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_correlators(
    arch,
    X,
    width: int,
    n_networks: int,
    seed: int,
    max_order: int,
    n_batches: int,
    cache: Path | None,
    progress: bool = False,
) -> CorrelatorStats:
    """``nq.correlators`` whose result is stored under ``cache`` (atomically) and reused.

    The store's name hashes every setting, so a changed spec never reuses a stale ensemble, and
    two specs that need the same ensemble (fall-off and coupling studies) sample it once.
    Batch-error warnings are silenced here: the studies use the exact sampling covariance.
    """
    path = None
    if cache is not None:
        key = _ensemble_key(arch, X, width, n_networks, seed, max_order, n_batches)
        path = Path(cache) / f"{arch.name}_N{width}_{key}.zarr"
        if path.exists():
            return CorrelatorStats.load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BatchErrorWarning)
        stats = correlators(
            arch,
            X,
            width,
            n_networks,
            seed,
            max_order=max_order,
            n_batches=n_batches,
            progress=progress,
            check_errors=False,
        )
    if path is not None:
        stats.save(path)
    return stats
