"""The ``nnqft`` command line (Typer): sample, correlate, fit, rg, infer, run, reproduce, report.

``nnqft --plugin MODULE ...`` imports a module (a dotted name or a ``.py`` file) before the
command runs, so activations, architectures, coupling forms and study kinds defined there are
accepted by name. :func:`main` is the console entry point: usage errors are one line too.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import typer

from . import ensemble, inference, reproduce, theory

__all__ = ["app", "main", "load_plugin"]

app = typer.Typer(
    name="nnqft",
    help="nnqft_ppl: sample network ensembles, measure correlators, fit and infer NGP couplings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def load_plugin(name: str) -> None:
    """Import a plugin: a module name on the path, or a path to a ``.py`` file."""
    path = Path(name)
    if path.suffix == ".py":
        if not path.is_file():
            raise typer.BadParameter(f"no file {name!r}", param_hint="--plugin")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
    else:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise typer.BadParameter(
                f"cannot import {name!r}: {err}", param_hint="--plugin"
            ) from None


@app.callback()
def _root(
    plugin: list[str] = typer.Option(
        [],
        "--plugin",
        help="Import a module or .py file first (user-defined activations, "
        "coupling forms, studies); repeatable.",
    ),
):
    for name in plugin:
        load_plugin(name)


for _module in (ensemble, theory, inference, reproduce):
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run ``app``; any usage error is printed as one line (exit 2)."""
    try:
        # without standalone mode the parser returns an Exit's status instead of exiting
        code = app(args=argv, prog_name="nnqft", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except typer.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.TyperException as err:  # usage errors: unknown option, bad value, missing
        hint = getattr(err, "param_hint", None)
        hint = f"{hint}: " if isinstance(hint, str) else ""
        message = getattr(err, "message", None) if hint else None
        text = (message or err.format_message()).splitlines()[0]
        command = getattr(getattr(err, "ctx", None), "command_path", None)
        see = f" (see {command} --help)" if command and not hint else ""
        typer.echo(f"error: {hint}{text}{see}", err=True)
        sys.exit(2)
