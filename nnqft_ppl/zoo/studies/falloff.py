"""Fall-off study: the paper's normalised deviation ``m_n`` from the GP against the width N.

Per width: an ensemble (cached), the measured ``m_2, m_4, m_6`` with their jackknife
backgrounds, and from the exact single-hidden-layer moments (up to order 8) the honest sampling
errors of ``G_2`` and ``G_4`` (``Cov = E[f_m f_m'] - G_m G_m'`` over n networks), the exact
``m_4`` / ``m_6`` and the number of networks needed to resolve ``m_4`` at 3 backgrounds.

Claims:

* ``two_point``: the measured 2-pt function equals the kernel, ``max |z| < 5`` over every entry
  and width (z with the exact sampling errors);
* ``m4_slope``: over the widths where ``m_4 > 3 x`` its honest background, the weighted fit of
  ``log m_4`` against ``log N`` has slope within 3 sigma of -1 (needs 3 resolved widths);
* ``g6_heavy_tails`` (for heavy-tailed nets): at the smallest width, the diagonal 6-pt function
  ``E[f(x)^6]`` at the last input against its exact value, with the exact standard error
  ``sqrt((E[f^12] - E[f^6]^2) / n)`` and the jackknife one: consistent with the exact value
  within 3 exact errors, while the jackknife error understates the exact one more than 3-fold.
"""

from __future__ import annotations

import time

import numpy as np
import xarray as xr

from ...core.multisets import gp_moments
from ...core.progress import progress_bar
from ...networks.kernels import kernel
from ...oracle.exact import exact_moments, exact_single_input_moments, monomial_covariance
from ..results import Claim, StudyResult
from ..specs import register_study
from .common import cached_correlators, power_law_fit, spec_ensembles, within_sigma

__all__ = ["run_falloff"]

ORDERS = (2, 4, 6)


def width_row(stats, exact: dict, gp: dict) -> dict:
    """All per-width numbers of the fall-off table (see module docstring)."""
    n, P = stats.n_networks, stats.n_inputs
    row = {"n_networks": n}
    for order in ORDERS:
        dev = stats.deviation(order)
        row[f"m{order}"] = float(dev["m"])
        row[f"bg{order}"] = float(dev["background"])
        row[f"m{order}_exact"] = float(
            np.mean(np.abs(exact[order] - gp[order]) / np.abs(gp[order]))
        )
    G2, G4 = stats.moment(2).values, stats.moment(4).values
    C22 = monomial_covariance(exact, P, 2, 2) / n
    row["max_abs_z2"] = float(np.max(np.abs(G2 - gp[2]) / np.sqrt(np.diag(C22))))
    C44 = monomial_covariance(exact, P, 4, 4) / n
    rel = 1 / np.abs(gp[4])
    row["bg4_exact"] = float(np.mean(np.sqrt(np.diag(C44)) * rel))
    grad = np.sign(G4 - gp[4]) * rel / G4.size  # delta method for m_4
    row["m4_err"] = float(np.sqrt(grad @ C44 @ grad))
    row["n_needed_m4"] = float(n * (3 * row["bg4_exact"] / row["m4_exact"]) ** 2)
    # Diagonal 6-pt function at the last input: exact value and exact / jackknife errors.
    diag = ",".join([str(P - 1)] * 6)
    m = exact_single_input_moments(stats.arch, stats.X[-1], stats.width, 12)
    row["g6_diag"] = float(stats.moment(6).sel(tuple=diag))
    row["g6_diag_exact"] = float(m[6])
    row["g6_diag_se_exact"] = float(np.sqrt((m[12] - m[6] ** 2) / n))
    row["g6_diag_se_batch"] = float(stats.stderr(6, kind="moment").sel(tuple=diag))
    return row


