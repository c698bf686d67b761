"""Inference runners: NUTS and SVI on the NGP likelihoods, returning ArviZ 1.x DataTrees.

:func:`infer` builds the likelihood (:mod:`nnqft_ppl.likelihoods`), runs NUTS (several
chains, ``chain_method="sequential"`` by default: a library cannot set the host device count
after jax has started) or SVI (AutoNormal / AutoMultivariateNormal guide, optax Adam), and
returns an ``xarray.DataTree`` with the groups

* ``posterior``: one variable per coupling (``"lambda"`` for ``Constant()``), ``(chain, draw)``;
* ``sample_stats``: NUTS ``diverging``, ``lp``, ``acceptance_rate``, ``n_steps``, ``energy``;
  SVI ``lp`` and the ELBO loss trace (dim ``step``);
* ``log_likelihood``: correlator likelihood ``kappa_4 (chain, draw, component)`` (one term per
  kept covariance eigenvector); field likelihood ``field (chain, draw, batch)`` (leave-one-batch
  -out over the ensemble's batches) or ``(chain, draw, network)`` on a subsample;
* ``observed_data``: measured ``kappa_n (tuple)`` (and the field statistic ``field``);
* ``posterior_predictive``: replicated ``kappa_n (chain, draw, tuple)`` and its mean
  ``kappa_n_mean``;
* ``constant_data``: design ``(tuple, coupling)``, whitener ``(component, tuple)``.

Samplers run in standardised coordinates ``z = (theta - estimate) / stderr`` (exact affine
reparametrisation of the same prior), so couplings of size 1e-4 +- 1e-7 cause no step-size or
learning-rate trouble; chains start over-dispersed (3 standard errors) around the estimate.
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np

from .couplings import Constant
from .likelihoods import (
    DEFAULT_RTOL,
    CorrelatorData,
    correlator_data,
    correlator_model,
    field_model,
    field_statistics,
)

__all__ = ["infer", "infer_correlators", "LIKELIHOODS", "METHODS", "GUIDES", "run_nuts", "run_svi"]

LIKELIHOODS = ("correlator", "field")
METHODS = ("nuts", "svi")
GUIDES = ("normal", "multivariate_normal")
POINTWISE = ("batch", "network")


def _check_choice(value, allowed, name):
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose from {', '.join(allowed)}")
    return value


def run_nuts(
    model,
    model_kwargs: dict,
    names,
    seed: int = 0,
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 1000,
    chain_method: str = "sequential",
    dense_mass: bool | None = None,
    progress: bool = False,
):
    """NUTS on a model whose couplings are standardised sites ``<name>_std``.

    Returns ``(samples {name: (chains, draws)}, stats {name: (chains, draws)})``.
    """
    from numpyro.infer import MCMC, NUTS

    p = len(names)
    kernel = NUTS(
        model, dense_mass=p > 1 if dense_mass is None else dense_mass, target_accept_prob=0.9
    )
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=progress,
    )
    key_init, key_run = jax.random.split(jax.random.PRNGKey(seed))
    # over-dispersed starts: 3 standard errors around the estimate
    init = {
        f"{n}_std": 3.0 * jax.random.normal(jax.random.fold_in(key_init, i), (num_chains,))
        for i, n in enumerate(names)
    }
    if num_chains == 1:
        init = {k: v[0] for k, v in init.items()}
    mcmc.run(
        key_run,
        init_params=init,
        extra_fields=("diverging", "potential_energy", "accept_prob", "num_steps", "energy"),
        **model_kwargs,
    )
    samples = mcmc.get_samples(group_by_chain=True)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    stats = {
        "diverging": np.asarray(extra["diverging"]),
        "lp": -np.asarray(extra["potential_energy"]),
        "acceptance_rate": np.asarray(extra["accept_prob"]),
        "n_steps": np.asarray(extra["num_steps"]),
        "energy": np.asarray(extra["energy"]),
    }
    return {n: np.asarray(samples[n]) for n in names}, stats


def run_svi(
    model,
    model_kwargs: dict,
    names,
    seed: int = 0,
    guide: str = "normal",
    steps: int = 2000,
    learning_rate: float = 0.02,
    num_samples: int = 1000,
):
    """SVI (Trace_ELBO, optax Adam) with an AutoNormal or AutoMultivariateNormal guide.

    Returns ``(draws {name: (1, num_samples)}, stats {"lp": (1, draws), "loss": (steps,)})``.
    """
    import optax
    from numpyro.infer import SVI, Predictive, Trace_ELBO
    from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal
    from numpyro.infer.initialization import init_to_value
    from numpyro.infer.util import log_density
    from numpyro.optim import optax_to_numpyro

    _check_choice(guide, GUIDES, "guide")
    init = init_to_value(values={f"{n}_std": 0.0 for n in names})
    auto = (
        AutoNormal(model, init_loc_fn=init, init_scale=1.0)
        if guide == "normal"
        else AutoMultivariateNormal(model, init_loc_fn=init, init_scale=1.0)
    )
    optimizer = optax_to_numpyro(optax.adam(learning_rate))
    svi = SVI(model, auto, optimizer, Trace_ELBO(num_particles=4))
    key_run, key_draw = jax.random.split(jax.random.PRNGKey(seed))
    result = svi.run(key_run, steps, progress_bar=False, **model_kwargs)
    predictive = Predictive(auto, params=result.params, num_samples=num_samples)
    latent = predictive(key_draw, **model_kwargs)
    draws = Predictive(model, posterior_samples=latent, return_sites=list(names))(
        key_draw, **model_kwargs
    )

    def lp(sample):
        return log_density(model, (), model_kwargs, sample)[0]

    std = {f"{n}_std": latent[f"{n}_std"] for n in names}
    lps = jax.vmap(lp)(std)
    stats = {"lp": np.asarray(lps)[None, :], "loss": np.asarray(result.losses)}
    return {n: np.asarray(draws[n])[None, :] for n in names}, stats


def infer_correlators(
    data: CorrelatorData,
    method: str = "nuts",
    seed: int = 0,
    *,
    prior=None,
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 1000,
    chain_method: str = "sequential",
    guide: str = "normal",
    svi_steps: int = 2000,
    learning_rate: float = 0.02,
    attrs: dict | None = None,
):
    """Posterior from prepared correlator-likelihood data (:class:`CorrelatorData`).

    The same DataTree as :func:`infer` with ``likelihood="correlator"``, for data built by
    hand (``CorrelatorData.from_arrays``: exact-oracle correlators, simulated replicates).

    Example:
        >>> data = CorrelatorData.from_arrays(["lambda"], k4, design, cov)
        >>> idata = infer_correlators(data, method="svi")
    """
    _check_choice(method, METHODS, "method")
    center, cov = data.least_squares()
    kwargs = {"data": data, "prior": prior, "center": center, "spread": np.sqrt(np.diag(cov))}
    start = time.perf_counter()
    if method == "nuts":
        samples, sstats = run_nuts(
            correlator_model, kwargs, list(data.names), seed, num_chains, num_warmup,
            num_samples, chain_method,
        )  # fmt: skip
    else:
        samples, sstats = run_svi(
            correlator_model, kwargs, list(data.names), seed, guide, svi_steps, learning_rate,
            num_samples,
        )  # fmt: skip
    info = {
        "likelihood": "correlator",
        "method": method,
        "seed": seed,
        "inference_seconds": time.perf_counter() - start,
        "guide": guide if method == "svi" else "none",
        "chain_method": chain_method,
        **(attrs or {}),
    }
    return _datatree(samples, sstats, data, None, None, info, seed)


def infer(
    stats,
    arch=None,
    X=None,
    form=None,
    likelihood: str = "correlator",
    method: str = "nuts",
    cutoff=None,
    seed: int = 0,
    *,
    prior=None,
    covariance="auto",
    rtol: float | None = None,
    sandwich: str = "auto",
    width: str = "sandwich",
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 1000,
    chain_method: str = "sequential",
    guide: str = "normal",
    svi_steps: int = 2000,
    learning_rate: float = 0.02,
    pointwise: str = "batch",
    n_pointwise: int = 1000,
    progress: bool = False,
):
    """Posterior of the couplings of ``form`` from measured correlator statistics.

    Args:
        stats: :class:`~nnqft_ppl.correlators.CorrelatorStats` (``nq.correlators(...)``).
        arch, X: default to those of ``stats``.
        form: coupling form (default ``nq.couplings.Constant()``: posterior variable ``lambda``).
        likelihood: ``"correlator"`` or ``"field"`` (SPEC section 4).
        method: ``"nuts"`` or ``"svi"``.
        cutoff: box cutoff L of the vertex integrals; None = all of input space (Gauss-net).
        seed: PRNG seed.
        prior: None (``Normal(0, s)``, s = the coupling whose first-order correlator equals
            the free one), a numpyro distribution, or ``{name: distribution}``.
        covariance: correlator covariance: ``"auto"`` | ``"exact"`` | ``"jackknife"`` | array.
        rtol: relative eigenvalue cutoff (correlator covariance: 1e-12; kernel for the field
            likelihood: :func:`~nnqft_ppl.likelihoods.field_rtol`).
        sandwich, width: field likelihood: how ``Cov(A)`` is obtained and which width is used
            (:func:`~nnqft_ppl.likelihoods.field_statistics`).
        num_chains, num_warmup, num_samples, chain_method: NUTS settings (``num_samples``
            draws are also taken from the SVI guide).
        guide, svi_steps, learning_rate: SVI settings (``"normal"`` = AutoNormal,
            ``"multivariate_normal"`` = AutoMultivariateNormal; Adam).
        pointwise: field likelihood's ``log_likelihood``: ``"batch"`` (every network, per
            batch) or ``"network"`` (the first ``n_pointwise`` networks, from
            :func:`~nnqft_ppl.ensemble.sample_outputs`).
        progress: NUTS progress bar.

    Returns:
        ``xarray.DataTree`` (module docstring for the groups); ``idata.attrs`` record the
        likelihood, method, form, cutoff, covariance projection and, for the field
        likelihood, both the model-based and the sandwich widths and the log Z check.

    Example:
        >>> idata = infer(stats, form=nq.couplings.Constant(), cutoff=2.0, method="nuts")
        >>> idata.posterior["lambda"].mean().item(), nq.diagnose(idata).verdict
    """
    _check_choice(likelihood, LIKELIHOODS, "likelihood")
    _check_choice(method, METHODS, "method")
    _check_choice(pointwise, POINTWISE, "pointwise")
    form = Constant() if form is None else form
    corr_rtol = DEFAULT_RTOL if likelihood == "field" or rtol is None else rtol
    data = correlator_data(stats, arch, X, form, cutoff, covariance, corr_rtol)
    info = {
        "form": type(form).__name__,
        "cutoff": "inf" if cutoff is None else float(cutoff),
        "architecture": json.dumps(stats.arch.to_dict()),
    }
    settings = {
        "num_chains": num_chains, "num_warmup": num_warmup, "num_samples": num_samples,
        "chain_method": chain_method, "guide": guide, "svi_steps": svi_steps,
        "learning_rate": learning_rate,
    }  # fmt: skip
    if likelihood == "correlator":
        return infer_correlators(data, method, seed, prior=prior, attrs=info, **settings)
    field = field_statistics(stats, arch, X, form, cutoff, rtol, sandwich, width)
    est = field.estimate()
    key = "sandwich_covariance" if width == "sandwich" else "model_covariance"
    kwargs = {
        "stats": field, "prior": prior, "center": est["theta"],
        "spread": np.sqrt(np.diag(est[key])),
    }  # fmt: skip
    names = list(data.names)
    start = time.perf_counter()
    if method == "nuts":
        samples, sstats = run_nuts(
            field_model, kwargs, names, seed, num_chains, num_warmup, num_samples, chain_method,
            progress=progress,
        )  # fmt: skip
    else:
        samples, sstats = run_svi(
            field_model, kwargs, names, seed, guide, svi_steps, learning_rate, num_samples
        )
    info.update(
        likelihood="field",
        method=method,
        seed=seed,
        inference_seconds=time.perf_counter() - start,
        guide=guide if method == "svi" else "none",
        chain_method=chain_method,
    )
    outputs = None
    if pointwise == "network":
        from .ensemble import sample_outputs

        outputs = sample_outputs(stats.arch, stats.X, stats.width, n_pointwise, stats.seed)
    return _datatree(samples, sstats, data, field, outputs, info, seed)


def _datatree(samples, sstats, data: CorrelatorData, field, outputs, info: dict, seed: int):
    import arviz as az

    names = list(data.names)
    theta = np.stack([samples[n] for n in names], axis=-1)  # (chain, draw, p)
    rng = np.random.default_rng(seed)
    kname = f"kappa_{data.order}"
    coords = {
        "tuple": list(data.labels),
        "coupling": list(data.names),
        "component": np.arange(data.rank),
    }
    dims = {
        kname: ["tuple"],
        f"{kname}_mean": ["tuple"],
        "design": ["tuple", "coupling"],
        "whitener": ["component", "tuple"],
    }
    observed = {kname: data.observed}
    constant = {"design": data.design, "whitener": data.whitener}
    if field is None:
        log_lik = {kname: np.asarray(data.log_likelihood(theta))}
        dims_ll = {kname: ["component"]}
    else:
        if outputs is None:
            log_lik = {"field": np.asarray(field.pointwise_batches(theta))}
            dims_ll = {"field": ["batch"]}
        else:
            log_lik = {"field": np.asarray(field.pointwise_networks(theta, outputs))}
            dims_ll = {"field": ["network"]}
        observed["field"] = field.mean
        dims["field"] = ["coupling"]
        constant["field_gp_covariance"] = field.gp_covariance
        constant["field_data_covariance"] = field.data_covariance
        dims["field_gp_covariance"] = ["coupling", "coupling_"]
        dims["field_data_covariance"] = ["coupling", "coupling_"]
        coords["coupling_"] = list(data.names)
    ppc = {kname: data.replicate(theta, rng), f"{kname}_mean": data.predict(theta)}
    sample_stats = {k: v for k, v in sstats.items() if k != "loss"}
    attrs = _attrs(data, field, info)
    dt = az.from_dict(
        {
            "posterior": samples,
            "sample_stats": sample_stats,
            "posterior_predictive": ppc,
            "observed_data": observed,
            "constant_data": constant,
        },
        coords=coords,
        dims=dims,
        attrs={"/": attrs},
    )
    # separate call: the correlator log-likelihood shares its name with the observed
    # kappa_n but lives on whitened components, not tuples
    dt["log_likelihood"] = az.from_dict({"log_likelihood": log_lik}, coords=coords, dims=dims_ll)[
        "log_likelihood"
    ]
    if "loss" in sstats:
        ss = dt["sample_stats"].to_dataset()
        ss["loss"] = ("step", sstats["loss"])
        dt["sample_stats"] = ss
    return dt


def _attrs(data: CorrelatorData, field, info: dict) -> dict:
    attrs = {
        "couplings": json.dumps(list(data.names)),
        "order": data.order,
        "n_networks": -1 if data.n_networks is None else int(data.n_networks),
        "width": -1 if data.width is None else int(data.width),
        "covariance_method": data.covariance_method,
        "covariance_rank": data.rank,
        "covariance_rtol": data.rtol,
        "inference_library": "numpyro",
        **info,
    }
    if field is not None:
        est = field.estimate()
        attrs.update(
            {
                "field_rank": field.rank,
                "field_rtol": field.rtol,
                "field_width": field.width,
                "sandwich_method": field.sandwich_method,
                "model_sd": json.dumps(np.sqrt(np.diag(est["model_covariance"])).tolist()),
                "sandwich_sd": json.dumps(np.sqrt(np.diag(est["sandwich_covariance"])).tolist()),
                "log_normaliser": "second-order cumulant expansion, mu = 0 (normal ordering)",
                "log_normaliser_shift_sd": json.dumps(field.log_normaliser_shift().tolist()),
            }
        )
    return attrs
