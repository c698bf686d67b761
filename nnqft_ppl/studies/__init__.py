"""Study runners, one per ``study`` kind of a spec; each returns a :class:`StudyResult`.

>>> result = run_study(load_spec("models/falloff_relu.toml"), scale="default")
>>> [c.line() for c in result.claims]
"""

from __future__ import annotations

from .common import Claim, StudyResult
from .coupling import run_coupling
from .falloff import run_falloff
from .rg import run_rg
from .sixpoint import run_sixpoint
from .symmetry import run_symmetry

__all__ = ["Claim", "StudyResult", "RUNNERS", "run_study"]

RUNNERS = {
    "falloff": run_falloff,
    "coupling": run_coupling,
    "rg": run_rg,
    "sixpoint": run_sixpoint,
    "symmetry": run_symmetry,
}


def run_study(spec, scale: str = "default", cache=None, progress: bool = False) -> StudyResult:
    """Run ``spec`` at ``scale``; ``cache``: folder for reusable ensembles (or None)."""
    return RUNNERS[spec.study](spec.at_scale(scale), cache=cache, progress=progress)
