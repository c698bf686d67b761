"""``nnqft rg`` and ``nnqft fit`` (registered in :mod:`nnqft_ppl.cli`).

Both commands take an architecture and inputs, and the connected 4-pt function from the exact
finite-width oracle (``--width``); ``--n-networks`` adds the exact sampling covariance of an
ensemble of that size, which the fits use as the correlator covariance.

``nnqft fit --method M`` dispatches on :data:`FIT_METHODS`: ``lsq`` (least squares, here);
other modules add methods with :func:`register_fit_method` (e.g. NUTS, SVI).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer

from .options import (
    ARCH,
    D_IN,
    INPUTS,
    SB0,
    SB1,
    SW0,
    SW1,
    build_architecture,
    parse_inputs,
)

__all__ = ["register", "register_fit_method", "FIT_METHODS", "FitRequest"]

FORMS = ("constant", "radial", "polynomial", "nonlocal", "constant+nonlocal", "allowed")


@dataclass(frozen=True)
class FitRequest:
    """Everything a fit method needs: architecture, inputs, data, form, cutoff, output."""

    arch: object
    X: np.ndarray
    k4: object  # xarray over tuple
    covariance: object | None  # (M, M) or None
    form: object
    cutoff: float | None
    n_networks: int | None
    out: Path | None
    seed: int


FIT_METHODS: dict[str, Callable[[FitRequest], dict]] = {}


def register_fit_method(name: str, method: Callable[[FitRequest], dict]) -> None:
    """Make ``nnqft fit --method name`` call ``method(request) -> JSON-able result dict``."""
    FIT_METHODS[name] = method


# --------------------------------------------------------------------------- option parsing
def parse_cutoffs(text: str) -> np.ndarray:
    """``"1:10:21"`` (21 log-spaced cutoffs from 1 to 10) or ``"1,2,5"``."""
    try:
        if ":" in text:
            lo, hi, num = text.split(":")
            values = np.geomspace(float(lo), float(hi), int(num))
        else:
            values = np.array([float(v) for v in text.split(",")])
    except ValueError:
        raise typer.BadParameter(
            f"cannot read cutoffs {text!r}: use 'LO:HI:NUM' or 'L1,L2,...'", param_hint="--cutoffs"
        ) from None
    if len(values) < 2 or np.any(values <= 0) or not np.all(np.isfinite(values)):
        raise typer.BadParameter(
            f"need at least 2 finite cutoffs > 0, got {text!r}", param_hint="--cutoffs"
        )
    return values


def parse_cutoff(text: str) -> float | None:
    """``"inf"`` (all of input space) or a number > 0."""
    if text.strip().lower() in ("inf", "none", "all"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(
            f"cutoff must be a number > 0 or 'inf', got {text!r}", param_hint="--cutoff"
        ) from None
    if not np.isfinite(value) or value <= 0:
        raise typer.BadParameter(
            f"cutoff must be > 0 (or 'inf'), got {text!r}", param_hint="--cutoff"
        )
    return value


def build_form(name: str, arch, d_in: int):
    from nnqft_ppl import couplings as c
    from nnqft_ppl.symmetries import allowed_coupling_forms

    forms = {
        "constant": c.Constant(),
        "radial": c.RadialPolynomial((0, 2)),
        "polynomial": c.Polynomial(degree=2, d_in=d_in),
        "nonlocal": c.NonLocal(),
        "constant+nonlocal": c.Constant() + c.NonLocal(),
    }
    if name == "allowed":
        return allowed_coupling_forms(arch)[-1]
    if name not in forms:
        raise typer.BadParameter(
            f"unknown coupling form {name!r}; choose from {', '.join(FORMS)}", param_hint="--form"
        )
    return forms[name]


def _data(arch, X, width: int, n_networks: int | None):
    from nnqft_ppl.exact import exact_covariance, exact_cumulant

    if width < 1:
        raise typer.BadParameter(f"width must be >= 1, got {width}", param_hint="--width")
    if n_networks is not None and n_networks < 2:
        raise typer.BadParameter(
            f"n-networks must be >= 2, got {n_networks}", param_hint="--n-networks"
        )
    k4 = exact_cumulant(arch, X, width, 4)
    cov = None if n_networks is None else exact_covariance(arch, X, width, 4) / n_networks
    return k4, cov


def _lsq(request: FitRequest) -> dict:
    from nnqft_ppl.couplings import fit_coupling

    fit = fit_coupling(
        request.form, request.arch, request.X, request.k4, request.covariance, request.cutoff
    )
    typer.echo(fit.summary())
    return {
        "method": "lsq",
        "names": fit.names,
        "theta": fit.theta.tolist(),
        "stderr": fit.stderr.tolist(),
        "chi2": fit.chi2,
        "dof": fit.dof,
        "p_value": fit.p_value,
        "rank": fit.rank,
    }


register_fit_method("lsq", _lsq)


# --------------------------------------------------------------------------- commands
_ARCH, _D_IN, _SW0, _SB0, _SW1, _SB1, _INPUTS = ARCH, D_IN, SW0, SB0, SW1, SB1, INPUTS
_WIDTH = typer.Option(20, "--width", help="Hidden width N of the exact finite-width oracle.")
_NNET = typer.Option(
    None,
    "--n-networks",
    help="Ensemble size whose exact sampling covariance weights the fit (default: none, "
    "ordinary least squares).",
)

_FIGURE_OUT = typer.Option(None, "--out", help="Write the RG-flow figure here (png/pdf).")
_JSON_OUT = typer.Option(None, "--json", help="Write the flow as JSON here.")
_FIT_OUT = typer.Option(None, "--out", help="Write the fit result as JSON here.")


def rg(
    arch: str = _ARCH,
    d_in: int = _D_IN,
    sw0: float = _SW0,
    sb0: float = _SB0,
    sw1: float = _SW1,
    sb1: float = _SB1,
    inputs: str = _INPUTS,
    width: int = _WIDTH,
    n_networks: int = _NNET,
    cutoffs: str = typer.Option(
        "1:10:21", "--cutoffs", help="Cutoffs L: 'LO:HI:NUM' log-spaced, or 'L1,L2,...'."
    ),
    out: Path = _FIGURE_OUT,
    json_out: Path = _JSON_OUT,
):
    """Run the measured quartic coupling with the box cutoff L (Wilsonian RG)."""
    from nnqft_ppl.rg import rg_flow

    net = build_architecture(arch, d_in, sw0, sb0, sw1, sb1)
    X = parse_inputs(inputs, net, d_in)
    Ls = parse_cutoffs(cutoffs)
    k4, cov = _data(net, X, width, n_networks)
    flow = rg_flow(net, X, k4, Ls, covariance=cov)
    typer.echo(flow.summary())
    if out is not None:
        from nnqft_ppl.plotting import plot_rg_flow

        plot_rg_flow({f"{net.name} d={d_in} N={width}": flow}, out)
        typer.echo(f"figure written to {out}")
    if json_out is not None:
        json_out.write_text(
            json.dumps(
                {
                    "cutoff": flow.coupling.cutoff.values.tolist(),
                    "lambda": flow.coupling.values.tolist(),
                    "stderr": flow.coupling.stderr.values.tolist(),
                    "slope": flow.slope,
                    "slope_stderr": flow.slope_stderr,
                    "r2": flow.r2,
                    "analytic_exponent": flow.analytic_exponent,
                    "limit": flow.limit,
                    "stops": flow.stops,
                },
                indent=2,
            )
        )


def fit(
    method: str = typer.Option(
        "lsq",
        "--method",
        help="Fit method: lsq (generalised least squares); inference modules add more.",
    ),
    form: str = typer.Option(
        "constant",
        "--form",
        help=f"Coupling form: {', '.join(FORMS)} ('allowed': the most general form the "
        "kernel's symmetries allow).",
    ),
    arch: str = _ARCH,
    d_in: int = _D_IN,
    sw0: float = _SW0,
    sb0: float = _SB0,
    sw1: float = _SW1,
    sb1: float = _SB1,
    inputs: str = _INPUTS,
    width: int = _WIDTH,
    n_networks: int = _NNET,
    cutoff: str = typer.Option(
        "inf", "--cutoff", help="Box cutoff L > 0, or 'inf' for all of input space (Gauss-net)."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed for sampling-based methods."),
    out: Path = _FIT_OUT,
):
    """Fit a coupling form to the connected 4-pt function."""
    if method not in FIT_METHODS:
        raise typer.BadParameter(
            f"unknown method {method!r}; available: {', '.join(sorted(FIT_METHODS))}",
            param_hint="--method",
        )
    net = build_architecture(arch, d_in, sw0, sb0, sw1, sb1)
    X = parse_inputs(inputs, net, d_in)
    L = parse_cutoff(cutoff)
    if L is None and arch != "gauss":
        raise typer.BadParameter(
            f"the vertex integrals of {net.name} diverge over all of input space; give a finite "
            f"--cutoff",
            param_hint="--cutoff",
        )
    coupling_form = build_form(form, net, d_in)
    k4, cov = _data(net, X, width, n_networks)
    request = FitRequest(net, X, k4, cov, coupling_form, L, n_networks, out, seed)
    try:
        result = FIT_METHODS[method](request)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    if out is not None:
        out.write_text(json.dumps(result, indent=2, default=float))
        typer.echo(f"result written to {out}")


def register(app: typer.Typer) -> None:
    """Add ``rg`` and ``fit`` to ``app``."""
    app.command("rg")(rg)
    app.command("fit")(fit)
