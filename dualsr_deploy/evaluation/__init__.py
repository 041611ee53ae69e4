"""Evaluation reports (``dualsr eval``) and the built-in demo (``dualsr demo``)."""

from dualsr_deploy.evaluation.core import PAPER_CAVE, EvalOptions, EvalReport, evaluate_archive
from dualsr_deploy.evaluation.reports import write_reports

__all__ = ["PAPER_CAVE", "EvalOptions", "EvalReport", "evaluate_archive", "write_reports"]
