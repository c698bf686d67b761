"""What the commands share: the architecture / inputs options, parsers, and one-line errors.

Every command is wrapped by :func:`command`: a library error (a ValueError naming what was
wrong), a bad option value or an interruption is reported on one line, ``error: ...``, with
exit status 2 (130 when interrupted), never as a traceback.
"""

from __future__ import annotations

import functools
import inspect
import typing
from pathlib import Path

import numpy as np
import typer

__all__ = [
    "command",
    "sampler_settings",
    "with_architecture",
    "fail",
    "parse_inputs",
    "parse_widths",
    "parse_cutoffs",
    "parse_cutoff",
    "check_store_path",
]


def fail(message: str, option: str | None = None) -> typing.NoReturn:
    """Stop the command with ``error: [option: ]message`` on one line (exit status 2)."""
    raise typer.BadParameter(message, param_hint=option)


def command(fn):
    """Decorator for a CLI command: one-line errors, no tracebacks (module docstring)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..zoo.specs import SpecError

        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except typer.BadParameter as err:
            hint = f"{err.param_hint}: " if err.param_hint else ""
            _error(hint + (err.message or err.format_message()).splitlines()[0])
        except (SpecError, ValueError, FileNotFoundError, PermissionError, OSError) as err:
            _error(str(err).splitlines()[0] if str(err) else type(err).__name__)
        except KeyboardInterrupt:
            typer.echo(
                "interrupted: finished work is kept; rerun the same command to resume", err=True
            )
            raise typer.Exit(130) from None

    return wrapper


def _error(message: str) -> typing.NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


# --------------------------------------------------------------------------- architecture
# name, type, default, help: the options every ensemble / theory command takes
_ARCH_OPTIONS = (
    ("arch", str, "relu", "Architecture: gauss (Gauss-net), erf, relu or mlp (any registered)."),
    ("depth", int, 1, "Hidden layers (--arch mlp)."),
    ("activation", str | None, None, "Activation of --arch mlp (default tanh): erf, relu, tanh, "
     "linear or any registered one."),
    ("d_in", int, 1, "Input dimension d."),
    ("sw0", float, 1.0, "First-layer weight scale (W0 ~ N(0, sw0^2/d))."),
    ("sb0", float | None, None, "First-layer bias scale (default: 0 for relu, 1 otherwise)."),
    ("sw1", float, 1.0, "Later-layer weight scale (W ~ N(0, sw1^2/N))."),
    ("sb1", float | None, None, "Later-layer bias scale (default: 0 for relu, 1 otherwise)."),
    ("inputs", str | None, None, "Inputs: '0.2,0.4,...' for d=1, '0.1,0.2;0.3,0.4' (points split "
     "by ';') otherwise. Default: the classic 6 inputs of the activation."),
)  # fmt: skip
_ARCH_PARAMS = [
    (name, hint, typer.Option(default, "--" + name.replace("_", "-"), help=text))
    for name, hint, default, text in _ARCH_OPTIONS
]


def with_architecture(fn):
    """Decorator: replace the command's ``net`` and ``X`` parameters by the architecture and
    inputs options (one definition for every command), validated before the command runs."""
    hints = typing.get_type_hints(fn)
    own = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in inspect.signature(fn).parameters.values()
        if p.name not in ("net", "X")
    ]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=hint)
        for name, hint, option in _ARCH_PARAMS
    ]

    @functools.wraps(fn)
    def wrapper(**kwargs):
        from ..networks.architectures import build_architecture

        a = {name: kwargs.pop(name) for name, _, _ in _ARCH_PARAMS}
        try:
            net = build_architecture(
                a["arch"],
                depth=a["depth"],
                activation=a["activation"],
                d_in=a["d_in"],
                sw0=a["sw0"],
                sb0=a["sb0"],
                sw1=a["sw1"],
                sb1=a["sb1"],
            )
        except ValueError as err:
            fail(str(err), "--arch")
        return fn(net=net, X=parse_inputs(a["inputs"], net), **kwargs)

    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in shared + own]
    wrapper.__signature__ = inspect.Signature(params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


def parse_inputs(text: str | None, arch) -> np.ndarray:
    """``"0.2,0.4"`` (d_in = 1) or ``"0.1,0.2;0.3,0.4"`` (points separated by ``;``)."""
    from ..core.validation import check_inputs
    from ..networks.presets import paper_inputs

    if text is None:
        return paper_inputs(arch)
    try:
        points = [[float(v) for v in p.split(",")] for p in text.split(";") if p.strip()]
        X = np.array(points).reshape(-1, 1) if arch.d_in == 1 else np.array(points)
        return check_inputs(X, arch.d_in)
    except ValueError as err:
        fail(
            f"cannot read inputs {text!r} ({err}): use '0.2,0.4' for d_in = 1 or "
            "'0.1,0.2;0.3,0.4' for points in d_in > 1",
            "--inputs",
        )


def parse_widths(values: list[int]) -> list[int]:
    """Widths: each a positive integer."""
    if not values:
        fail("give at least one width", "--width")
    bad = [w for w in values if w <= 0]
    if bad:
        fail(f"widths must be positive integers, got {bad[0]}", "--width")
    return list(values)


def parse_cutoffs(text: str) -> np.ndarray:
    """``"1:10:21"`` (21 log-spaced cutoffs from 1 to 10) or ``"1,2,5"``: increasing, > 0."""
    try:
        if ":" in text:
            lo, hi, num = text.split(":")
            values = np.geomspace(float(lo), float(hi), int(num))
        else:
            values = np.array([float(v) for v in text.split(",")])
    except ValueError:
        fail(f"cannot read cutoffs {text!r}: use 'LO:HI:NUM' or 'L1,L2,...'", "--cutoffs")
    if len(values) < 2 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        fail(f"need at least 2 finite cutoffs > 0, got {text!r}", "--cutoffs")
    if np.any(np.diff(values) <= 0):
        fail(f"cutoffs must increase (LO < HI), got {text!r}", "--cutoffs")
    return values


def parse_cutoff(text: str) -> float | None:
    """``"inf"`` (all of input space) or a number > 0."""
    if text.strip().lower() in ("inf", "none", "all"):
        return None
    try:
        value = float(text)
    except ValueError:
        fail(f"must be a number > 0 or 'inf', got {text!r}", "--cutoff")
    if not np.isfinite(value) or value <= 0:
        fail(f"must be > 0 (or 'inf'), got {text!r}", "--cutoff")
    return value


def check_store_path(out: Path, option: str = "--out") -> Path:
    """An output store: ``.zarr`` or ``.nc`` in a writable folder."""
    from ..core.validation import check_output_path

    if out.suffix not in (".zarr", ".nc"):
        fail(f"must end in .zarr or .nc, got {str(out)!r}", option)
    try:
        return check_output_path(out)
    except ValueError as err:
        fail(str(err), option)


NUM_CHAINS = typer.Option(4, "--num-chains", help="NUTS chains.")
NUM_WARMUP = typer.Option(500, "--num-warmup", help="NUTS warm-up steps per chain.")
NUM_SAMPLES = typer.Option(1000, "--num-samples", help="Draws per chain (or from SVI).")
SEED = typer.Option(0, "--seed", help="PRNG seed of the sampler.")


def sampler_settings(method: str, num_chains: int, num_warmup: int, num_samples: int):
    """The NUTS / SVI settings of ``--method``, ``--num-chains``, ``--num-warmup``,
    ``--num-samples`` (errors name the option)."""
    from ..inference.runners import METHODS, NUTSSettings, SVISettings

    if method not in METHODS:
        fail(f"unknown method {method!r}; choose from {', '.join(METHODS)}", "--method")
    try:
        if method == "svi":
            return SVISettings(num_samples=num_samples)
        return NUTSSettings(num_chains=num_chains, num_warmup=num_warmup, num_samples=num_samples)
    except ValueError as err:
        fail(str(err), "--" + str(err).split()[0].replace("_", "-"))
