"""Training study: what gradient descent does to the non-Gaussianity (NGP) of an ensemble.

Every network of the ``[ensemble]`` ensembles (widths, sizes, seed) is trained by full-batch
gradient descent on the 1-d regression set of ``[training]``
(:func:`~nnqft_ppl.ensembles.training.train_ensemble`: network ``a`` starts from network ``a`` of
the untrained ensemble, so step 0 *is* the untrained ensemble), with ``eta = rate_factor /
lambda_max(Theta_XX)``, and its outputs at the spec's inputs are recorded at the snapshot steps.
The trained ensemble has a mean (the fit), so every statistic is of the centred outputs
(:func:`~nnqft_ppl.ensembles.training.correlator_stats_from_outputs`, ``center="mean"``,
estimator ``"outputs"``, batch-jackknife errors). The kernel estimator does not apply: after
training the output is no longer Gaussian given the last hidden layer (the readout weights have
moved with the hidden ones).

Tables:

* ``training_kappa4`` over ``(step, width)``: the summary
  ``S = mean_x kappa_4(x,x,x,x) / (3 Sigma_t(x,x)^2)``: the diagonal connected 4-pt function in
  units of the disconnected one of the infinite-width trained ensemble (``Sigma_t`` from
  :func:`~nnqft_ppl.theory.ntk_gp.ntk_predict`; ``Sigma_0 = K``). ``S`` is linear in kappa_4 (its
  error is ``sqrt(a C a)`` with the jackknife covariance C) and its normalisation does not depend
  on N, so its width exponent is kappa_4's. Also: ``N S``; the exact ``S`` of the untrained
  ensemble (t = 0, :func:`~nnqft_ppl.oracle.exact.exact_cumulant`); the excess kurtosis / 3 of
  the measured outputs (``kurtosis``: kappa_4 over the *measured* variance squared, the shape of
  the distribution); measured over infinite-width variance (``variance_ratio``); the median
  training loss, its infinite-width expectation (``expected_loss``) and the fraction of networks
  whose training loss exceeds ``UNFIT_LOSS``.
* ``training_exponent`` over ``step``: the weighted power-law fit of ``S`` against N over the
  widths that resolve ``S`` at 3 sigma (slope, error, chi2, dof) and the local exponent between
  the widest two of them.
* ``training_ntk`` over ``(ntk_width, step)``: the trained ensemble at large width against
  ``ntk_predict``: ``mean_summary = <mu_t, f_bar> / |mu_t|^2`` (1 at infinite width, 0 untrained)
  and ``cov_summary = <Sigma_t, C_hat> / |Sigma_t|^2`` over the unique covariance entries (1 at
  infinite width; ``cov_untrained`` with K in place of C_hat), with errors, and the largest
  per-input / per-entry ``|z|``.
* ``training_coupling`` over ``fit`` (at ``inference.width``; variables ``step`` and
  ``covariance``): the constant quartic coupling inferred with the correlator likelihood from
  kappa_4 before and after training (first and last snapshot; estimator ``"outputs"``; jackknife
  covariance, and at t = 0 also the exact sampling covariance, the untrained ensemble's), its
  goodness of fit and
  :func:`~nnqft_ppl.inference.diagnostics.diagnose`'s verdict. The coupling forms describe the
  untrained theory (free propagator K); a trained ensemble has a mean and a different
  covariance, so a constant coupling need not describe it, and the verdict says so.

Claims (``spec.claims`` selects; default all):

* ``kappa4_untrained``: ``N S`` at t = 0, inverse-variance averaged over the widths, against the
  exact oracle (effect: the exact value; UNRESOLVED when 3 sigma is not below it);
* ``ntk_mean_t<s>``, ``ntk_cov_t<s>``: at the largest NTK width, after each nonzero snapshot,
  the mean and covariance summaries equal 1 (effect: the training-induced change, 1 for the
  mean, ``|cov_untrained - 1|`` for the covariance);
* ``kappa4_exponent``: the finding that after the last snapshot kappa_4 falls faster than 1/N
  at the spec's widths (fitted slope below -1 by more than 3 sigma; a FAIL would mean the 1/N
  regime is reached); UNRESOLVED with fewer than 3 resolved widths;
* ``coupling_untrained``: the coupling posterior at t = 0 (exact sampling covariance) agrees with
  the same likelihood applied to the exact kappa_4 (effect: that coupling).

After training there is no claim about the coupling: no exact covariance exists, the jackknife
one is too small for these heavy tails (the t = 0 calibration row shows by how much), and a
constant coupling of the untrained theory need not describe a trained ensemble. The table and
the notes give the posterior and :func:`~nnqft_ppl.inference.diagnostics.diagnose`'s verdict
instead of one forced number.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import scipy.stats
import xarray as xr

from ...core.multisets import diagonal_ranks, pair_table
from ...core.progress import progress_bar
from ...core.storage import open_store, write_store
from ...ensembles.training import correlator_stats_from_outputs, train_ensemble
from ...networks.kernels import kernel
from ...networks.ntk import learning_rate_limit
from ...oracle.exact import exact_cumulant
from ...theory.couplings import fit_coupling
from ...theory.ntk_gp import ntk_predict
from ..modeling import infer_spec
from ..results import Claim, StudyResult, fmt, networks_needed, unresolved_claim, z_claim
from ..specs import register_study
from .common import power_law_fit

__all__ = ["run_training", "UNFIT_LOSS"]

#: A network whose training loss ``1/2 sum_i (f(x_i) - y_i)^2`` exceeds this has not fit the
#: data (an RMS residual above 0.05 on targets of size 1).
UNFIT_LOSS = 1e-2


def trained_outputs(arch, X_train, y_train, X, width, n_networks, steps, eta, seed, snapshots,
                    precision="float64", cache=None, progress=False) -> xr.DataArray:  # fmt: skip
    """``train_ensemble`` outputs ``(step, network, input)``, stored under ``cache`` and reused.

    The store is named by a hash of everything that determines the outputs, so a changed spec
    never reuses stale networks.
    """
    args = (arch, X_train, y_train, X, width, n_networks, steps, eta, seed)
    path = None
    if cache is not None:
        arrays = [np.asarray(a).tolist() for a in (X_train, y_train, X)]
        identity = [arch.to_dict(), *arrays, *args[4:7], float(eta), seed, list(snapshots),
                    precision]  # fmt: skip
        key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
        path = Path(cache) / f"trained_{arch.name}_N{width}_{key}.zarr"
        if path.exists():
            return open_store(path)["f"]
    f = train_ensemble(*args, snapshots=snapshots, precision=precision, progress=progress)
    if path is not None:
        write_store(f.to_dataset(), path)
    return f


def kappa4_row(stats, sigma: np.ndarray, exact=None) -> dict:
    """The kappa_4 numbers of one (step, width): summary ``S`` (see module docstring), its
    error, the measured excess kurtosis / 3 and the variance ratio; ``sigma (P, P)`` is the
    infinite-width covariance, ``exact`` the exact kappa_4 ``(M,)`` (untrained) or None."""
    P = sigma.shape[0]
    diag = diagonal_ranks(P, 4)
    k4, C = stats.cumulant(4).values, stats.covariance(4).values
    a = np.zeros(k4.size)
    a[diag] = 1.0 / (3 * np.diag(sigma) ** 2 * P)
    variance = stats.moment(2).values[diagonal_ranks(P, 2)]
    row = {
        "S": float(a @ k4),
        "S_err": float(np.sqrt(max(a @ C @ a, 0.0))),
        "kurtosis": float(np.mean(k4[diag] / (3 * variance**2))),
        "variance_ratio": float(np.mean(variance / np.diag(sigma))),
        "S_exact": float(a @ exact) if exact is not None else np.nan,
    }
    return row


def ntk_row(arch, X, width, f, mean, cov, K, n_batches, seed) -> dict:
    """One (ntk_width, step) of the NTK comparison (module docstring); ``f (n, P)``."""
    n, P = f.shape
    row = {}
    z = (f.mean(0) - mean) / (f.std(0, ddof=1) / np.sqrt(n))
    row["max_abs_z_mean"] = float(np.max(np.abs(z)))
    if mean @ mean > 0:
        proj = f @ (mean / (mean @ mean))
        row["mean_summary"], row["mean_err"] = float(proj.mean()), float(proj.std(ddof=1) / n**0.5)
    else:  # untrained: no change to measure
        row["mean_summary"] = row["mean_err"] = np.nan
    stats = correlator_stats_from_outputs(
        arch, X, width, f, 2, min(n_batches, n), seed, center="mean"
    )
    unbiased = n / (n - 1)  # the centred second moments divide by n
    c = stats.moment(2).values * unbiased
    C = stats.covariance(2, kind="moment").values * unbiased**2
    pairs = pair_table(cov)  # the entries in the order of the moments' tuples
    row["max_abs_z_cov"] = float(np.max(np.abs(c - pairs) / np.sqrt(np.diag(C))))
    w = pairs / (pairs @ pairs)
    row["cov_summary"] = float(w @ c)
    row["cov_err"] = float(np.sqrt(max(w @ C @ w, 0.0)))
    row["cov_untrained"] = float(w @ pair_table(K))
    return row


def _table(rows: dict, dims: tuple, coords: dict, attrs: dict) -> xr.Dataset:
    """Rows keyed by coordinate tuples -> a Dataset over ``dims``."""
    shape = tuple(len(coords[d]) for d in dims)
    keys = next(iter(rows.values())).keys()
    data = {}
    for k in keys:
        values = np.array([rows[idx][k] for idx in np.ndindex(shape)])
        data[k] = (dims, values.reshape(shape))
    return xr.Dataset(data, coords=coords, attrs=attrs)


@register_study("training")
def run_training(spec, cache=None, progress: bool = False) -> StudyResult:
    """Run a ``study = "training"`` spec (see the module docstring)."""
    arch = spec.architecture_for()
    X = spec.inputs_for(arch)
    tr, ens = spec.training, spec.ensemble
    X_train, y_train = tr.training_set()
    eta = tr.rate_factor * learning_rate_limit(arch, X_train) / 2
    snaps = tr.steps_recorded()
    K = kernel(arch, X)
    predicted = {s: ntk_predict(arch, X_train, y_train, X, s, eta) for s in snaps}
    expected_loss = {}  # infinite width: E[1/2 |f(X) - y|^2] = 1/2 (|mu - y|^2 + tr Sigma)
    for s in snaps:
        m, c = ntk_predict(arch, X_train, y_train, X_train, s, eta)
        expected_loss[s] = 0.5 * (float(np.sum((m - y_train) ** 2)) + float(np.trace(c)))
    X_all = np.vstack([X, X_train])  # outputs at the training inputs give the training loss
    P = X.shape[0]

    def train(width, n):  # (step, network, P test + n_train training inputs)
        args = (arch, X_train, y_train, X_all, width, n, tr.steps, eta, ens.seed, snaps)
        return trained_outputs(*args, tr.precision, cache, progress).values

    sizes = spec.ensemble_sizes()
    rows, kept = {}, {}
    inference_width = spec.inference.width if spec.inference is not None else None
    with progress_bar(len(sizes), f"{spec.name}: widths", progress) as advance:
        for j, (N, n) in enumerate(sizes.items()):
            start = time.perf_counter()
            f = train(N, n)
            exact = exact_cumulant(arch, X, N, 4).values
            for i, s in enumerate(snaps):
                out, fit = f[i][:, :P], f[i][:, P:]
                loss = 0.5 * np.sum((fit - y_train) ** 2, axis=1)
                stats = correlator_stats_from_outputs(
                    arch, X, N, out, 4, ens.n_batches, ens.seed, center="mean"
                )
                row = kappa4_row(stats, predicted[s].covariance, exact if s == 0 else None)
                row |= {
                    "N_S": N * row["S"],
                    "N_S_err": N * row["S_err"],
                    "n_networks": n,
                    "median_loss": float(np.median(loss)),
                    "expected_loss": expected_loss[s],
                    "unfit_fraction": float(np.mean(loss > UNFIT_LOSS)),
                }
                rows[(i, j)] = row
                if N == inference_width:
                    kept[s] = stats
            rows[(0, j)]["seconds"] = time.perf_counter() - start
            advance(1)
    for row in rows.values():
        row.setdefault("seconds", np.nan)
    attrs = {
        "architecture": arch.name,
        "learning_rate": eta,
        "steps": tr.steps,
        "precision": tr.precision,
        "unfit_loss": UNFIT_LOSS,
        "inputs": X.ravel().tolist(),
    }
    k4 = _table(rows, ("step", "width"), {"step": snaps, "width": list(sizes)}, attrs)
    result = StudyResult(tables={"training_kappa4": k4})
    result.tables["training_exponent"] = _exponents(k4)

    ntk_rows = {}
    for j, w in enumerate(tr.ntk_widths):
        f = train(w, tr.ntk_networks)
        for i, s in enumerate(snaps):
            mean, cov = predicted[s]
            ntk_rows[(j, i)] = ntk_row(
                arch, X, w, f[i][:, :P], mean, cov, K, ens.n_batches, ens.seed
            )
    result.tables["training_ntk"] = _table(
        ntk_rows,
        ("ntk_width", "step"),
        {"ntk_width": list(tr.ntk_widths), "step": snaps},
        attrs | {"n_networks": tr.ntk_networks},
    )

    wanted = set(spec.claims or ("kappa4_untrained", "ntk", "kappa4_exponent", "coupling"))
    if "kappa4_untrained" in wanted:
        result.claims.append(_untrained_claim(arch, k4))
    if wanted & {"ntk", "ntk_mean", "ntk_cov"}:
        result.claims += _ntk_claims(arch, result.tables["training_ntk"], tr.ntk_networks, wanted)
    if "kappa4_exponent" in wanted:
        result.claims.append(_exponent_claim(arch, k4, result.tables["training_exponent"]))
    if kept and spec.inference is not None:
        _couplings(spec, arch, kept, result, wanted, progress)
    result.notes += _notes(arch, k4, eta)
    return result


def _exponents(k4: xr.Dataset) -> xr.Dataset:
    """Width exponent of S at each step over the widths that resolve it (> 3 sigma), and the
    local exponent between the two widest of them (a power law may hold only asymptotically)."""
    rows = []
    for s in k4.step.values:
        t = k4.sel(step=s)
        used = t.where(t.S > 3 * t.S_err, drop=True)
        row = {"slope": np.nan, "slope_err": np.nan, "chi2": np.nan,
               "dof": used.sizes["width"] - 2, "local_slope": np.nan,
               "local_slope_err": np.nan}  # fmt: skip
        if used.sizes["width"] >= 2:
            row["slope"], row["slope_err"], row["chi2"], row["dof"] = power_law_fit(
                used.width, used.S, used.S_err
            )
            (N1, N2), (S1, S2) = used.width.values[-2:], used.S.values[-2:]
            e1, e2 = used.S_err.values[-2:]
            span = np.log(N2 / N1)
            row["local_slope"] = float(np.log(S2 / S1) / span)
            row["local_slope_err"] = float(np.hypot(e1 / S1, e2 / S2) / span)
        row["widths_used"] = ",".join(str(int(w)) for w in used.width.values)
        rows.append(row)
    return xr.Dataset(
        {k: ("step", [r[k] for r in rows]) for k in rows[0]}, coords={"step": k4.step.values}
    )


def _untrained_claim(arch, k4: xr.Dataset) -> Claim:
    t = k4.sel(step=0) if 0 in k4.step.values else None
    title = f"{arch.name}: kappa_4 of the ensemble before training (t = 0) equals the exact oracle"
    rule = "|z| < 3 on the inverse-variance mean of N S over the widths"
    if t is None:
        return unresolved_claim("kappa4_untrained", title, rule, "step 0 is not a snapshot")
    weights = 1 / t.N_S_err.values**2
    measured = float(np.sum(weights * t.N_S.values) / weights.sum())
    error = float(weights.sum() ** -0.5)
    exact = float(np.mean(t.width.values * t.S_exact.values))  # N S_exact: the same at every N
    return z_claim(
        "kappa4_untrained",
        title,
        measured,
        error,
        exact,
        "exact N S (oracle)",
        effect=exact,
        effect_label="the exact non-Gaussian part",
        n_networks=float(t.n_networks.min()),
        details=f"N S = N mean_x kappa_4(x,x,x,x) / (3 K(x,x)^2) over the widths "
        f"{t.width.values.tolist()}; networks needed are per width",
    )


def _ntk_claims(arch, table: xr.Dataset, n_networks: int, wanted: set) -> list[Claim]:
    w = int(table.ntk_width.values[-1])
    t = table.sel(ntk_width=w)
    claims = []
    for s in t.step.values:
        if s == 0:
            continue  # nothing has changed yet: no effect to resolve
        r = t.sel(step=s)
        if wanted & {"ntk", "ntk_mean"}:
            claims.append(
                z_claim(
                    f"ntk_mean_t{s}",
                    f"{arch.name} N={w}, t={s}: the trained ensemble's mean is the NTK prediction",
                    float(r.mean_summary),
                    float(r.mean_err),
                    1.0,
                    "ntk_predict (summary 1)",
                    effect=1.0,
                    effect_label="the training-induced change of the mean",
                    n_networks=n_networks,
                    details=f"<mu_t, mean f> / |mu_t|^2 (0 before training); largest per-input |z| "
                    f"{float(r.max_abs_z_mean):.2f}",
                )
            )
        if wanted & {"ntk", "ntk_cov"}:
            claims.append(
                z_claim(
                    f"ntk_cov_t{s}",
                    f"{arch.name} N={w}, t={s}: the trained ensemble's covariance is the NTK "
                    "prediction",
                    float(r.cov_summary),
                    float(r.cov_err),
                    1.0,
                    "ntk_predict (summary 1)",
                    effect=float(r.cov_untrained) - 1.0,
                    effect_label="the training-induced change of the covariance",
                    n_networks=n_networks,
                    details=f"<Sigma_t, C> / |Sigma_t|^2 over the unique entries "
                    f"({fmt(float(r.cov_untrained))} before training); largest per-entry |z| "
                    f"{float(r.max_abs_z_cov):.2f}",
                )
            )
    return claims


def _exponent_claim(arch, k4: xr.Dataset, exponents: xr.Dataset) -> Claim:
    s = int(k4.step.values[-1])
    e = exponents.sel(step=s)
    title = f"{arch.name}: after {s} steps kappa_4 falls as 1/N"
    rule = "|slope + 1| < 3 sigma over at least 3 widths that resolve S at 3 sigma"
    used = [int(w) for w in str(e.widths_used.item()).split(",") if w]
    if len(used) < 3:
        t = k4.sel(step=s)
        # networks that would resolve S at 3 sigma; a negative S never enters the fit
        each = networks_needed(t.n_networks.values, t.S_err.values, t.S.values)
        needed = float(np.sort(np.where(t.S > 0, each, np.inf))[min(2, each.size - 1)])
        return unresolved_claim(
            "kappa4_exponent",
            title,
            rule,
            f"only {len(used)} width(s) resolve S at 3 sigma ({used})",
            needed,
        )
    z = (float(e.slope) + 1.0) / float(e.slope_err)
    local = fmt(float(e.local_slope), float(e.local_slope_err))
    return Claim(
        "kappa4_exponent",
        f"{arch.name}: after {s} steps kappa_4 falls faster than 1/N at widths {used}: the "
        "perturbative 1/N regime is not reached (finding)",
        float(e.slope), float(e.slope_err), -1.0, "perturbative exponent (kappa_4 ~ 1/N)",
        "slope below -1 by more than 3 sigma", "PASS" if z < -3 else "FAIL", z=z,
        details=f"weighted fit of log S vs log N; chi2 = {float(e.chi2):.3g} on {int(e.dof)} "
        f"dof; local exponent between the widest two {local}; "
        "the training_kappa4 columns variance_ratio, kurtosis and unfit_fraction say why "
        "(narrow nets that have not fit the data spread widely, with heavy tails)",
    )  # fmt: skip


def _couplings(spec, arch, kept: dict, result: StudyResult, wanted: set, progress) -> None:
    """Coupling posteriors from kappa_4 at the inference width, before and after training.

    The covariance of the measured kappa_4: at t = 0 the exact sampling covariance (the
    untrained ensemble's, valid there) and, as a calibration, the jackknife one; after training
    only the jackknife one exists. Heavy tails make the jackknife covariance of kappa_4 (an
    8th-moment statistic) too small, which inflates chi2: the t = 0 pair shows by how much.
    """
    from ...inference.diagnostics import diagnose

    L = spec.theory.cutoff
    form = spec.coupling_form()
    # before (exact and, as a calibration, jackknife covariance) and after training
    fits = [(s, "jackknife") for s in sorted({min(kept), max(kept)})]
    if 0 in kept:
        fits.insert(0, (0, "exact"))
    rows = []
    for s, covariance in fits:
        stats = kept[s]
        idata = infer_spec(
            spec,
            stats,
            likelihood="correlator",
            progress=progress,
            estimator="outputs",
            covariance=covariance,
        )
        result.posteriors[f"correlator_N{stats.width}_t{s}_{covariance}"] = idata
        d = diagnose(idata)
        draws = idata.posterior["lambda"].values
        rows.append(
            {
                "step": s,
                "covariance": covariance,
                "mean": float(draws.mean()),
                "sd": float(draws.std()),
                "chi2": d.fit.chi2,
                "dof": d.fit.dof,
                "p_value": d.fit.p_value,
                "rank": d.fit.rank,
                "divergences": d.divergences,
                "r_hat": d.max_r_hat,
                "verdict": d.verdict.replace("\n", " "),
            }
        )
    N = int(next(iter(kept.values())).width)
    table = xr.Dataset(
        {k: ("fit", [r[k] for r in rows]) for k in rows[0]},
        coords={"fit": np.arange(len(rows))},
        attrs={
            "width": N,
            "form": type(form).__name__,
            "cutoff": str(L or "all space"),
            "method": spec.inference.method,
        },
    )
    result.tables["training_coupling"] = table
    for r in rows:
        result.notes.append(
            f"Coupling at N={N}, t={r['step']} (correlator likelihood, outputs estimator, "
            f"{r['covariance']} covariance): {r['verdict']}"
        )
    if 0 in kept:
        stats = kept[0]
        exact = exact_cumulant(arch, stats.X, N, 4)
        cov = stats.covariance(4, method="exact").values
        oracle = fit_coupling(form, arch, stats.X, exact, cov, L)
        # the oracle's chi2 grows in proportion to the networks (its misfit is fixed)
        rejecting = stats.n_networks * scipy.stats.chi2.isf(1e-3, oracle.dof) / oracle.chi2
        result.notes.append(
            f"The exact kappa_4 of the untrained ensemble at N={N} itself gives chi2 = "
            f"{oracle.chi2:.3g} on {oracle.dof} dof (p = {oracle.p_value:.2g}) for a constant "
            f"coupling with the sampling covariance of {stats.n_networks} networks; chi2 grows in "
            f"proportion to the networks, so from about {rejecting:.2g} networks on the data "
            "reject a constant coupling at these inputs even before training (p < 1e-3)."
        )
        if "coupling" in wanted:
            r = rows[0]
            result.claims.append(
                z_claim(
                    "coupling_untrained",
                    f"{arch.name} N={N}, t=0: the coupling posterior (exact covariance) agrees "
                    "with the correlator likelihood's estimate on the exact kappa_4",
                    r["mean"],
                    r["sd"],
                    float(oracle.theta[0]),
                    "least squares of the exact kappa_4 (same covariance)",
                    effect=float(oracle.theta[0]),
                    effect_label="the coupling itself",
                    n_networks=float(stats.n_networks),
                    details=f"chi2 = {r['chi2']:.3g} on {r['dof']} dof; the oracle's own chi2 = "
                    f"{oracle.chi2:.3g}",
                )
            )


def _notes(arch, k4: xr.Dataset, eta: float) -> list[str]:
    last = k4.isel(step=-1)
    s = int(last.step)
    parts = ", ".join(
        f"N={int(w)}: {100 * float(last.unfit_fraction.sel(width=w)):.1f}%"
        for w in last.width.values
    )
    return [
        f"After {s} steps (eta = {eta:.4g}; infinite-width expected training loss "
        f"{float(last.expected_loss.values[0]):.2g}) the fraction of networks with training loss "
        f"> {UNFIT_LOSS:g} is {parts}. Narrow networks that have not fit the data make the tails "
        "of the trained ensemble heavy (kurtosis column): kappa_4 after training is dominated by "
        "few networks, and its jackknife errors are less reliable than before training."
    ]
