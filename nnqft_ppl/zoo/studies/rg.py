"""RG study: the quartic coupling's flow with the box cutoff L, per input dimension.

The connected 4-pt function comes from the exact oracle at ``theory.oracle_width`` (noise
free), so the flow is a statement about the theory: ReLU-net with zero biases has
``I_4(L) = L^(d+4) I_4(1)``, hence slope ``-(d+4)`` to quadrature accuracy; Gauss-net's vertex
integrals converge and the flow stops at the all-space coupling.

Claims per dimension: ``rg_slope_d<d>`` (|slope - analytic| < 1e-6, quadrature accuracy) or,
without an analytic exponent, ``rg_stops_d<d>`` (local slope at the largest L below 0.01 and
``lambda(L_max)`` within 1% of the all-space limit).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ...core.progress import progress_bar
from ...oracle.exact import exact_cumulant
from ...theory.rg import rg_flow
from ..results import Claim, StudyResult, exact_claim
from ..specs import register_study

__all__ = ["run_rg"]

QUADRATURE_TOLERANCE = 1e-6


@register_study("rg")
def run_rg(spec, cache=None, progress: bool = False) -> StudyResult:
    """Run a ``study = "rg"`` spec over ``theory.dimensions`` (default: the spec's d_in)."""
    dims = spec.theory.dimensions or [spec.architecture.d_in]
    N = spec.theory.oracle_width or 20
    Ls = spec.rg_cutoffs()
    result = StudyResult()
    tables = []
    with progress_bar(len(dims), f"{spec.name}: dimensions", progress) as advance:
        for d in dims:
            arch = spec.architecture_for(d)
            X = spec.inputs_for(arch)
            flow = rg_flow(arch, X, exact_cumulant(arch, X, N, 4), cutoffs=Ls)
            tables.append(
                xr.Dataset(
                    {
                        "lambda": ("cutoff", flow.coupling.values),
                        "lambda_err": ("cutoff", flow.coupling.stderr.values),
                        "local_slope": ("cutoff", flow.local_slope.values),
                    },
                    coords={"cutoff": Ls},
                ).expand_dims(dimension=[d])
            )
            result.claims.append(_claim(arch, d, flow))
            advance(1)
    table = xr.concat(tables, dim="dimension")
    table.attrs = {"architecture": spec.architecture_for().name, "oracle_width": N}
    result.tables["rg"] = table
    return result


def _claim(arch, d: int, flow) -> Claim:
    if flow.analytic_exponent is not None:
        return exact_claim(
            f"rg_slope_d{d}",
            f"{arch.name} d={d}: RG slope of log|lambda| vs log L equals -(d+4)",
            flow.slope, flow.analytic_exponent, "analytic -(d+4)", QUADRATURE_TOLERANCE,
            f"|slope - analytic| < {QUADRATURE_TOLERANCE:g} (noise-free oracle: quadrature "
            "accuracy)",
            f"R^2 = {flow.r2:.8f}",
        )  # fmt: skip
    last = float(flow.local_slope.values[-1])
    ratio = float(flow.coupling.values[-1] / flow.limit) if flow.limit else np.nan
    stops = abs(last) < 0.01 and abs(ratio - 1) < 0.01
    return Claim(
        f"rg_stops_d{d}",
        f"{arch.name} d={d}: the flow stops at the all-space coupling",
        last, np.nan, np.nan, "",
        "|local slope d log|lambda| / d log L at the largest cutoff| < 0.01 and "
        "|lambda(L_max) / lambda(all space) - 1| < 0.01",
        "PASS" if stops else "FAIL",
        details=f"local slope {last:.2g}; lambda(L_max) / lambda(all space) = {ratio:.6f}; "
        f"the slope at the smallest cutoff is {float(flow.local_slope.values[0]):.3g}",
    )  # fmt: skip
