"""Figures (matplotlib, Agg backend): the one module that draws; used by the report and the CLI.

Each function takes the library's result objects, returns the matplotlib Figure, and writes it to
``path`` when one is given. matplotlib is imported inside the functions so that importing
:mod:`nnqft_ppl` never loads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "plot_rg_flow",
    "plot_correlator_comparison",
    "plot_posterior",
    "plot_posterior_predictive",
    "plot_falloff",
    "plot_coupling_vs_width",
    "plot_rg_table",
    "plot_sixpoint",
    "plot_heldout",
    "plot_posterior_summary",
    "plot_training_kappa4",
    "plot_training_ntk",
    "plot_deep_widths",
    "plot_deep_growth",
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, path, ax=None, labels=(None, None, None), **legend):
    """Label ``ax`` (``labels``: x, y, title), add its legend (``legend``: matplotlib legend
    options), lay out, and save to ``path`` (when given)."""
    if ax is not None:
        xlabel, ylabel, title = labels
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.legend(**legend)
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
        # the fitted power law through the geometric mean of the points
        power = (L / L[0]) ** flow.slope
        fit = power * np.exp(np.mean(np.log(lam) - np.log(power)))
        line = {"color": color, "lw": 1}
        ax.loglog(L, fit, "-", label=f"fit: slope {flow.slope:.3f}, $R^2$ = {flow.r2:.4f}", **line)
        if flow.analytic_exponent is not None:
            ref = lam[-1] * (L / L[-1]) ** flow.analytic_exponent
            ax.loglog(L, ref, "--", label=f"analytic $L^{{{flow.analytic_exponent:g}}}$", **line)
        if flow.limit is not None:
            ax.axhline(abs(flow.limit), ls=":", color=color, lw=1, label="all-space limit")
    labels = ("cutoff $L$", r"$|\lambda(L)|$", title)
    return _finish(fig, path, ax, labels, fontsize=7)


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


def plot_posterior(idata, path=None, reference: dict | None = None):
    """Marginal posterior of each coupling (ArviZ ``plot_dist``), with reference lines
    (``az.add_lines``) at e.g. the exact-oracle fit.

    Args:
        idata: DataTree from :func:`nnqft_ppl.infer`.
        path: optional output file.
        reference: optional ``{coupling: value}``.

    Returns the ArviZ PlotCollection.

    Example:
        >>> plot_posterior(idata, "posterior.png", reference={"lambda": fit.theta[0]})
    """
    import arviz as az

    from ..inference.runners import coupling_names

    _pyplot()
    names = coupling_names(idata)
    unknown = set(reference or {}) - set(names)
    if unknown:
        raise ValueError(f"reference {sorted(unknown)} are not couplings of {names}")
    pc = az.plot_dist(idata, var_names=names, backend="matplotlib")
    if reference:
        az.add_lines(pc, values=reference)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        pc.savefig(path)
    return pc


def plot_posterior_predictive(idata, path=None, title: str | None = None):
    """Posterior predictive check of the correlators: predicted vs measured per tuple.

    Uses :func:`nnqft_ppl.inference.diagnostics.posterior_predictive_check` and
    :func:`plot_correlator_comparison` (error bars: replicate sd on the measurement, posterior
    sd on the prediction).

    Example:
        >>> plot_posterior_predictive(idata, "ppc.png", title="kappa_4, Erf N=5")
    """
    from ..inference.diagnostics import posterior_predictive_check

    ppc = posterior_predictive_check(idata)
    measured = ppc["measured"].assign_coords(stderr=("tuple", ppc["replicate_sd"].values))
    predicted = ppc["predicted"].assign_coords(stderr=("tuple", ppc["predicted_sd"].values))
    if title is None:
        title = (
            f"kappa_{ppc.attrs['order']}: {idata.attrs.get('likelihood')} likelihood, "
            f"{idata.attrs.get('method')}"
        )
    return plot_correlator_comparison(measured, predicted, path, title)


def plot_falloff(table, path=None, title: str | None = None):
    """The fall-off plot: non-Gaussianity against width N (log-log), one panel per estimator
    (kernel, outputs) on the same axes.

    Args:
        table: fall-off study Dataset over ``(width, estimator)`` (see
            :mod:`nnqft_ppl.zoo.studies.falloff`).

    Circles: the classic ``m_n`` of the moments, dashed: their jackknife backgrounds; squares:
    the connected ``mc_4``, ``mc_6``, dotted: their backgrounds; thin lines: the exact
    ``m_4 = mc_4`` (1/N) and ``mc_6`` (1/N^2).
    """
    plt = _pyplot()
    estimators = list(table.estimator.values)
    fig, axes = plt.subplots(1, len(estimators), figsize=(5.5 * len(estimators), 4.5),
                             sharey=True, squeeze=False)  # fmt: skip
    N = table.width.values
    for ax, estimator in zip(axes[0], estimators, strict=True):
        t = table.sel(estimator=estimator)
        for i, n in enumerate((2, 4, 6)):
            ax.loglog(N, t[f"m{n}"], "o-", color=f"C{i}", ms=4, lw=1, label=f"$m_{n}$")
            ax.loglog(N, t[f"bg{n}"], "--", color=f"C{i}", lw=0.8)
        for i, n in ((1, 4), (2, 6)):
            ax.loglog(N, t[f"mc{n}"], "s", color=f"C{i}", ms=5, mfc="none", label=f"$mc_{n}$")
            ax.loglog(N, t[f"bgc{n}"], ":", color=f"C{i}", lw=1.2)
        ax.loglog(N, t["mc4_exact"], "-", color="k", lw=0.8, label="exact $m_4 = mc_4$")
        ax.loglog(N, t["mc6_exact"], "-", color="0.5", lw=0.8, label="exact $mc_6$")
        ax.set_title(f"{estimator} estimator (backgrounds: dashed, dotted)", fontsize=9)
        ax.set_xlabel("width $N$")
    axes[0, 0].set_ylabel("normalised deviation from the GP")
    axes[0, -1].legend(fontsize=7, ncol=2)
    if title:
        fig.suptitle(title, fontsize=10)
    return _finish(fig, path)


def plot_coupling_vs_width(table, path=None, title: str | None = None):
    """``|lambda|`` against width (log-log): measured with errors, exact oracle, and 1/N."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    N = table.width.values
    lam, err = np.abs(table["lambda"].values), table["lambda_err"].values
    ax.errorbar(N, lam, yerr=err, fmt="o", ms=4, label="measured (ensemble)")
    exact = np.abs(table["lambda_exact"].values)
    ax.loglog(N, exact, "k-", lw=1, label="exact oracle")
    ax.loglog(N, exact[0] * N[0] / N, "k:", lw=1, label="$\\propto 1/N$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    labels = ("width $N$", r"$|\lambda|$", title or "quartic coupling vs width")
    return _finish(fig, path, ax, labels, fontsize=8)


def plot_rg_table(table, path=None, title: str | None = None):
    """``|lambda(L)|`` against the cutoff for every ``dimension`` of an RG-study table."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    L = table.cutoff.values
    for i, d in enumerate(table.dimension.values):
        lam = np.abs(table["lambda"].sel(dimension=d).values)
        ax.loglog(L, lam, "o", color=f"C{i}", ms=4, label=f"d = {d}")
        ax.loglog(L, lam[0] * (L / L[0]) ** -(d + 4.0), "--", color=f"C{i}", lw=1,
                  label=f"$L^{{-{d + 4}}}$")  # fmt: skip
    labels = ("cutoff $L$", r"$|\lambda(L)|$", title or "RG flow of the quartic coupling")
    return _finish(fig, path, ax, labels, fontsize=8)


def plot_sixpoint(table, path=None, title: str | None = None):
    """Measured against predicted ``G_6`` (6-pt study table), via
    :func:`plot_correlator_comparison`."""
    measured = table["measured"].assign_coords(stderr=("tuple", table["measured_err"].values))
    predicted = table["predicted"].assign_coords(stderr=("tuple", table["predicted_err"].values))
    return plot_correlator_comparison(measured, predicted, path, title)


def plot_heldout(table, path=None, title: str | None = None):
    """Held-out mean squared pull per coupling form and input scale (grouped bars, log y)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    scores = table["heldout_mean_z2"]
    forms, scales = list(scores.form.values), list(scores.input_scale.values)
    width = 0.8 / len(forms)
    for j, form in enumerate(forms):
        x = np.arange(len(scales)) + j * width
        ax.bar(x, scores.sel(form=form).values, width, label=form)
    ax.axhline(1, color="k", ls="--", lw=1, label="sampling noise")
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(scales)) + 0.4 - width / 2, [f"inputs x {s:g}" for s in scales])
    ax.set_ylabel("held-out mean $z^2$")
    ax.set_title(title or "coupling forms on held-out inputs")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_posterior_summary(table, path=None, title: str | None = None):
    """Posterior mean +- sd of lambda per likelihood, each against its own estimator applied to
    the exact oracle (crosses; the correlator one is the oracle least-squares fit)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    liks = list(table.likelihood.values)
    y = np.arange(len(liks))
    ax.errorbar(
        table["mean"].values,
        y,
        xerr=table["sd"].values,
        fmt="o",
        capsize=4,
        label="posterior mean +- sd",
    )
    if "oracle" in table:
        ax.plot(table["oracle"].values, y, "kx", ms=9, label="same likelihood on exact oracle")
    else:
        ax.axvline(table.attrs["oracle_lambda"], color="k", lw=1, label="oracle least squares")
    ax.set_yticks(y, liks)
    ax.set_ylim(-0.6, len(liks) - 0.4)
    ax.set_xlabel(r"$\lambda$")
    ax.set_title(title or "posterior of the quartic coupling", fontsize=9, wrap=True)
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_training_kappa4(table, path=None, title: str | None = None):
    """Training study: kappa_4 of the trained ensemble against width, one curve per step.

    Left: the summary ``S`` (diagonal kappa_4 in units of the infinite-width ``3 Sigma_t^2``)
    against N, log-log, filled where positive and open where negative, with the exact value
    before training (black) and 1/N guides (dotted) through each step's widest point. Right: the
    excess kurtosis / 3 of the measured outputs (the distribution's shape) against N.
    """
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    N = table.width.values
    for i, s in enumerate(table.step.values):
        t = table.sel(step=s)
        S, err = t.S.values, t.S_err.values
        color = f"C{i}"
        for positive in (True, False):
            m = (S > 0) == positive
            ax1.errorbar(N[m], np.abs(S[m]), yerr=err[m], fmt="o", color=color, ms=5,
                         mfc=color if positive else "none",
                         label=f"t = {s}" if positive else None)  # fmt: skip
        ax1.loglog(N, np.abs(S[-1]) * N[-1] / N, ":", color=color, lw=1)
        ax2.errorbar(N, t.kurtosis.values, fmt="o-", color=color, ms=4, lw=1, label=f"t = {s}")
    if 0 in table.step.values:
        ax1.loglog(N, table.S_exact.sel(step=0).values, "k-", lw=1, label="exact (t = 0)")
    for ax in (ax1, ax2):  # the widths themselves as ticks
        ax.set_xscale("log")
        ax.set_xticks(N, [str(n) for n in N])
        ax.minorticks_off()
    labels = ("width $N$", r"$|S|$ = mean $\kappa_4(x,x,x,x) / 3\Sigma_t(x,x)^2$",
              "kappa_4 of the trained ensemble (open: negative; dotted: 1/N)")  # fmt: skip
    ax1.set(xlabel=labels[0], ylabel=labels[1])
    ax1.set_title(labels[2], fontsize=9)
    ax1.legend(fontsize=7)
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set(xlabel="width $N$", ylabel="excess kurtosis / 3 (measured variance)")
    ax2.set_title("shape of the trained ensemble", fontsize=9)
    ax2.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _finish(fig, path)


def plot_deep_widths(table, path=None, title: str | None = None):
    """Deep study: ``s4`` (normalised ``n kappa_4``) against ``1/n``, one panel per case.

    Args:
        table: the deep study's ``deep`` Dataset (:mod:`nnqft_ppl.zoo.studies.deep`).

    Points: measured with errors, one colour per depth; lines: the fits ``A + B/n (+ C/n^2)``;
    stars at ``1/n = 0``: the recursion's leading-order value.
    """
    plt = _pyplot()
    cases = list(table.case.values)
    fig, axes = plt.subplots(1, len(cases), figsize=(5.2 * len(cases), 4.3), squeeze=False)
    inv = 1 / table.width.values
    grid = np.linspace(0, inv.max() * 1.05, 50)
    for ax, case in zip(axes[0], cases, strict=True):
        for i, L in enumerate(table.depth.values):
            t = table.sel(case=case, depth=L)
            color = f"C{i}"
            ax.errorbar(inv, t.s4, yerr=t.s4_err, fmt="o", color=color, ms=4, capsize=2,
                        label=f"L = {L}")  # fmt: skip
            C = float(t.C) if np.isfinite(float(t.C)) else 0.0
            ax.plot(grid, float(t.A) + float(t.B) * grid + C * grid**2, "-", color=color, lw=1)
            ax.plot([0], [float(t.s4_pred)], "*", color=color, ms=11, mec="k", mew=0.5)
        ax.set_xlim(left=-0.02 * inv.max())
        ax.set_title(f"{case} (stars: the 1/n recursion; lines: fits)", fontsize=9)
        ax.set_xlabel("1 / width")
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel(r"$s_4$ = mean $n\,\kappa_4 / \sqrt{KKKK}$")
    if title:
        fig.suptitle(title, fontsize=10)
    return _finish(fig, path)


def plot_training_ntk(table, path=None, title: str | None = None):
    """Training study: the wide trained ensemble against the NTK prediction, per step.

    ``mean_summary`` (circles) and ``cov_summary`` (squares) with their errors against the step,
    one colour per NTK width; 1 is the infinite-width prediction (before training the mean
    summary is 0 and the covariance summary ``cov_untrained``).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    steps = table.step.values
    trained = steps > 0
    for i, w in enumerate(table.ntk_width.values):
        t = table.sel(ntk_width=w)
        x = steps[trained] * (1 + 0.04 * i)  # offset the widths so the error bars do not overlap
        ax.errorbar(x, t.mean_summary.values[trained], yerr=t.mean_err.values[trained], fmt="o",
                    color=f"C{i}", ms=5, capsize=3, label=f"mean, N = {w}")  # fmt: skip
        ax.errorbar(x * 1.02, t.cov_summary.values[trained], yerr=t.cov_err.values[trained],
                    fmt="s", color=f"C{i}", ms=5, mfc="none", capsize=3,
                    label=f"covariance, N = {w}")  # fmt: skip
    ax.axhline(1, color="k", lw=1, label="NTK prediction")
    ax.set_xscale("log")
    ax.set_xticks(steps[trained], [str(s) for s in steps[trained]])
    ax.minorticks_off()
    ax.set_xlabel("training step")
    ax.set_ylabel("measured / predicted (projected summary)")
    ax.set_title(title or "trained ensemble vs the NTK Gaussian process", fontsize=9, wrap=True)
    ax.legend(fontsize=7)
    return _finish(fig, path)


def plot_deep_growth(table, path=None, title: str | None = None):
    """Deep study: the normalised diagonal vertex ``r = n kappa_4(aaaa) / (3 K_aa^2)`` against
    depth at fixed width, every case (critical: solid, off criticality: dashed).

    Args:
        table: the deep study's ``deep_growth`` Dataset.

    Points: measured at the table's width with errors; open squares: extrapolated to
    n -> inf (``r_inf``, where the depth was measured at every width); lines:
    :func:`~nnqft_ppl.theory.deep.vertex_growth` (times n).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    L = table.depth.values
    for i, case in enumerate(table.case.values):
        t = table.sel(case=case)
        critical = bool(t.critical)
        state = "critical" if critical else "off criticality"
        color = f"C{i}"
        at = f"{case} ({state}; {t.scales.item()}) at n = {table.attrs.get('width')}"
        ax.errorbar(L, t.r, yerr=t.r_err, fmt="o", color=color, ms=5, capsize=3, label=at)
        if "r_inf" in t:
            ax.errorbar(L + 0.08, t.r_inf, yerr=t.r_inf_err, fmt="s", color=color, ms=5,
                        mfc="none", capsize=3, label=f"{case}: n -> inf")  # fmt: skip
        ax.plot(L, t.r_pred, "-" if critical else "--", color=color, lw=1.2,
                label=f"{case}: recursion")  # fmt: skip
    ax.set_xticks(L)
    labels = (
        "depth L (hidden layers)",
        r"$n\,\kappa_4(aaaa) / (3 K_{aa}^2)$",
        title or f"four-point vertex against depth at n = {table.attrs.get('width')}",
    )
    return _finish(fig, path, ax, labels, fontsize=7)
