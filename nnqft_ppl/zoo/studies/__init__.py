"""Study runners, one module per ``study`` kind of a spec. Importing them registers each in
:data:`~nnqft_ppl.zoo.specs.STUDIES` (``@register_study("<kind>")``); each returns a
:class:`~nnqft_ppl.zoo.results.StudyResult`.
"""

from .coupling import run_coupling
from .deep import run_deep
from .falloff import run_falloff
from .rg import run_rg
from .sixpoint import run_sixpoint
from .symmetry import run_symmetry
from .training import run_training

__all__ = [
    "run_coupling",
    "run_deep",
    "run_falloff",
    "run_rg",
    "run_sixpoint",
    "run_symmetry",
    "run_training",
]
