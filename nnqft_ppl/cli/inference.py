"""``nnqft infer``: the posterior of a coupling form from a stored correlator ensemble."""

from __future__ import annotations

from pathlib import Path

import typer

from . import options as opt
from .theory import FORM_HELP, build_form

__all__ = ["register"]


@opt.command
def infer(
    stats: Path = typer.Option(
        ..., "--stats", help="Correlator store (.zarr or .nc) written by `nnqft correlate`."
    ),
    likelihood: str = typer.Option(
        "correlator",
        "--likelihood",
        help="correlator (measured kappa_4 with its covariance) or "
        "field (first-order field-level likelihood; needs the moment sums).",
    ),
    method: str = typer.Option("nuts", "--method", help="nuts or svi."),
    form: str = typer.Option("constant", "--form", help=FORM_HELP),
    cutoff: str = typer.Option(
        "inf", "--cutoff", help="Box cutoff L > 0, or 'inf' for all of input space (Gauss-net)."
    ),
    seed: int = opt.SEED,
    num_chains: int = opt.NUM_CHAINS,
    num_warmup: int = opt.NUM_WARMUP,
    num_samples: int = opt.NUM_SAMPLES,
    out: Path = typer.Option(
        Path("inference"), "--out", help="Folder for posterior.zarr, diagnosis.txt, summary.json."
    ),
):
    """Infer the couplings of a coupling form from stored correlator statistics."""
    from ..core.storage import to_json, write_store, write_text
    from ..core.validation import check_output_path
    from ..ensembles.correlators import CorrelatorStats
    from ..inference.diagnostics import diagnose
    from ..inference.runners import LIKELIHOODS
    from ..inference.runners import infer as run_infer

    if likelihood not in LIKELIHOODS:
        opt.fail(
            f"unknown likelihood {likelihood!r}; choose from {', '.join(LIKELIHOODS)}",
            "--likelihood",
        )
    settings = opt.sampler_settings(method, num_chains, num_warmup, num_samples)
    try:
        data = CorrelatorStats.load(stats)
    except FileNotFoundError as err:
        opt.fail(str(err), "--stats")
    except (ValueError, KeyError, OSError):
        opt.fail(
            f"{stats} is not a correlator store (write one with `nnqft correlate`; a `nnqft "
            "sample` store holds outputs, not statistics)",
            "--stats",
        )
    coupling_form = build_form(form, data.arch)
    L = opt.parse_cutoff(cutoff)
    check_output_path(out / "posterior.zarr")
    idata = run_infer(
        data, coupling_form, likelihood=likelihood, method=settings, cutoff=L, seed=seed
    )
    diagnosis = diagnose(idata)
    out.mkdir(parents=True, exist_ok=True)
    write_store(idata, out / "posterior.zarr")  # atomic: a kill never leaves half a posterior
    write_text(out / "diagnosis.txt", str(diagnosis) + "\n")
    write_text(
        out / "summary.json",
        to_json({"fit": diagnosis.fit._asdict(), "verdict": diagnosis.verdict}),
    )
    typer.echo(str(diagnosis))
    typer.echo(f"posterior written to {out / 'posterior.zarr'}")


def register(app: typer.Typer) -> None:
    """Add ``nnqft infer``."""
    app.command("infer")(infer)
