"""Inference runners: NUTS and SVI on the NGP likelihoods, returning ArviZ 1.x DataTrees.

:func:`infer` builds the likelihood (:mod:`nnqft_ppl.inference.likelihoods`), runs NUTS
(several chains, ``chain_method="sequential"`` by default: a library cannot set the host device
count after jax has started) or SVI (AutoNormal / AutoMultivariateNormal guide, optax Adam), and
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
* ``prior``, ``prior_predictive``: draws of the couplings from their prior and the correlators
  they predict (for prior-versus-posterior checks);
* ``constant_data``: design ``(tuple, coupling)``, whitener ``(component, tuple)`` and, for the
  field likelihood, its covariances and both widths per coupling.

``method="closed_form"``: both likelihoods are linear-Gaussian in the couplings, so with the
default Normal priors the posterior is exactly Gaussian
(:func:`~nnqft_ppl.inference.likelihoods.gaussian_posterior`); its draws replace the sampler's
(NUTS is checked against it in the tests).

The coupling names are the ``coupling`` coordinate (:func:`coupling_names`). Samplers run in
standardised coordinates ``z = (theta - estimate) / stderr`` (exact affine reparametrisation of
the same prior), so couplings of size 1e-4 +- 1e-7 cause no step-size or learning-rate trouble;
chains start over-dispersed (3 standard errors) around the estimate.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import NamedTuple

import jax
import numpy as np

from ..core.precision import float64
from ..core.validation import check_choice, check_positive_int
from ..theory.couplings import Constant
from .likelihoods import (
    DEFAULT_RTOL,
    CorrelatorData,
    correlator_data,
    correlator_model,
    field_model,
    field_statistics,
    gaussian_posterior,
)

__all__ = [
    "infer",
    "infer_correlators",
    "NUTSSettings",
    "SVISettings",
    "ClosedFormSettings",
    "SamplerOutput",
    "coupling_names",
    "run_nuts",
    "run_svi",
    "LIKELIHOODS",
    "METHODS",
    "GUIDES",
]

LIKELIHOODS = ("correlator", "field")
METHODS = ("nuts", "svi", "closed_form")
GUIDES = ("normal", "multivariate_normal")
POINTWISE = ("batch", "network")


@dataclass(frozen=True)
class NUTSSettings:
    """NUTS settings: ``num_chains`` chains of ``num_warmup`` + ``num_samples`` steps each.

    ``chain_method``: ``"sequential"`` (default), ``"vectorized"`` or ``"parallel"`` (needs as
    many devices); ``dense_mass``: None = dense for several couplings.
    """

    num_chains: int = 4
    num_warmup: int = 500
    num_samples: int = 1000
    chain_method: str = "sequential"
    dense_mass: bool | None = None
    target_accept_prob: float = 0.9

    def __post_init__(self):
        for name in ("num_chains", "num_warmup", "num_samples"):
            check_positive_int(getattr(self, name), name)
        check_choice(self.chain_method, ("sequential", "vectorized", "parallel"), "chain_method")


@dataclass(frozen=True)
class SVISettings:
    """SVI settings: ``guide`` (``"normal"`` = AutoNormal, ``"multivariate_normal"``), Adam
    ``steps`` at ``learning_rate``, then ``num_samples`` draws from the fitted guide."""

    guide: str = "normal"
    steps: int = 2000
    learning_rate: float = 0.02
    num_samples: int = 1000

    def __post_init__(self):
        check_choice(self.guide, GUIDES, "guide")
        check_positive_int(self.steps, "steps")
        check_positive_int(self.num_samples, "num_samples")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")


@dataclass(frozen=True)
class ClosedFormSettings:
    """Draws from the exact Gaussian posterior (linear-Gaussian likelihood, Normal priors):
    ``num_chains`` x ``num_samples`` independent draws, laid out like a sampler's."""

    num_chains: int = 4
    num_samples: int = 1000

    def __post_init__(self):
        check_positive_int(self.num_chains, "num_chains")
        check_positive_int(self.num_samples, "num_samples")


SETTINGS = {"nuts": NUTSSettings, "svi": SVISettings, "closed_form": ClosedFormSettings}


def _settings(method) -> NUTSSettings | SVISettings | ClosedFormSettings:
    if isinstance(method, tuple(SETTINGS.values())):
        return method
    return SETTINGS[check_choice(method, METHODS, "method")]()


def _method_name(settings) -> str:
    return next(name for name, cls in SETTINGS.items() if isinstance(settings, cls))


