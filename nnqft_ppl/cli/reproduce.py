"""``nnqft reproduce``, ``nnqft run`` and ``nnqft report`` (registered in :mod:`nnqft_ppl.cli`).

Errors (bad spec, unwritable folder) are printed as one line and exit with status 2; Ctrl-C or
SIGTERM stops the run after keeping every finished spec (rerun to resume).
"""

from __future__ import annotations

import signal
from pathlib import Path

import typer

__all__ = ["register"]

SCALES = ("default", "paper")
OUT = typer.Option(Path("nnqft-report"), "--out", help="Report folder (created if missing).")
SCALE = typer.Option(
    "default", "--scale", help="Ensemble sizes: default (minutes on 2 cores) or paper (1e6/width)."
)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _check_scale(scale: str) -> str:
    if scale not in SCALES and scale != "test":
        _fail(f"--scale {scale!r} is not allowed; choose from {', '.join(SCALES)}")
    return scale


def _sigterm_as_interrupt():
    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _guarded(action, out: Path):
    """Run ``action()``; one-line errors, and a resume hint on interruption."""
    from nnqft_ppl.specs import SpecError

    _sigterm_as_interrupt()
    try:
        return action()
    except (SpecError, ValueError, FileNotFoundError, PermissionError) as err:
        _fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
    except KeyboardInterrupt:
        typer.echo(
            f"interrupted: finished specs are stored in {out}/results; rerun to resume", err=True
        )
        raise typer.Exit(130) from None


def reproduce_command(out: Path = OUT, scale: str = SCALE):
    """Run the whole model zoo and write the report (index.md, index.html) to --out."""
    from rich.console import Console

    from nnqft_ppl.zoo import reproduce

    scale = _check_scale(scale)
    console = Console(stderr=True)
    _guarded(lambda: reproduce(out, scale, progress=True, log=console.print), out)
    typer.echo(f"report: {out / 'index.md'} and {out / 'index.html'}")


def run_command(
    spec: Path = typer.Argument(..., help="A spec file, e.g. models/falloff_relu.toml."),
    out: Path = OUT,
    scale: str = SCALE,
):
    """Run one spec (reused when already finished) and rebuild the report in --out."""
    from nnqft_ppl.report import build_report
    from nnqft_ppl.zoo import run_spec

    scale = _check_scale(scale)

    def action():
        rec = run_spec(spec, out, scale, progress=True, command=f"nnqft run {spec} --scale {scale}")
        build_report(out)
        return rec

    rec = _guarded(action, out)
    state = "reused" if rec["skipped"] else f"finished in {rec['seconds']:.1f} s"
    typer.echo(f"{rec['name']}: {state}; report: {out / 'index.md'}")


def report_command(folder: Path = typer.Argument(..., help="A folder written by reproduce.")):
    """Rebuild index.md and index.html of a report folder from its stored results only."""
    from nnqft_ppl.report import build_report

    path = _guarded(lambda: build_report(folder), folder)
    typer.echo(f"report: {path}")


def register(app: typer.Typer) -> None:
    app.command("reproduce")(reproduce_command)
    app.command("run")(run_command)
    app.command("report")(report_command)
