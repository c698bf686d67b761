"""Diagnostics of coupling posteriors: convergence, goodness of fit, a verdict, model comparison.

* :func:`diagnose`: ArviZ summary (r_hat, ESS, MCSE) plus divergences, the chi-square of the
  measured correlators at the posterior mean (on the resolved covariance directions: the
  independent numbers the data hold), and a short verdict. When the chi-square rejects the
  form, the verdict says so and widens the reported interval by the scale factor
  ``sqrt(chi2 / dof)`` instead of quoting a sharp wrong number; when the data hold no more
  independent numbers than the form has couplings, it says there is no test of the form.
* :func:`posterior_predictive_check`: measured vs predicted correlators per tuple, and the pulls
  per independent (whitened) direction, which is where they are independent.
* :func:`compare_forms`: ArviZ LOO (``az.loo``, leave one batch of networks out) on the field
  likelihood with exact refits (``az.reloo``: the field likelihood is linear-Gaussian in the
  couplings, so a refit is a closed-form posterior) wherever Pareto k-hat says PSIS fails, and
  ``az.compare``; the correlator likelihood is one multivariate observation, so it has no
  pointwise LOO: it scores held-out inputs instead. A preference is stated only when the
  comparison is reliable and the difference exceeds twice its standard error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from ..core.linalg import ChiSquare
from ..core.validation import check_choice
from ..networks.kernels import kernel
from .likelihoods import (
    CorrelatorData,
    FieldStatistics,
    correlator_data,
    field_statistics,
    gaussian_posterior,
)
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

    @property
    def max_r_hat(self) -> float:
        """The largest split R-hat over the couplings (NaN without MCMC diagnostics)."""
        return float(self.table["r_hat"].max()) if "r_hat" in self.table else np.nan


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
    if method == "closed_form":
        lines.append("exact Gaussian posterior (independent closed-form draws: no sampler).")
    elif method == "nuts":
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
    n_tuples = idata.observed_data[kname].sizes["tuple"]
    if fit.rank < n_tuples:
        lines.append(
            f"the measured {kname} holds {fit.rank} independent number(s) (resolved covariance "
            f"directions) on {n_tuples} tuples: its entries are not independent "
            "evidence."
        )
    if fit.dof <= 0:
        lines.append(
            f"NO TEST of the form: the data hold {fit.rank} independent number(s) and the form "
            f"has {len(names)} coupling(s), so any value fits; agreement here holds by "
            "construction."
        )
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
    """Measured vs predicted correlators, per tuple and per independent direction.

    Returns a Dataset with, over ``tuple``: ``measured``, ``predicted`` (posterior mean of the
    first-order prediction), ``predicted_sd`` (its posterior sd), ``replicate_sd`` (sd of
    replicated measurements: posterior and sampling noise) and ``pull`` =
    ``(measured - predicted) / replicate_sd``; over ``component`` (the resolved, whitened
    covariance directions: the independent numbers the data hold) ``direction_pull``, the
    whitened residual ``W (measured - predicted)``, N(0, 1) per direction when the form holds.
    Per-tuple pulls of strongly correlated entries are not independent (with a rank-1
    covariance all of them are the same number); the per-direction ones are.
    """
    k = _kname(idata)
    measured = idata.observed_data[k]
    mean = idata.posterior_predictive[f"{k}_mean"]
    rep = idata.posterior_predictive[k]
    pred = mean.mean(("chain", "draw"))
    rep_sd = rep.std(("chain", "draw"))
    W = idata.constant_data["whitener"]
    direction = xr.DataArray(W.values @ (measured.values - pred.values), dims=("component",))
    return xr.Dataset(
        {
            "measured": measured,
            "predicted": pred,
            "predicted_sd": mean.std(("chain", "draw")),
            "replicate_sd": rep_sd,
            "pull": (measured - pred) / rep_sd,
            "direction_pull": direction,
        },
        attrs={"order": int(idata.attrs["order"]), "rank": int(W.sizes["component"])},
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


def _field_refit(field: FieldStatistics, idata, seed: int = 0):
    """``az.reloo`` wrapper: exact leave-one-batch-out refits of a field-likelihood posterior.

    The field likelihood is Gaussian in the couplings, so the posterior without batch b is the
    closed-form :func:`~nnqft_ppl.inference.likelihoods.gaussian_posterior` (default priors):
    a refit costs a linear solve, not a sampler run.
    """
    from arviz_stats.loo.wrapper import SamplingWrapper  # imported only when a refit is needed

    class _Refit(SamplingWrapper):
        def sel_observations(self, idx):
            return None, np.atleast_1d(np.asarray(idx))

        def sample(self, modified_observed_data):
            return None

        def get_inference_data(self, fitted_model):
            return None

        def log_likelihood__i(self, excluded_obs, idata__i):
            shape = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
            rng = np.random.default_rng(seed)
            out = []
            for b in excluded_obs:
                post = gaussian_posterior(field, leave_out=int(b))
                theta = post.sample(rng, shape)
                out.append(np.asarray(field.pointwise_batches(theta))[..., int(b)])
            return xr.DataArray(np.stack(out, -1), dims=("chain", "draw", "batch"))

    return _Refit(model=field, idata_orig=idata)


@dataclass(frozen=True)
class FormComparison:
    """Result of :func:`compare_forms`.

    Attributes:
        table: pandas DataFrame, one row per form (best first where decided).
        preferred: the preferred form's label, or None when the comparison is unreliable or
            undecided (then ``text`` says why).
        verdict: ``"preferred"``, ``"undecided"`` or ``"unreliable"``.
        text: the conclusion in words, with the criterion used.
        posteriors: ``{label: DataTree}`` (field likelihood).
    """

    table: pd.DataFrame
    preferred: str | None
    verdict: str
    text: str
    posteriors: dict

    def __str__(self) -> str:
        return f"{self.table}\n\n{self.text}"


def compare_forms(
    stats,
    forms,
    likelihood: str = "field",
    cutoff=None,
    method="closed_form",
    seed: int = 0,
    threshold: float = 2.0,
    **infer_kwargs,
) -> FormComparison:
    """Compare coupling forms, stating a preference only when the data decide it.

    Field likelihood: ``az.loo`` on every batch of networks, exact refits (``az.reloo``)
    where Pareto k-hat exceeds ArviZ's threshold, then ``az.compare``. The richer form is
    preferred when it gains more than ``threshold`` standard errors of the difference; within
    that the comparison is *undecided* (``preferred`` is None); when refits cannot fix bad
    k-hats, or the effective number of parameters p_loo exceeds a fifth of the batches (the
    likelihood does not describe the batches' spread: heavy tails), it is *unreliable* (None).

    Correlator likelihood: the measured correlators are one multivariate observation, so LOO
    over observations does not exist; each input is held out in turn (all tuples containing
    it) and scored by its closed-form log predictive density given the rest. A gain of more
    than ``threshold`` nats prefers the richer form; held-out inputs that remove no resolved
    covariance direction carry no information (undecided).

    Args:
        stats: correlator statistics (the field likelihood needs the output estimator).
        forms: ``{label: form}`` or a sequence of forms.
        likelihood: ``"field"`` or ``"correlator"``.
        cutoff: box cutoff of the vertex integrals.
        method: posterior method for the field likelihood (``"closed_form"`` by default: the
            exact Gaussian posterior; ``"nuts"`` works too).
        threshold: decision threshold (standard errors of the difference; nats).
        infer_kwargs: passed to :func:`~nnqft_ppl.infer` (field likelihood).

    Example:
        >>> cmp = compare_forms(stats, {"constant": Constant(), "radial": RadialPolynomial()},
        ...                     cutoff=2.0)
        >>> cmp.preferred, cmp.verdict, cmp.text
    """
    check_choice(likelihood, LIKELIHOODS, "likelihood")
    if not isinstance(forms, dict):
        forms = {type(f).__name__ + str(i): f for i, f in enumerate(forms)}
    if len(forms) < 2:
        raise ValueError("compare_forms needs at least two forms")
    labels = sorted(forms, key=lambda k: forms[k].n_params)  # simplest first
    if likelihood == "field":
        return _compare_field(stats, forms, labels, cutoff, method, seed, threshold, infer_kwargs)
    return _compare_heldout(stats, forms, labels, cutoff, threshold)


#: p_loo above this fraction of the number of held-out units: the model is badly misspecified
#: for LOO (the diagnostic of the loo literature, "p_loo > N / 5"): here, the likelihood's width
#: does not describe the batch-to-batch spread of its statistics (heavy tails).
_P_LOO_FRACTION = 0.2


def _compare_field(stats, forms, labels, cutoff, method, seed, threshold, infer_kwargs):
    import arviz as az

    # The batch densities omit the GP part, common only to forms conditioned on the same
    # components of f_X: condition every form on the components the richest needs.
    fields = [
        field_statistics(stats, forms[lab], cutoff=cutoff, rtol=infer_kwargs.get("rtol"))
        for lab in labels
    ]
    widest = max(fields, key=lambda f: f.rank)
    K_evals = np.linalg.eigvalsh(kernel(stats.arch, stats.X))
    infer_kwargs["rtol"] = 0.999 * widest.eigvals[-1] / K_evals.max()
    # LOO weights use the EFT density of each batch: a posterior of the same (model) width.
    infer_kwargs.setdefault("width", "model")
    loos, posteriors, rows, problems = {}, {}, {}, []
    for label in labels:
        idata = infer(
            stats,
            forms[label],
            likelihood="field",
            method=method,
            cutoff=cutoff,
            seed=seed,
            **infer_kwargs,
        )
        posteriors[label] = idata
        loo = az.loo(idata, var_name="field", pointwise=True)
        bad = int(np.sum(np.asarray(loo.pareto_k) > loo.good_k))
        refitted = 0
        if bad and infer_kwargs.get("prior") is None:
            field = field_statistics(
                stats, forms[label], cutoff=cutoff, rtol=infer_kwargs["rtol"], width="model"
            )
            loo = az.reloo(_field_refit(field, idata, seed), loo_orig=loo, var_name="field")
            refitted, bad = bad, 0
        n_params = forms[label].n_params
        rows[label] = {
            "n_params": n_params,
            "elpd": float(loo.elpd),
            "se": float(loo.se),
            "p_loo": float(loo.p),
            "bad_k": bad,
            "refits": refitted,
        }
        if bad:
            problems.append(
                f"{label}: {bad} batches with Pareto k-hat > {loo.good_k:.2f} "
                "(PSIS cannot estimate their LOO density; refits need the default "
                "priors)"
            )
        n_units = int(np.size(loo.pareto_k))
        if loo.p > _P_LOO_FRACTION * n_units:
            problems.append(
                f"{label}: p_loo = {loo.p:.3g} > {n_units} batches / 5 with {n_params} "
                "coupling(s): the likelihood does not describe the batch-to-batch spread of its "
                "statistics (heavy tails), so its batch densities are no valid LOO criterion"
            )
        loos[label] = loo
    table = az.compare(loos, round_to="none")
    for column in ("n_params", "p_loo", "bad_k", "refits"):
        table[column] = [rows[label][column] for label in table.index]
    criterion = "LOO over batches of networks (az.loo, exact refits where k-hat is bad)"
    best = str(table.index[0])
    if problems:
        return FormComparison(
            table,
            None,
            "unreliable",
            f"{criterion}: UNRELIABLE, no preference: {'; '.join(problems)}.",
            posteriors,
        )
    runner_up = str(table.index[1])
    # az.compare reports the runner-up's elpd relative to the best (<= 0)
    diff, dse = abs(float(table.loc[runner_up, "elpd_diff"])), float(table.loc[runner_up, "dse"])
    if diff <= threshold * dse:
        text = (
            f"{criterion}: UNDECIDED, no preference: {best!r} and {runner_up!r} differ by "
            f"{diff:.3g} +- {dse:.2g} in elpd (less than {threshold:g} standard errors)."
        )
        return FormComparison(table, None, "undecided", text, posteriors)
    richer = forms[best].n_params > forms[runner_up].n_params
    text = (
        f"{criterion}: {best!r} preferred over {runner_up!r} (elpd difference {diff:.3g} "
        f"+- {dse:.2g}, {diff / dse:.1f} standard errors)"
        + (
            "; its extra terms improve the prediction."
            if richer
            else "; the extra terms of the richer form make the prediction worse."
        )
    )
    return FormComparison(table, best, "preferred", text, posteriors)


def _compare_heldout(stats, forms, labels, cutoff, threshold):
    P = stats.n_inputs
    scores, rows = {}, {}
    for label in labels:
        data = correlator_data(stats, forms[label], cutoff=cutoff)
        scores[label] = heldout_inputs_score(data, P)
        rows[label] = {
            "n_params": forms[label].n_params,
            "heldout_lpd": scores[label].sum(),
            "rank": data.rank,
        }
    base = labels[0]
    criterion = (
        "held-out inputs (the correlator likelihood is one multivariate observation, "
        "so it has no pointwise LOO: each input is left out in turn and its tuples "
        "scored given the rest)"
    )
    gains = {lab: float(scores[lab].sum() - scores[base].sum()) for lab in labels[1:]}
    for lab, gain in gains.items():
        rows[lab]["gain_vs_" + base] = gain
    table = pd.DataFrame.from_dict(rows, orient="index")
    best = max(gains, key=gains.get)
    if gains[best] > threshold:
        text = (
            f"{criterion}: {best!r} preferred over {base!r} (gain {gains[best]:.3g} nats > "
            f"{threshold:g}); its extra terms improve the prediction of held-out inputs."
        )
        return FormComparison(table, best, "preferred", text, {})
    if all(abs(g) < 1e-9 for g in gains.values()):
        why = (
            "held-out inputs carry no information here: leaving one out removes no resolved "
            "covariance direction (inputs too close)"
        )
    else:
        why = f"the richer forms gain at most {gains[best]:.3g} nats (< {threshold:g})"
    return FormComparison(
        table, None, "undecided", f"{criterion}: UNDECIDED, no preference: {why}.", {}
    )