class SamplerOutput(NamedTuple):
    """Draws of the couplings and sampler statistics.

    Attributes:
        samples: ``{coupling: (chain, draw)}``.
        stats: ``{name: (chain, draw)}`` (NUTS: diverging, lp, acceptance_rate, n_steps,
            energy; SVI: lp) plus SVI's ``loss (steps,)``.
    """

    samples: dict
    stats: dict


def run_nuts(
    model, model_kwargs: dict, names, settings: NUTSSettings, seed: int = 0, progress: bool = False
) -> SamplerOutput:
    """NUTS on a model whose couplings are standardised sites ``<name>_std``."""
    from numpyro.infer import MCMC, NUTS

    s = settings
    dense = len(names) > 1 if s.dense_mass is None else s.dense_mass
    kernel = NUTS(model, dense_mass=dense, target_accept_prob=s.target_accept_prob)
    mcmc = MCMC(
        kernel,
        num_warmup=s.num_warmup,
        num_samples=s.num_samples,
        num_chains=s.num_chains,
        chain_method=s.chain_method,
        progress_bar=progress,
    )
    key_init, key_run = jax.random.split(jax.random.PRNGKey(seed))
    # over-dispersed starts: 3 standard errors around the estimate
    init = {
        f"{n}_std": 3.0 * jax.random.normal(jax.random.fold_in(key_init, i), (s.num_chains,))
        for i, n in enumerate(names)
    }
    if s.num_chains == 1:
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
    return SamplerOutput({n: np.asarray(samples[n]) for n in names}, stats)


def run_svi(
    model, model_kwargs: dict, names, settings: SVISettings, seed: int = 0
) -> SamplerOutput:
    """SVI (Trace_ELBO, optax Adam) with an AutoNormal or AutoMultivariateNormal guide."""
    import optax
    from numpyro.infer import SVI, Predictive, Trace_ELBO
    from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal
    from numpyro.infer.initialization import init_to_value
    from numpyro.infer.util import log_density
    from numpyro.optim import optax_to_numpyro

    s = settings
    init = init_to_value(values={f"{n}_std": 0.0 for n in names})
    guide_class = AutoNormal if s.guide == "normal" else AutoMultivariateNormal
    auto = guide_class(model, init_loc_fn=init, init_scale=1.0)
    optimizer = optax_to_numpyro(optax.adam(s.learning_rate))
    svi = SVI(model, auto, optimizer, Trace_ELBO(num_particles=4))
    key_run, key_draw = jax.random.split(jax.random.PRNGKey(seed))
    result = svi.run(key_run, s.steps, progress_bar=False, **model_kwargs)
    predictive = Predictive(auto, params=result.params, num_samples=s.num_samples)
    latent = predictive(key_draw, **model_kwargs)
    draws = Predictive(model, posterior_samples=latent, return_sites=list(names))(
        key_draw, **model_kwargs
    )

    def lp(sample):
        return log_density(model, (), model_kwargs, sample)[0]

    lps = jax.vmap(lp)({f"{n}_std": latent[f"{n}_std"] for n in names})
    stats = {"lp": np.asarray(lps)[None, :], "loss": np.asarray(result.losses)}
    return SamplerOutput({n: np.asarray(draws[n])[None, :] for n in names}, stats)


def run_closed_form(likelihood, names, settings: ClosedFormSettings, seed: int = 0):
    """Independent draws from the exact Gaussian posterior (default Normal priors)."""
    post = gaussian_posterior(likelihood)
    rng = np.random.default_rng(seed)
    normals = rng.standard_normal((settings.num_chains, settings.num_samples, len(names)))
    theta = post.from_normals(normals)  # the draws of post.sample(rng, ...)
    lp = -0.5 * np.sum(normals**2, axis=-1)  # log density up to a constant
    return SamplerOutput({n: theta[..., i] for i, n in enumerate(names)}, {"lp": lp})


def _run(model, kwargs: dict, names, settings, seed: int, progress: bool) -> SamplerOutput:
    if isinstance(settings, ClosedFormSettings):
        if kwargs["prior"] is not None:
            raise ValueError("method='closed_form' needs the default Normal priors (prior=None)")
        likelihood = kwargs.get("data", kwargs.get("stats"))
        return run_closed_form(likelihood, names, settings, seed)
    if isinstance(settings, NUTSSettings):
        return run_nuts(model, kwargs, names, settings, seed, progress)
    return run_svi(model, kwargs, names, settings, seed)


def prior_draws(model, kwargs: dict, names, n: int, seed: int) -> dict:
    """``{coupling: (1, n)}`` draws from the model's prior (NumPyro ``Predictive``)."""
    from numpyro.infer import Predictive

    draws = Predictive(model, num_samples=n, return_sites=list(names))(
        jax.random.PRNGKey(seed + 1), **kwargs
    )
    return {name: np.asarray(draws[name])[None, :] for name in names}


