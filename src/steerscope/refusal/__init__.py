"""Refusal: harmful / harmless instructions, the refusal direction (diff-in-means candidates and their
selection), the run (ablation, addition, weight export) and its figures."""

from .direction import Candidate, Selection, SelectionRule, candidate_directions, select_direction
from .instructions import is_refusal, load_instructions, refusal_rate
from .run import NoDirectionError, RefusalRun, run_refusal

__all__ = [
    "Candidate",
    "NoDirectionError",
    "RefusalRun",
    "Selection",
    "SelectionRule",
    "candidate_directions",
    "is_refusal",
    "load_instructions",
    "refusal_rate",
    "run_refusal",
    "select_direction",
]
