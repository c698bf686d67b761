"""Figures (matplotlib, Agg backend): the one module that draws; imported by report and CLI only.

Each function takes the library's result objects, returns the matplotlib Figure, and writes it to
``path`` when one is given. matplotlib is imported inside the functions so that importing
:mod:`nnqft_ppl` never loads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_rg_flow", "plot_correlator_comparison"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, path):
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def plot_rg_flow(flows: dict, path=None, title: str = "RG flow of the quartic coupling"):
    """``|lambda(L)|`` against the cutoff L (log-log) for one or more flows.

    Args:
        flows: ``{label: RGFlow}`` (or one :class:`nnqft_ppl.rg.RGFlow`).
        path: optional output file (png, pdf, svg).

    Each flow is drawn with its error band, its fitted power law (slope and R^2 in the
    legend), the analytic power law where known (dashed) and the all-space limit where the
    integrals converge (dotted).

    Example:
        >>> plot_rg_flow({"ReLU d=1": flow}, "rg.png")
    """
    plt = _pyplot()
    if not isinstance(flows, dict):
        flows = {"": flows}
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, (label, flow) in enumerate(flows.items()):
        color = f"C{i}"
        L = flow.coupling.cutoff.values
        lam = np.abs(flow.coupling.values)
        err = flow.coupling.stderr.values
        ax.loglog(L, lam, "o", color=color, ms=4, label=f"{label} measured".strip())
        ax.fill_between(L, np.clip(lam - err, lam * 1e-3, None), lam + err, color=color, alpha=0.2)
        fit = (
            lam[0]
            * (L / L[0]) ** flow.slope
            * np.exp(np.mean(np.log(lam) - np.log(lam[0] * (L / L[0]) ** flow.slope)))
        )
        ax.loglog(
            L,
            fit,
            "-",
            color=color,
            lw=1,
            label=f"fit: slope {flow.slope:.3f}, $R^2$ = {flow.r2:.4f}",
        )
        if flow.analytic_exponent is not None:
            ref = lam[-1] * (L / L[-1]) ** flow.analytic_exponent
            ax.loglog(
                L,
                ref,
                "--",
                color=color,
                lw=1,
                label=f"analytic $L^{{{flow.analytic_exponent:g}}}$",
            )
        if flow.limit is not None:
            ax.axhline(abs(flow.limit), ls=":", color=color, lw=1, label="all-space limit")
    ax.set_xlabel("cutoff $L$")
    ax.set_ylabel(r"$|\lambda(L)|$")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return _finish(fig, path)


def plot_correlator_comparison(measured, predicted, path=None, title: str | None = None):
    """Measured against predicted correlator values, one point per index multiset.

    Args:
        measured: xarray over ``tuple``; a ``stderr`` coordinate (or none) gives error bars.
        predicted: xarray over ``tuple`` (same tuples), optionally with ``stderr``.
        path: optional output file.

    Left: predicted vs measured with the diagonal; right: pull ``(measured - predicted) / sigma``
    per tuple with the +-2 band, sigma combining both errors where given.

    Example:
        >>> plot_correlator_comparison(stats_g6, eft_g6, "g6.png", title="G_6, ReLU N=20")
    """
    plt = _pyplot()
    m = np.asarray(measured.values)
    p = np.asarray(predicted.values)
    if m.shape != p.shape:
        raise ValueError(f"measured {m.shape} and predicted {p.shape} must have the same shape")

    def err(a):
        return np.asarray(a.stderr.values) if "stderr" in a.coords else np.zeros(a.shape)

    sigma = np.sqrt(err(measured) ** 2 + err(predicted) ** 2)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    ax1.errorbar(p, m, yerr=err(measured), xerr=err(predicted), fmt="o", ms=3, lw=0.8)
    lo, hi = min(m.min(), p.min()), max(m.max(), p.max())
    ax1.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax1.set_xlabel("predicted")
    ax1.set_ylabel("measured")
    if np.any(sigma > 0):
        pull = np.where(sigma > 0, (m - p) / np.where(sigma > 0, sigma, 1), np.nan)
        ax2.plot(np.arange(len(m)), pull, "o", ms=3)
        ax2.axhspan(-2, 2, color="0.85")
        ax2.set_ylabel(r"(measured $-$ predicted) / $\sigma$")
    else:
        ax2.plot(np.arange(len(m)), m - p, "o", ms=3)
        ax2.set_ylabel("measured $-$ predicted")
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_xlabel("tuple (index multiset)")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)
