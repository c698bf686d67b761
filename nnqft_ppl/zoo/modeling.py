"""Specs into NumPyro: the likelihood and the inference call a spec describes.

Specs only describe (:mod:`nnqft_ppl.zoo.specs`); these two functions turn a spec and measured
correlator statistics into a NumPyro model or a posterior.
"""

from __future__ import annotations

from ..inference.likelihoods import correlator_data, correlator_model
from ..inference.runners import ClosedFormSettings, NUTSSettings, SVISettings, infer
from .specs import Spec, SpecError

__all__ = ["spec_model", "infer_spec"]


def spec_model(spec: Spec, stats):
    """``(model, kwargs)``: the spec's correlator likelihood as a NumPyro model.

    ``numpyro.infer.MCMC(NUTS(model)).run(key, **kwargs)`` samples the couplings of
    ``theory.form`` given the measured ``stats`` (``nq.correlators(...)``).

    Example:
        >>> model, kwargs = spec_model(nq.load_spec("coupling_relu"), stats)
    """
    data = correlator_data(stats, spec.coupling_form(), cutoff=spec.theory.cutoff)
    return correlator_model, {"data": data}


def infer_spec(spec: Spec, stats, likelihood: str | None = None, progress: bool = False,
               **options):  # fmt: skip
    """``nq.infer`` with the spec's form, cutoff, likelihood and sampler settings; ``options``
    (e.g. ``estimator``, ``covariance``) pass on to ``infer``."""
    if spec.inference is None:
        raise SpecError(f"spec {spec.name!r} names no likelihood ([inference] is missing)")
    inf = spec.inference
    if inf.method == "nuts":
        method = NUTSSettings(
            num_chains=inf.num_chains, num_warmup=inf.num_warmup, num_samples=inf.num_samples
        )
    elif inf.method == "svi":
        method = SVISettings(num_samples=inf.num_samples)
    else:
        method = ClosedFormSettings(num_chains=inf.num_chains, num_samples=inf.num_samples)
    return infer(
        stats,
        spec.coupling_form(),
        likelihood=likelihood or inf.likelihoods[0],
        method=method,
        cutoff=spec.theory.cutoff,
        seed=inf.seed,
        progress=progress,
        **options,
    )