@register_study("falloff")
def run_falloff(spec, cache=None, progress: bool = False) -> StudyResult:
    """Run a ``study = "falloff"`` spec: table over ``width`` and the two claims."""
    arch = spec.architecture_for()
    X = spec.inputs_for(arch)
    sizes = spec.ensemble_sizes()
    gp = gp_moments(kernel(arch, X), 6)
    rows = []
    with progress_bar(len(sizes), f"{spec.name}: widths", progress) as advance:
        for N, ensemble in spec_ensembles(spec, arch, X, max_order=6).items():
            start = time.perf_counter()
            stats = cached_correlators(ensemble, cache)
            exact = exact_moments(arch, X, N, 8)
            rows.append(width_row(stats, exact, gp) | {"seconds": time.perf_counter() - start})
            advance(1)
    widths = list(sizes)
    table = xr.Dataset(
        {k: ("width", np.array([r[k] for r in rows])) for k in rows[0]},
        coords={"width": widths},
        attrs={"architecture": arch.name, "inputs": X.ravel().tolist()},
    )
    result = StudyResult(tables={"falloff": table})
    wanted = set(spec.claims or ("two_point", "m4_slope"))
    if "two_point" in wanted:
        z = float(table.max_abs_z2.max())
        result.claims.append(
            Claim(
                "two_point",
                f"{arch.name}: the measured 2-pt function equals the GP kernel at every width",
                z,
                0.0,
                0.0,
                "GP kernel (z = 0)",
                "max |z| < 5 over all entries and widths, z with the exact sampling errors",
                z < 5,
                f"{len(widths)} widths x {X.shape[0] * (X.shape[0] + 1) // 2} entries",
            )
        )
    if "m4_slope" in wanted:
        result.claims.append(_slope_claim(arch, table))
    if "g6_heavy_tails" in wanted:
        result.claims.append(_heavy_tail_claim(arch, table))
    return result


def _heavy_tail_claim(arch, table: xr.Dataset) -> Claim:
    t = table.isel(width=0)
    gap = float(t.g6_diag - t.g6_diag_exact)
    z_exact, z_batch = gap / float(t.g6_diag_se_exact), gap / float(t.g6_diag_se_batch)
    understated = float(t.g6_diag_se_exact / t.g6_diag_se_batch)
    return Claim(
        "g6_heavy_tails",
        f"{arch.name} N={int(t.width)}: heavy tails: the 6-pt function's batch errors understate "
        "its exact sampling error",
        float(t.g6_diag), float(t.g6_diag_se_exact), float(t.g6_diag_exact),
        "exact E[f(x)^6] (exact standard error from E[f^12])",
        "|z| < 3 with the exact error, and exact / jackknife error > 3",
        abs(z_exact) < 3 and understated > 3,
        f"measured / exact = {float(t.g6_diag / t.g6_diag_exact):.3g}; z = {z_exact:.2g} with "
        f"the exact error, {z_batch:.2g} with the jackknife error, which is {understated:.3g}x "
        f"too small",
    )  # fmt: skip


def _slope_claim(arch, table: xr.Dataset) -> Claim:
    resolved = table.m4 > 3 * table.bg4_exact
    used = table.where(resolved, drop=True)
    rule = (
        "weighted fit of log m_4 vs log N over widths with m_4 > 3 x its exact background; "
        "|slope + 1| < 3 sigma, at least 3 widths"
    )
    title = f"{arch.name}: non-Gaussianity m_4 falls as 1/N"
    if used.sizes["width"] < 3:
        return Claim(
            "m4_slope", title, float("nan"), float("nan"), -1.0, "analytic", rule, False,
            f"only {used.sizes['width']} width(s) resolved; more networks needed "
            f"(see n_needed_m4)",
        )  # fmt: skip
    slope, err, chi2, dof = power_law_fit(used.width, used.m4, used.m4_err)
    return Claim(
        "m4_slope",
        title,
        slope,
        err,
        -1.0,
        "analytic (exact oracle: kappa_4 ~ 1/N)",
        rule,
        within_sigma(slope, err, -1.0),
        f"widths {used.width.values.tolist()}; chi2 = {chi2:.3g} on {dof} dof",
    )
