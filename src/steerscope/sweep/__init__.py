"""Sweeps over models x methods x sites x coefficients x pairs x seeds x datasets, resumable, with the
validation / test protocol and the baselines every comparison needs; its report and figures."""

from ..steering.tasks import ConceptTask, get_task
from .config import ConfigError, SweepConfig, load_config, parse_config
from .report import sweep_report
from .runner import SweepRunner, run_sweep

__all__ = [
    "ConceptTask",
    "ConfigError",
    "SweepConfig",
    "SweepRunner",
    "get_task",
    "load_config",
    "parse_config",
    "run_sweep",
    "sweep_report",
]
