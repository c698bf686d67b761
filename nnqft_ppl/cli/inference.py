"""``nnqft fit --method nuts|svi`` and ``nnqft infer`` (registered in :mod:`nnqft_ppl.cli`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .eft import FitRequest, build_form, register_fit_method

__all__ = ["register", "infer_command"]


def _bayesian_fit(method: str):
    """A ``nnqft fit`` method: correlator-likelihood posterior of the request's data."""

    def run(request: FitRequest) -> dict:
        import numpy as np

        from nnqft_ppl.diagnostics import diagnose
        from nnqft_ppl.inference import infer_correlators
        from nnqft_ppl.likelihoods import CorrelatorData, _gp_scale, _prior_scale

        if request.covariance is None:
            raise ValueError(
                f"--method {method} needs the data's covariance: give --n-networks (the "
                "ensemble size whose exact sampling covariance the posterior uses)"
            )
        design = request.form.design_matrix(request.arch, request.X, request.cutoff)
        scale = _prior_scale(design, _gp_scale(request.arch, request.X, request.form.order))
        k = np.asarray(getattr(request.k4, "values", request.k4))
        data = CorrelatorData.from_arrays(
            request.form.names,
            k,
            design,
            np.asarray(getattr(request.covariance, "values", request.covariance)),
            request.form.order,
            scale,
            covariance_method="exact",
            n_networks=request.n_networks,
        )
        idata = infer_correlators(data, method, request.seed)
        diagnosis = diagnose(idata)
        typer.echo(str(diagnosis))
        return {
            "method": method,
            "names": list(data.names),
            "mean": [float(idata.posterior[n].mean()) for n in data.names],
            "sd": [float(idata.posterior[n].std()) for n in data.names],
            "r_hat": [float(x) for x in diagnosis.table["r_hat"].astype(float)],
            "divergences": diagnosis.divergences,
            **{k: v for k, v in diagnosis.fit.items()},
            "verdict": diagnosis.verdict,
        }

    return run


def infer_command(
    stats: Path = typer.Option(
        ..., "--stats", help="Correlator store (.zarr or .nc) written by `nnqft correlate`."
    ),
    likelihood: str = typer.Option(
        "correlator", "--likelihood", help="correlator (measured kappa_4) or field (SPEC 4.2)."
    ),
    method: str = typer.Option("nuts", "--method", help="nuts (4 chains) or svi."),
    form: str = typer.Option(
        "constant",
        "--form",
        help="Coupling form: constant, radial, polynomial, nonlocal, constant+nonlocal, allowed.",
    ),
    cutoff: str = typer.Option(
        "inf", "--cutoff", help="Box cutoff L > 0, or 'inf' for all of input space (Gauss-net)."
    ),
    seed: int = typer.Option(0, "--seed", help="PRNG seed of the sampler."),
    num_samples: int = typer.Option(1000, "--num-samples", help="Draws per chain."),
    out: Path = typer.Option(
        Path("inference"), "--out", help="Folder for posterior.zarr and diagnosis.txt."
    ),
):
    """Infer the couplings of a coupling form from stored correlator statistics."""
    from nnqft_ppl.correlators import CorrelatorStats
    from nnqft_ppl.diagnostics import diagnose
    from nnqft_ppl.inference import LIKELIHOODS, METHODS, infer

    from .eft import parse_cutoff

    if likelihood not in LIKELIHOODS:
        raise typer.BadParameter(
            f"unknown likelihood {likelihood!r}; choose from {', '.join(LIKELIHOODS)}",
            param_hint="--likelihood",
        )
    if method not in METHODS:
        raise typer.BadParameter(
            f"unknown method {method!r}; choose from {', '.join(METHODS)}", param_hint="--method"
        )
    try:
        data = CorrelatorStats.load(stats)
    except FileNotFoundError as err:
        raise typer.BadParameter(str(err), param_hint="--stats") from None
    coupling_form = build_form(form, data.arch, data.arch.d_in)
    try:
        idata = infer(
            data,
            form=coupling_form,
            likelihood=likelihood,
            method=method,
            cutoff=parse_cutoff(cutoff),
            seed=seed,
            num_samples=num_samples,
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    diagnosis = diagnose(idata)
    out.mkdir(parents=True, exist_ok=True)
    idata.to_zarr(out / "posterior.zarr", mode="w")
    (out / "diagnosis.txt").write_text(str(diagnosis) + "\n")
    (out / "summary.json").write_text(
        json.dumps({"fit": diagnosis.fit, "verdict": diagnosis.verdict}, indent=2, default=float)
    )
    typer.echo(str(diagnosis))
    typer.echo(f"posterior written to {out / 'posterior.zarr'}")


def register(app: typer.Typer) -> None:
    """Add ``nnqft fit --method nuts|svi`` and ``nnqft infer``."""
    register_fit_method("nuts", _bayesian_fit("nuts"))
    register_fit_method("svi", _bayesian_fit("svi"))
    app.command("infer")(infer_command)
