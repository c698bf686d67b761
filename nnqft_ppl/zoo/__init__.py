"""Layer 7, zoo: declarative study specs, the study runners, the resumable zoo runner and the
report built from stored results."""

from . import studies
from .modeling import infer_spec, spec_model
from .report import build_report
from .results import Claim, SpecResult, StudyResult, load_result
from .runner import reproduce, run_spec, run_study
from .specs import STUDIES, ZOO, Spec, SpecError, load_spec, register_study

__all__ = [
    "studies",
    "infer_spec",
    "spec_model",
    "build_report",
    "Claim",
    "SpecResult",
    "StudyResult",
    "load_result",
    "reproduce",
    "run_spec",
    "run_study",
    "STUDIES",
    "ZOO",
    "Spec",
    "SpecError",
    "load_spec",
    "register_study",
]
