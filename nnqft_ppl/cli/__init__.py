"""The ``nnqft`` command line (Typer). Each sub-module registers the commands of one topic."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="nnqft",
    help="nnqft_ppl: sample network ensembles, measure correlators, fit and infer NGP couplings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from . import eft as _eft  # noqa: E402
from . import ensemble as _ensemble  # noqa: E402
from . import inference as _inference  # noqa: E402
from . import reproduce as _reproduce  # noqa: E402

_ensemble.register(app)
_eft.register(app)
_inference.register(app)
_reproduce.register(app)

__all__ = ["app"]
