"""Steered generation: the same prompts and seed, unsteered and at several coefficients."""

from __future__ import annotations

from collections.abc import Sequence

from ..core.generate import generate_text
from ..core.models import LoadedModel
from .vector import SteeringVector


def coefficient_label(coefficient: float) -> str:
    return "unsteered" if coefficient == 0 else f"{coefficient:+g} x vector"


def steered_completions(
    lm: LoadedModel,
    vector: SteeringVector,
    prompts: Sequence[str],
    coefficients: Sequence[float],
    positions: str = "all",
    allow_other_model: bool = False,
    **generation,
) -> dict[str, list[str]]:
    """Completions per coefficient (0 = unsteered), each run with the same seed and decoding settings."""
    vector.check(lm, allow_other_model)
    out = {}
    for coefficient in coefficients:
        with vector.apply(lm, coefficient, positions, allow_other_model):
            out[coefficient_label(coefficient)] = generate_text(lm, list(prompts), **generation)
    return out
