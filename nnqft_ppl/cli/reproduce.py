"""``nnqft reproduce``, ``nnqft run`` and ``nnqft report``.

Errors (bad spec, unwritable folder) are one line with exit status 2; Ctrl-C or SIGTERM stops
the run after keeping every finished spec (rerun to resume).
"""

from __future__ import annotations

import signal
from pathlib import Path

import typer

from .ensemble import dask_client
from .options import command, fail

__all__ = ["register"]

SCALES = ("default", "paper")
OUT = typer.Option(Path("nnqft-report"), "--out", help="Report folder (created if missing).")
SCALE = typer.Option(
    "default",
    "--scale",
    help="Ensemble sizes: default (minutes on 2 cores), paper (1e6 networks per width), or a "
    "scale a spec defines (e.g. test).",
)
SCHEDULER = typer.Option(
    None, "--scheduler", help="Address of a running Dask scheduler to sample the ensembles on."
)
WORKERS = typer.Option(
    0, "--workers", help="Sample on a local Dask cluster of this many worker processes."
)


def _sigterm_as_interrupt():
    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _check_scale(scale: str, specs) -> str:
    from ..zoo.specs import load_spec

    known = set(SCALES) | {s for spec in specs for s in load_spec(spec).scale}
    if scale not in known:
        fail(f"{scale!r} is not allowed; choose from {', '.join(sorted(known))}", "--scale")
    return scale


@command
def reproduce(out: Path = OUT, scale: str = SCALE, scheduler: str = SCHEDULER,
              workers: int = WORKERS):  # fmt: skip
    """Run the whole model zoo and write the report (index.md, index.html) to --out."""
    from rich.console import Console

    from ..zoo.runner import reproduce as run_all
    from ..zoo.specs import ZOO

    _check_scale(scale, ZOO)
    _sigterm_as_interrupt()
    console = Console(stderr=True)
    with dask_client(scheduler, workers) as client:
        run_all(out, scale, progress=True, log=console.print, client=client)
    _echo_summary(out)
    typer.echo(f"report: {out / 'index.md'} and {out / 'index.html'}")


def _echo_summary(out: Path) -> None:
    """The claim counts and every claim that did not PASS, one line each."""
    from ..zoo.report import claim_summary, stored_results

    claims = [c for r in stored_results(out) for c in r.claims]
    typer.echo(claim_summary(claims))
    for c in claims:
        if c.status != "PASS":
            typer.echo(f"  {c.line()}")


@command
def run(
    spec: str = typer.Argument(..., help="A zoo spec name (e.g. falloff_relu) or a TOML file."),
    out: Path = OUT,
    scale: str = SCALE,
    scheduler: str = SCHEDULER,
    workers: int = WORKERS,
):
    """Run one spec (reused when already finished) and rebuild the report in --out."""
    from ..zoo.report import build_report
    from ..zoo.runner import run_spec

    _check_scale(scale, [spec])
    _sigterm_as_interrupt()
    with dask_client(scheduler, workers) as client:
        rec = run_spec(spec, out, scale, progress=True, client=client,
                       command=f"nnqft run {spec} --scale {scale}")  # fmt: skip
    build_report(out)
    state = "reused" if rec.skipped else f"finished in {rec.seconds:.1f} s"
    typer.echo(f"{rec.name}: {state}; report: {out / 'index.md'}")


@command
def report(folder: Path = typer.Argument(..., help="A folder written by reproduce.")):
    """Rebuild index.md and index.html of a report folder from its stored results only."""
    from ..zoo.report import build_report

    typer.echo(f"report: {build_report(folder)}")


def register(app: typer.Typer) -> None:
    app.command("reproduce")(reproduce)
    app.command("run")(run)
    app.command("report")(report)
