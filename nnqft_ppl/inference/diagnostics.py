"""Diagnostics of coupling posteriors: convergence, goodness of fit, a verdict, model comparison.

* :func:`diagnose`: ArviZ summary (r_hat, ESS, MCSE) plus divergences, the chi-square of the
  measured correlators at the posterior mean (on the kept covariance directions), and a short
  verdict. When the chi-square rejects the form, the verdict says so and widens the reported
  interval by the scale factor ``sqrt(chi2 / dof)`` instead of quoting a sharp wrong number.
* :func:`posterior_predictive_check`: predicted vs measured correlators per tuple.
* :func:`compare_forms`: PSIS-LOO (leave one batch of networks out) on the field likelihood,
  every form conditioned on the same components of ``f_X``; held-out inputs (predict the tuples
  that contain input i from the others) on the correlator likelihood. With very close inputs
  (the paper's) dropping one input removes no resolved covariance direction, so held-out
  inputs carry no information there and the simplest form is kept: use the field comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from ..core.linalg import ChiSquare
from ..networks.kernels import kernel
from .likelihoods import CorrelatorData, correlator_data, field_statistics
from .runners import LIKELIHOODS, coupling_names, infer

__all__ = [
    "Diagnosis",
    "diagnose",
    "goodness_of_fit",
    "GoodnessOfFit",
    "posterior_predictive_check",
    "FormComparison",
    "compare_forms",
    "heldout_inputs_score",
]

#: Goodness-of-fit p-values below this reject the coupling form.
REJECT_P = 1e-3
MAX_R_HAT = 1.01
MIN_ESS = 400


def _kname(idata) -> str:
    return f"kappa_{int(idata.attrs['order'])}"


class GoodnessOfFit(NamedTuple):
    """Chi-square of the measured correlators at the posterior mean couplings.

    Attributes:
        chi2, dof, p_value: the statistic on ``dof = rank - n_couplings`` degrees of freedom.
        rank: resolved directions of the correlator covariance (independent numbers in the data).
    """

    chi2: float
    dof: int
    p_value: float
    rank: int


def goodness_of_fit(idata) -> GoodnessOfFit:
    """Chi-square of the measured correlators at the posterior mean couplings.

    Uses the whitened (projected) correlator likelihood stored in ``constant_data``, whichever
    likelihood produced the posterior.
    """
    names = coupling_names(idata)
    theta = np.array([float(idata.posterior[n].mean()) for n in names])
    W = idata.constant_data["whitener"].values
    D = idata.constant_data["design"].values
    k = idata.observed_data[_kname(idata)].values
    resid = W @ (k - D @ theta)
    test = ChiSquare.of(resid @ resid, W.shape[0] - len(names))
    return GoodnessOfFit(test.value, test.dof, test.p_value, W.shape[0])


@dataclass(frozen=True)
class Diagnosis:
    """Result of :func:`diagnose`: ``table`` (pandas), ``divergences``, ``fit``
    (:class:`GoodnessOfFit`), ``verdict`` (text)."""

    table: pd.DataFrame
    divergences: int
    fit: GoodnessOfFit
    verdict: str

    def __str__(self) -> str:
        with pd.option_context("display.width", 120):
            return f"{self.table}\n\n{self.verdict}"


def _describe(name: str) -> str:
    if name.startswith("lambda_") and name[7:].isdigit():
        p = int(name[7:])
        return "the constant term" if p == 0 else f"the |y|^{p} term ({name})"
    return name


def diagnose(idata, reject_p: float = REJECT_P) -> Diagnosis:
    """Summary table and a short verdict for a posterior from :func:`nnqft_ppl.infer`.

    Example:
        >>> d = diagnose(idata); print(d.verdict)
        a constant quartic coupling describes the measured kappa_4 (chi2 = 2.1 on 3 dof, ...)
    """
    import arviz as az

    names = coupling_names(idata)
    table = az.summary(idata, var_names=names, ci_prob=0.9)
    method = idata.attrs.get("method", "nuts")
    div = int(idata.sample_stats["diverging"].sum()) if "diverging" in idata.sample_stats else 0
    table["divergences"] = div
    fit = goodness_of_fit(idata)
    lines = []
    # --- sampling
    if method == "nuts":
        rhat = table["r_hat"].astype(float)
        bad = [n for n in names if not rhat[n] < MAX_R_HAT]
        low = [n for n in names if float(table.loc[n, "ess_bulk"]) < MIN_ESS]
        if bad or low or div:
            lines.append(
                f"sampling is NOT trustworthy: r_hat >= {MAX_R_HAT} for {bad}, "
                f"ess_bulk < {MIN_ESS} for {low}, {div} divergences."
            )
        else:
            lines.append(
                f"NUTS converged (r_hat <= {rhat.max():.3f}, "
                f"ess_bulk >= {table['ess_bulk'].astype(float).min():.0f}, no divergences)."
            )
    else:
        lines.append("SVI: draws from the fitted guide (no MCMC convergence diagnostics).")
    # --- fit and couplings
    mean = {n: float(idata.posterior[n].mean()) for n in names}
    sd = {n: float(idata.posterior[n].std()) for n in names}
    form = idata.attrs.get("form", "")
    label = "a constant quartic coupling" if names == ["lambda"] else f"the form {names}"
    gof = f"chi2 = {fit.chi2:.3g} on {fit.dof} dof, p = {fit.p_value:.2g}"
    kname = _kname(idata)
    if fit.dof > 0 and fit.p_value < reject_p:
        factor = np.sqrt(fit.chi2 / fit.dof)
        ranges = ", ".join(
            f"{n} in [{mean[n] - 2 * factor * sd[n]:.3g}, {mean[n] + 2 * factor * sd[n]:.3g}]"
            for n in names
        )
        lines.append(
            f"{label} CANNOT describe the measured {kname} ({gof}, on the {fit.rank} "
            f"resolved covariance directions). The posterior is a compromise under this "
            f"weighting, not a coupling of the EFT; with the scale factor sqrt(chi2/dof) = "
            f"{factor:.3g} the data only say {ranges}. Try a form with more terms "
            f"(compare_forms) or a lower precision (fewer directions, rtol)."
        )
    else:
        fit_text = gof if fit.dof > 0 else f"{fit.rank} resolved direction(s): no fit test"
        if len(names) == 1:
            n = names[0]
            lines.append(
                f"{label} describes the measured {kname} ({fit_text}): "
                f"{n} = {mean[n]:.4g} +- {sd[n]:.2g}."
            )
        else:
            zero = [n for n in names if abs(mean[n]) < 2 * sd[n]]
            needed = [n for n in names if n not in zero]
            parts = ", ".join(f"{n} = {mean[n]:.4g} +- {sd[n]:.2g}" for n in names)
            if zero and needed:
                lines.append(
                    f"{' and '.join(_describe(n) for n in needed)} suffice(s); "
                    f"{' and '.join(_describe(n) for n in zero)} "
                    f"{'is' if len(zero) == 1 else 'are'} consistent with 0 ({fit_text}; {parts})."
                )
            elif zero:
                lines.append(f"no term is resolved from 0 ({fit_text}; {parts}).")
            else:
                lines.append(f"every term of {form} is needed ({fit_text}; {parts}).")
    # --- field likelihood specifics
    if idata.attrs.get("likelihood") == "field":
        model_sd = idata.constant_data["field_model_sd"].values
        sandwich_sd = idata.constant_data["field_sandwich_sd"].values
        ratio = float(np.max(sandwich_sd / model_sd))
        used = idata.attrs.get("field_width", "sandwich")
        lines.append(
            f"field likelihood: sandwich / model-based width = {ratio:.3g} "
            f"({idata.attrs.get('sandwich_method')} Cov(A)); the posterior uses the {used} width"
            + (" (heavy tails: the model-based width is too small)." if ratio > 1.5 else ".")
        )
        shift = np.abs(idata.constant_data["log_normaliser_shift_sd"].values)
        if np.max(shift) > 1:
            lines.append(
                f"the next term of log Z (the O(theta^2) corrections that both first-order "
                f"likelihoods omit) would move the estimate by {np.max(shift):.3g} posterior sd: "
                f"the data resolve second-order effects; read the coupling as the first-order "
                f"matching coefficient."
            )
    return Diagnosis(table, div, fit, "\n".join(lines))


def posterior_predictive_check(idata) -> xr.Dataset:
    """Measured vs predicted correlators per tuple.

    Returns a Dataset over ``tuple`` with ``measured``, ``predicted`` (posterior mean of the
    first-order prediction), ``predicted_sd`` (its posterior sd), ``replicate_sd`` (sd of
    replicated measurements: posterior and sampling noise) and ``pull`` =
    ``(measured - predicted) / replicate_sd``.
    """
    k = _kname(idata)
    measured = idata.observed_data[k]
    mean = idata.posterior_predictive[f"{k}_mean"]
    rep = idata.posterior_predictive[k]
    pred = mean.mean(("chain", "draw"))
    rep_sd = rep.std(("chain", "draw"))
    return xr.Dataset(
        {
            "measured": measured,
            "predicted": pred,
            "predicted_sd": mean.std(("chain", "draw")),
            "replicate_sd": rep_sd,
            "pull": (measured - pred) / rep_sd,
        },
        attrs={"order": int(idata.attrs["order"])},
    )


# --------------------------------------------------------------------------- comparison
def _log_evidence(data: CorrelatorData, prior_scale) -> float:
    """``log p(k)`` of the linear-Gaussian correlator model with ``theta ~ N(0, diag(s^2))``."""
    A, z = data.white_design, data.white_observed
    cov = np.eye(data.rank) + (A * np.asarray(prior_scale) ** 2) @ A.T
    _, logdet = np.linalg.slogdet(cov)
    return float(-0.5 * (z @ np.linalg.solve(cov, z) + logdet + data.rank * np.log(2 * np.pi)))


def heldout_inputs_score(data: CorrelatorData, n_inputs: int) -> np.ndarray:
    """Log predictive density of the tuples containing input i given all the others, per i.

    Closed form for the linear-Gaussian correlator likelihood with the default Normal priors:
    ``log p(k) - log p(k without input i)``, each on its own kept covariance directions.
    Returns ``(n_inputs,)``; larger is better.
    """
    idx = np.array([[int(t) for t in label.split(",")] for label in data.labels])
    full = _log_evidence(data, data.prior_scale)
    out = []
    for i in range(n_inputs):
        train = ~np.any(idx == i, axis=1)
        out.append(full - _log_evidence(data.select(train), data.prior_scale))
    return np.array(out)


@dataclass(frozen=True)
class FormComparison:
    """Result of :func:`compare_forms`: ``table`` (best first), ``preferred``, ``text``."""

    table: pd.DataFrame
    preferred: str
    text: str
    posteriors: dict

    def __str__(self) -> str:
        return f"{self.table}\n\n{self.text}"


def compare_forms(
    stats,
    forms,
    likelihood: str = "field",
    cutoff=None,
    method="nuts",
    seed: int = 0,
    threshold: float = 2.0,
    **infer_kwargs,
) -> FormComparison:
    """Compare coupling forms: PSIS-LOO (field) or held-out inputs (correlator).

    Args:
        stats: correlator statistics; forms: ``{label: form}`` or a sequence of forms.
        likelihood: ``"field"`` (leave-one-batch-out PSIS-LOO of posteriors from
            :func:`~nnqft_ppl.infer`) or ``"correlator"`` (closed-form held-out inputs).
        threshold: a richer form is preferred only when it gains more than ``threshold``
            standard errors of the difference (field) or ``threshold`` nats (correlator).
        infer_kwargs: passed to :func:`~nnqft_ppl.infer` (field likelihood).

    Returns:
        :class:`FormComparison`; ``preferred`` is the simplest form not beaten by a richer one.

    Example:
        >>> cmp = compare_forms(stats, {"constant": Constant(), "radial": RadialPolynomial()},
        ...                     likelihood="correlator", cutoff=2.0)
        >>> cmp.preferred, cmp.text
    """
    import arviz as az

    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; choose from {LIKELIHOODS}")
    if not isinstance(forms, dict):
        forms = {type(f).__name__ + str(i): f for i, f in enumerate(forms)}
    if len(forms) < 2:
        raise ValueError("compare_forms needs at least two forms")
    labels = sorted(forms, key=lambda k: forms[k].n_params)  # simplest first
    rows, posteriors = {}, {}
    if likelihood == "field":
        # the batch densities omit the GP part, which is common only to forms conditioned on
        # the same components of f_X: condition every form on the components the richest needs
        fields = [
            field_statistics(stats, forms[lab], cutoff=cutoff, rtol=infer_kwargs.get("rtol"))
            for lab in labels
        ]
        widest = max(fields, key=lambda f: f.rank)
        K_evals = np.linalg.eigvalsh(kernel(stats.arch, stats.X))
        infer_kwargs["rtol"] = 0.999 * widest.eigvals[-1] / K_evals.max()
        # LOO weights use the EFT density of each batch; a posterior of the same (model)
        # width keeps PSIS stable. Heavy tails show up in the spread of the per-batch
        # differences, hence in the standard error of the gain.
        infer_kwargs.setdefault("width", "model")
        loos = {}
        for label in labels:
            idata = infer(stats, forms[label], likelihood="field", method=method, cutoff=cutoff,
                          seed=seed, **infer_kwargs)  # fmt: skip
            posteriors[label] = idata
            loos[label] = az.loo(idata, var_name="field")
        for label in labels:
            rows[label] = {
                "n_params": forms[label].n_params,
                "elpd": float(loos[label].elpd),
                "se": float(loos[label].se),
                "max_pareto_k": float(np.max(loos[label].pareto_k)),
            }
        preferred = labels[0]
        for label in labels[1:]:
            diff = (
                np.asarray(loos[label].elpd_i).ravel() - np.asarray(loos[preferred].elpd_i).ravel()
            )
            gain, se = float(diff.sum()), float(np.sqrt(len(diff)) * diff.std())
            rows[label]["gain_vs_" + preferred] = gain
            rows[label]["gain_se"] = se
            if gain > threshold * se:
                preferred = label
        criterion = "PSIS-LOO over batches of networks"
    else:
        P = stats.n_inputs
        scores = {}
        for label in labels:
            data = correlator_data(stats, forms[label], cutoff=cutoff)
            scores[label] = heldout_inputs_score(data, P)
            rows[label] = {"n_params": forms[label].n_params, "heldout_lpd": scores[label].sum()}
        preferred = labels[0]
        for label in labels[1:]:
            gain = float(scores[label].sum() - scores[preferred].sum())
            rows[label]["gain_vs_" + preferred] = gain
            if gain > threshold:
                preferred = label
        criterion = "log predictive density of held-out inputs"
    table = pd.DataFrame.from_dict(rows, orient="index")
    others = [lab for lab in labels if lab != preferred]
    text = (
        f"{criterion}: {preferred!r} preferred"
        + (f" over {', '.join(repr(o) for o in others)}" if others else "")
        + (
            "; the extra terms do not improve the prediction."
            if preferred == labels[0]
            else "; its extra terms improve the prediction."
        )
    )
    return FormComparison(table, preferred, text, posteriors)
