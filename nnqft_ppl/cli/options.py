"""Options shared by the commands: architecture, inputs, widths (each error names the option)."""

from __future__ import annotations

import numpy as np
import typer

ARCHITECTURES = ("gauss", "erf", "relu", "mlp")

ARCH = typer.Option("relu", "--arch", help="Architecture: gauss (Gauss-net), erf, relu or mlp.")
DEPTH = typer.Option(1, "--depth", help="Hidden layers (--arch mlp only).")
ACTIVATION = typer.Option("tanh", "--activation", help="erf, relu or tanh (--arch mlp only).")
D_IN = typer.Option(1, "--d-in", help="Input dimension d.")
SW0 = typer.Option(1.0, "--sw0", help="First-layer weight scale (W0 ~ N(0, sw0^2/d)).")
SB0 = typer.Option(None, "--sb0", help="First-layer bias scale (default: 0 ReLU, 1 otherwise).")
SW1 = typer.Option(1.0, "--sw1", help="Later-layer weight scale (W ~ N(0, sw1^2/N)).")
SB1 = typer.Option(None, "--sb1", help="Later-layer bias scale (default: 0 ReLU, 1 otherwise).")
INPUTS = typer.Option(
    None,
    "--inputs",
    help="Inputs: '0.2,0.4,...' for d=1, '0.1,0.2;0.3,0.4' (points split by ';') otherwise. "
    "Default: the paper's inputs (d=1; positive ones for ReLU).",
)


def build_architecture(
    arch: str,
    d_in: int,
    sw0: float,
    sb0: float | None,
    sw1: float,
    sb1: float | None,
    depth: int = 1,
    activation: str = "tanh",
):
    """The architecture named on the command line (typer.BadParameter on a bad value)."""
    import nnqft_ppl as nq

    classes = {"gauss": nq.GaussNet, "erf": nq.ErfNet, "relu": nq.ReLUNet}
    if arch not in (*classes, "mlp"):
        raise typer.BadParameter(
            f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}",
            param_hint="--arch",
        )
    kwargs = {"d_in": d_in, "sw0": sw0, "sw1": sw1}
    kwargs |= {k: v for k, v in (("sb0", sb0), ("sb1", sb1)) if v is not None}
    try:
        if arch == "mlp":
            return nq.MLP(depth=depth, activation=activation, **kwargs)
        return classes[arch](**kwargs)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--arch options") from None


def parse_inputs(text: str | None, arch, d_in: int) -> np.ndarray:
    """``"0.2,0.4"`` (d_in = 1) or ``"0.1,0.2;0.3,0.4"`` (points separated by ``;``)."""
    from nnqft_ppl.checks import check_inputs
    from nnqft_ppl.presets import paper_inputs

    if text is None:
        if d_in != 1:
            raise typer.BadParameter(f"give --inputs for d_in = {d_in}", param_hint="--inputs")
        return paper_inputs(arch)
    try:
        points = [[float(v) for v in p.split(",")] for p in text.split(";") if p.strip()]
        X = np.array(points).reshape(-1, d_in) if d_in == 1 else np.array(points)
        return check_inputs(X, d_in)
    except ValueError as err:
        raise typer.BadParameter(
            f"cannot read inputs {text!r} ({err}): use '0.2,0.4' for d_in = 1 or "
            f"'0.1,0.2;0.3,0.4' for points in d_in > 1",
            param_hint="--inputs",
        ) from None


def parse_widths(values: list[int]) -> list[int]:
    """Widths: each a positive integer."""
    if not values:
        raise typer.BadParameter("give at least one --width", param_hint="--width")
    for w in values:
        if w <= 0:
            raise typer.BadParameter(
                f"widths must be positive integers, got {w}", param_hint="--width"
            )
    return list(values)
