"""The ``nnqft`` command line: :data:`app` (Typer) and its console entry point :func:`main`."""

from .app import app, main

__all__ = ["app", "main"]
