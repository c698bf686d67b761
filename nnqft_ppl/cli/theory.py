"""``nnqft rg`` and ``nnqft fit``: the running coupling and coupling fits.

Both take the connected 4-pt function either from a measured correlator store (``--stats``,
written by ``nnqft correlate``; its architecture and inputs are used) or from the exact
finite-width oracle of the architecture options (``--width``); for the oracle, ``--n-networks``
adds the exact sampling covariance of an ensemble of that size. ``nnqft fit --method lsq|nuts|
svi`` fits a coupling form; ``--method nuts|svi`` runs the correlator-likelihood posterior.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer

from .options import (
    NUM_CHAINS,
    NUM_SAMPLES,
    NUM_WARMUP,
    SEED,
    command,
    fail,
    parse_cutoff,
    parse_cutoffs,
    sampler_settings,
    with_architecture,
)

__all__ = ["register", "FORM_HELP"]

FIT_METHODS = ("lsq", "nuts", "svi")
FORM_HELP = (
    "Coupling form: a registered form (constant, radial, polynomial, nonlocal, sextic, ...), "
    "a sum such as constant+nonlocal, or 'allowed' (the most general form the kernel's "
    "symmetries allow)."
)


@dataclass(frozen=True)
class FitData:
    """The connected correlator to fit: ``k (M,)`` of ``order``, its covariance or None, the
    architecture and inputs it belongs to, and the networks behind it (None: exact oracle)."""

    arch: object
    X: np.ndarray
    k: np.ndarray
    covariance: np.ndarray | None
    order: int
    n_networks: int | None
    source: str


def build_form(name: str, arch):
    """The coupling form a command line names (``--form``)."""
    from ..theory.couplings import coupling_form
    from ..theory.symmetries import allowed_coupling_forms

    if name == "allowed":
        return allowed_coupling_forms(arch)[-1]
    try:
        return coupling_form(name, arch.d_in)
    except ValueError as err:
        fail(str(err), "--form")


def fit_data(
    net, X, stats: Path | None, width: int | None, n_networks: int | None, order: int = 4
) -> FitData:
    """The connected ``order``-pt function from a store (``--stats``) or the exact oracle."""
    if stats is not None:
        from ..ensembles.correlators import CorrelatorStats

        try:
            s = CorrelatorStats.load(stats)
        except FileNotFoundError as err:
            fail(str(err), "--stats")
        except (ValueError, KeyError, OSError):
            fail(f"{stats} is not a correlator store (write one with `nnqft correlate`)", "--stats")
        if s.max_order < order:
            fail(
                f"{stats} has moments up to order {s.max_order}; order {order} is needed", "--stats"
            )
        method = "exact" if order == 4 and s.arch.depth == 1 else "jackknife"
        return FitData(
            s.arch,
            s.X,
            s.cumulant(order).values,
            s.covariance(order, method=method).values,
            order,
            s.n_networks,
            f"{stats} ({s.n_networks} networks, {method} covariance)",
        )
    from ..oracle.exact import exact_covariance, exact_cumulant

    if width is None or width < 1:
        fail(f"give a width >= 1 for the exact oracle (or --stats), got {width}", "--width")
    if n_networks is not None and n_networks < 2:
        fail(f"must be >= 2, got {n_networks}", "--n-networks")
    if net.depth != 1:
        fail(
            f"the exact oracle has one hidden layer; {net.name} has {net.depth}: use --stats",
            "--depth",
        )
    k = exact_cumulant(net, X, width, order).values
    cov = None
    if n_networks is not None:
        if order != 4:
            fail("the exact covariance is available for order 4 only", "--n-networks")
        cov = exact_covariance(net, X, width, 4).values / n_networks
    return FitData(net, X, k, cov, order, n_networks, f"exact oracle at N={width}")


def _check_cutoff(arch, text: str) -> float | None:
    from ..theory.vertex import integrals_converge

    L = parse_cutoff(text)
    if L is None and not integrals_converge(arch):
        fail(
            f"the vertex integrals of {arch.name} diverge over all of input space; give a "
            "finite cutoff",
            "--cutoff",
        )
    return L


_STATS = typer.Option(
    None,
    "--stats",
    help="Correlator store from `nnqft correlate` (its "
    "architecture and inputs are used); default: the exact oracle.",
)
_WIDTH = typer.Option(20, "--width", help="Hidden width N of the exact finite-width oracle.")
_NNET = typer.Option(
    None,
    "--n-networks",
    help="Oracle: ensemble size whose exact sampling "
    "covariance weights the fit (default: none, ordinary least squares).",
)


@command
@with_architecture
def rg(
    net,
    X,
    stats: Path = _STATS,
    width: int = _WIDTH,
    n_networks: int = _NNET,
    cutoffs: str = typer.Option(
        "1:10:21", "--cutoffs", help="Increasing cutoffs L: 'LO:HI:NUM' log-spaced, or 'L1,L2,...'."
    ),
    out: Path = typer.Option(None, "--out", help="Write the RG-flow figure here (png/pdf)."),
    json_out: Path = typer.Option(None, "--json", help="Write the flow as JSON here."),
):
    """Run the measured quartic coupling with the box cutoff L (Wilsonian RG)."""
    from ..core.storage import to_json, write_text
    from ..theory.rg import rg_flow

    Ls = parse_cutoffs(cutoffs)
    data = fit_data(net, X, stats, width, n_networks)
    flow = rg_flow(data.arch, data.X, data.k, Ls, covariance=data.covariance)
    typer.echo(flow.summary())
    if out is not None:
        from ..zoo.plotting import plot_rg_flow

        plot_rg_flow({f"{data.arch.name} d={data.arch.d_in}": flow}, out)
        typer.echo(f"figure written to {out}")
    if json_out is not None:
        write_text(
            json_out,
            to_json(
                {
                    "cutoff": flow.coupling.cutoff.values,
                    "lambda": flow.coupling.values,
                    "stderr": flow.coupling.stderr.values,
                    "slope": flow.slope,
                    "slope_stderr": flow.slope_stderr,
                    "r2": flow.r2,
                    "analytic_exponent": flow.analytic_exponent,
                    "limit": flow.limit,
                    "stops": flow.stops,
                    "source": data.source,
                }
            ),
        )


@command
@with_architecture
def fit(
    net,
    X,
    method: str = typer.Option(
        "lsq",
        "--method",
        help="lsq (least squares), nuts or svi (correlator-likelihood posterior).",
    ),
    form: str = typer.Option("constant", "--form", help=FORM_HELP),
    stats: Path = _STATS,
    width: int = _WIDTH,
    n_networks: int = _NNET,
    cutoff: str = typer.Option(
        "inf", "--cutoff", help="Box cutoff L > 0, or 'inf' for all of input space (Gauss-net)."
    ),
    seed: int = SEED,
    num_chains: int = NUM_CHAINS,
    num_warmup: int = NUM_WARMUP,
    num_samples: int = NUM_SAMPLES,
    out: Path = typer.Option(None, "--out", help="Write the result as JSON here."),
):
    """Fit a coupling form to the connected 4-pt (or, for sextic forms, 6-pt) function."""
    from ..core.storage import to_json, write_text

    if method not in FIT_METHODS:
        fail(f"unknown method {method!r}; choose from {', '.join(FIT_METHODS)}", "--method")
    settings = None
    if method != "lsq":
        settings = sampler_settings(method, num_chains, num_warmup, num_samples)
    coupling_form = build_form(form, net)
    data = fit_data(net, X, stats, width, n_networks, coupling_form.order)
    if data.arch != net:  # a store's own architecture (its d_in) decides the form
        coupling_form = build_form(form, data.arch)
    L = _check_cutoff(data.arch, cutoff)
    if settings is None:
        result = _least_squares(data, coupling_form, L)
    else:
        if data.covariance is None:
            fail(f"--method {method} needs the data's covariance: give --n-networks (the "
                 "ensemble size whose exact sampling covariance the posterior uses) or --stats",
                 "--n-networks")  # fmt: skip
        result = _posterior(data, coupling_form, L, settings, seed)
    if out is not None:
        write_text(out, to_json(result))
        typer.echo(f"result written to {out}")


def _least_squares(data: FitData, form, cutoff) -> dict:
    from ..theory.couplings import fit_coupling

    fit = fit_coupling(form, data.arch, data.X, data.k, data.covariance, cutoff)
    typer.echo(fit.summary())
    return {
        "method": "lsq",
        "source": data.source,
        "names": fit.names,
        "theta": fit.theta,
        "stderr": fit.stderr,
        "chi2": fit.chi2,
        "dof": fit.dof,
        "p_value": fit.p_value,
        "rank": fit.rank,
    }


def _posterior(data: FitData, form, cutoff, settings, seed: int) -> dict:
    from dataclasses import asdict

    from ..inference.diagnostics import diagnose
    from ..inference.likelihoods import CorrelatorData, default_prior_scale
    from ..inference.runners import infer_correlators

    design = form.design_matrix(data.arch, data.X, cutoff)
    likelihood = CorrelatorData.from_arrays(
        form.names,
        data.k,
        design,
        data.covariance,
        form.order,
        default_prior_scale(data.arch, data.X, design, form.order),
        covariance_method="exact" if data.n_networks else "given",
        n_networks=data.n_networks,
    )
    idata = infer_correlators(likelihood, settings, seed)
    diagnosis = diagnose(idata)
    typer.echo(str(diagnosis))
    names = list(likelihood.names)
    return {
        "method": idata.attrs["method"],
        **{k: v for k, v in asdict(settings).items() if k.startswith("num_")},
        "source": data.source,
        "names": names,
        "mean": [float(idata.posterior[n].mean()) for n in names],
        "sd": [float(idata.posterior[n].std()) for n in names],
        "r_hat": diagnosis.table["r_hat"].astype(float).tolist(),
        "divergences": diagnosis.divergences,
        **diagnosis.fit._asdict(),
        "verdict": diagnosis.verdict,
    }


def register(app: typer.Typer) -> None:
    """Add ``rg`` and ``fit`` to ``app``."""
    app.command("rg")(rg)
    app.command("fit")(fit)