def _info(likelihood: str, settings, seed: int, seconds: float) -> dict:
    method = _method_name(settings)
    return {
        "likelihood": likelihood,
        "method": method,
        "seed": seed,
        "inference_seconds": seconds,
        "inference_library": "numpyro",
        **{f"{method}_{k}": str(v) for k, v in asdict(settings).items()},
    }


@float64
def infer_correlators(
    data: CorrelatorData,
    method="nuts",
    seed: int = 0,
    *,
    prior=None,
    progress: bool = False,
    attrs: dict | None = None,
):
    """Posterior from prepared correlator-likelihood data (:class:`CorrelatorData`).

    The same DataTree as :func:`infer` with ``likelihood="correlator"``, for data built by
    hand (``CorrelatorData.from_arrays``: exact-oracle correlators, simulated replicates).

    Args:
        data: the correlator-likelihood data.
        method: ``"nuts"``, ``"svi"``, ``"closed_form"`` or a settings object
            (:class:`NUTSSettings`, :class:`SVISettings`, :class:`ClosedFormSettings`).
        seed: PRNG seed; prior: as in :func:`infer`; attrs: extra provenance attributes.

    Example:
        >>> data = CorrelatorData.from_arrays(["lambda"], k4, design, cov)
        >>> idata = infer_correlators(data, method="svi")
    """
    settings = _settings(method)
    ls = data.least_squares()
    kwargs = {"data": data, "prior": prior, "center": ls.theta, "spread": ls.stderr}
    start = time.perf_counter()
    names = list(data.names)
    out = _run(correlator_model, kwargs, names, settings, seed, progress)
    info = _info("correlator", settings, seed, time.perf_counter() - start) | (attrs or {})
    prior = prior_draws(correlator_model, kwargs, names, 1000, seed)
    return _datatree(out, data, None, None, info, seed, prior)


@float64
def infer(
    stats,
    form=None,
    *,
    likelihood: str = "correlator",
    method="nuts",
    cutoff=None,
    seed: int = 0,
    prior=None,
    covariance="auto",
    estimator: str | None = None,
    rtol: float | None = None,
    sandwich: str = "auto",
    width: str = "sandwich",
    pointwise: str = "batch",
    n_pointwise: int = 1000,
    progress: bool = False,
):
    """Posterior of the couplings of ``form`` from measured correlator statistics.

    Args:
        stats: :class:`~nnqft_ppl.ensembles.correlators.CorrelatorStats` (``nq.correlators``);
            the architecture and inputs come from it.
        form: coupling form (default ``nq.couplings.Constant()``: posterior variable ``lambda``).
        likelihood: ``"correlator"`` or ``"field"`` (docs/physics.md §4). The field likelihood
            needs the outputs' moment sums; the correlator one takes the measured cumulants.
        method: ``"nuts"`` (4 chains x 1000 draws after 500 warm-up steps), ``"svi"``,
            ``"closed_form"`` (exact Gaussian posterior; default priors only), or a
            :class:`NUTSSettings` / :class:`SVISettings` / :class:`ClosedFormSettings`.
        cutoff: box cutoff L of the vertex integrals; None = all of input space (Gauss-net).
        seed: PRNG seed.
        prior: None (``Normal(0, s)``, s = the coupling whose first-order correlator equals
            the free one), a numpyro distribution, or ``{name: distribution}``.
        covariance: correlator covariance: ``"auto"`` | ``"exact"`` | ``"jackknife"`` | array.
        estimator: the measured correlators of the correlator likelihood: ``"kernel"`` or
            ``"outputs"`` (default: the ensemble's own, the kernel estimator when accumulated).
        rtol: relative eigenvalue cutoff (correlator covariance: 1e-12; kernel for the field
            likelihood: :func:`~nnqft_ppl.inference.likelihoods.field_rtol`).
        sandwich, width: field likelihood: how ``Cov(A)`` is obtained and which width is used
            (:func:`~nnqft_ppl.inference.likelihoods.field_statistics`).
        pointwise: field likelihood's ``log_likelihood``: ``"batch"`` (every network, per
            batch) or ``"network"`` (the first ``n_pointwise`` networks, resampled).
        progress: NUTS progress bar.

    Returns:
        ``xarray.DataTree`` (module docstring for the groups); ``idata.attrs`` record the
        likelihood, method, form, cutoff and covariance projection.

    Example:
        >>> idata = infer(stats, nq.couplings.Constant(), cutoff=2.0, method="nuts")
        >>> idata.posterior["lambda"].mean().item(), nq.diagnose(idata).verdict
    """
    check_choice(likelihood, LIKELIHOODS, "likelihood")
    check_choice(pointwise, POINTWISE, "pointwise")
    settings = _settings(method)
    form = Constant() if form is None else form
    corr_rtol = DEFAULT_RTOL if likelihood == "field" or rtol is None else rtol
    data = correlator_data(stats, form, cutoff=cutoff, covariance=covariance, rtol=corr_rtol,
                           estimator=estimator)  # fmt: skip
    info = {
        "form": type(form).__name__,
        "cutoff": "inf" if cutoff is None else float(cutoff),
        "architecture": stats.arch.name,
    }
    if likelihood == "correlator":
        return infer_correlators(data, settings, seed, prior=prior, progress=progress, attrs=info)
    field = field_statistics(stats, form, cutoff=cutoff, rtol=rtol, sandwich=sandwich, width=width)
    est = field.estimate()
    kwargs = {
        "stats": field,
        "prior": prior,
        "center": est.theta,
        "spread": np.sqrt(np.diag(est.covariance(width))),
    }
    start = time.perf_counter()
    names = list(data.names)
    out = _run(field_model, kwargs, names, settings, seed, progress)
    info |= _info("field", settings, seed, time.perf_counter() - start)
    prior = prior_draws(field_model, kwargs, names, 1000, seed)
    outputs = None
    if pointwise == "network":
        from ..ensembles.sampler import sample_outputs

        outputs = sample_outputs(stats.arch, stats.X, stats.width, n_pointwise, stats.seed)
    return _datatree(out, data, field, outputs, info, seed, prior)


