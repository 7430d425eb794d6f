"""Evaluation: next-token metrics, fluency and side effects, scorers, bootstrap statistics, results stores."""

from .fluency import SideEffectProbe, completion_cross_entropy
from .metrics import clean_reference, next_token_metrics
from .stats import bootstrap_mean_ci, bootstrap_two_level_ci
from .store import Cell, ResultStore, SettingsMismatchError

__all__ = [
    "Cell",
    "ResultStore",
    "SettingsMismatchError",
    "SideEffectProbe",
    "bootstrap_mean_ci",
    "bootstrap_two_level_ci",
    "clean_reference",
    "completion_cross_entropy",
    "next_token_metrics",
]
