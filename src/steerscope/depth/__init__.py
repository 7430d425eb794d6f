"""Depth structure: residual norm growth and the effective layer horizon, their run and figures."""

from .horizon import summarize_horizon
from .norms import growth_rate, measure_norms
from .run import DepthRun, TextSpec, run_horizon, run_norms

__all__ = ["DepthRun", "TextSpec", "growth_rate", "measure_norms", "run_horizon", "run_norms", "summarize_horizon"]