def coupling_names(idata) -> list[str]:
    """The couplings of a posterior from :func:`infer` (its ``coupling`` coordinate)."""
    return [str(n) for n in idata.constant_data["coupling"].values]


def _datatree(out: SamplerOutput, data: CorrelatorData, field, outputs, info: dict, seed: int,
              prior: dict):  # fmt: skip
    import arviz as az

    samples, sstats = out
    names = list(data.names)
    theta = np.stack([samples[n] for n in names], axis=-1)  # (chain, draw, p)
    rng = np.random.default_rng(seed)
    kname = f"kappa_{data.order}"
    coords = {
        "tuple": list(data.labels),
        "coupling": names,
        "component": np.arange(data.rank),
    }
    dims = {
        kname: ["tuple"],
        f"{kname}_mean": ["tuple"],
        "design": ["tuple", "coupling"],
        "whitener": ["component", "tuple"],
        "prior_scale": ["coupling"],
    }
    observed = {kname: data.observed}
    constant = {"design": data.design, "whitener": data.whitener, "prior_scale": data.prior_scale}
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
        est = field.estimate()
        observed["field"] = field.mean
        dims["field"] = ["coupling"]
        constant |= {
            "field_gp_covariance": field.gp_covariance,
            "field_data_covariance": field.data_covariance,
            "field_model_sd": np.sqrt(np.diag(est.model_covariance)),
            "field_sandwich_sd": np.sqrt(np.diag(est.sandwich_covariance)),
            "log_normaliser_shift_sd": field.log_normaliser_shift(),
        }
        dims |= {
            "field_gp_covariance": ["coupling", "coupling_"],
            "field_data_covariance": ["coupling", "coupling_"],
            "field_model_sd": ["coupling"],
            "field_sandwich_sd": ["coupling"],
            "log_normaliser_shift_sd": ["coupling"],
        }
        coords["coupling_"] = names
        info |= {
            "field_rank": field.rank,
            "field_rtol": field.rtol,
            "field_width": field.width,
            "sandwich_method": field.sandwich_method,
            "log_normaliser": "second-order cumulant expansion, mu = 0 (normal ordering)",
        }
    ppc = {kname: data.replicate(theta, rng), f"{kname}_mean": data.predict(theta)}
    prior_theta = np.stack([prior[n] for n in names], axis=-1)
    prior_pc = {kname: data.replicate(prior_theta, rng)}
    sample_stats = {k: v for k, v in sstats.items() if k != "loss"}
    attrs = {
        "order": data.order,
        "n_networks": -1 if data.n_networks is None else int(data.n_networks),
        "width": -1 if data.width is None else int(data.width),
        "covariance_method": data.covariance_method,
        "covariance_rank": data.rank,
        "covariance_rtol": data.rtol,
        **info,
    }
    dt = az.from_dict(
        {
            "posterior": samples,
            "sample_stats": sample_stats,
            "posterior_predictive": ppc,
            "prior": prior,
            "prior_predictive": prior_pc,
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
