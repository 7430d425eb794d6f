"""Steered generation: the same prompts and seed, unsteered and at several coefficients."""

from __future__ import annotations

from collections.abc import Sequence

from ..core.generate import generate_text
from ..core.models import LoadedModel
from ..core.sites import site_name
from ..core.validate import check_coefficient, whole
from .methods import mean_diff
from .pairs import starter_pairs
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
    """Completions per coefficient, each run with the same seed and decoding settings.

    Coefficient 0 is the unsteered model: it runs with no hook installed at all (not a zero multiple).
    Every coefficient and `max_new_tokens` are checked before anything is generated."""
    vector.check(lm, allow_other_model)
    coefficients = [check_coefficient(c, "the coefficient (--coefficient)") for c in coefficients]
    if "max_new_tokens" in generation:
        whole(generation["max_new_tokens"], "max_new_tokens (--max-new-tokens)", 1)
    out = {}
    for coefficient in coefficients:
        with vector.apply(lm, coefficient, positions, allow_other_model):  # coefficient 0: apply installs no hook
            out[coefficient_label(coefficient)] = generate_text(lm, list(prompts), **generation)
    return out


def steer_with_pairs(
    lm: LoadedModel,
    pairs: str = "sentiment",
    site: str | None = None,
    coefficient: float = 4.0,
    prompts: Sequence[str] = ("I went to the park today and",),
    max_new_tokens: int = 30,
) -> tuple[SteeringVector, dict[str, list[str]]]:
    """`steerscope steer`: a mean-difference vector from a built-in pair set at `site` (default: resid_pre at a
    third of the depth), and greedy completions unsteered, at +coefficient and at -coefficient."""
    coefficient = check_coefficient(coefficient, "the coefficient (--coefficient)")
    whole(max_new_tokens, "max_new_tokens (--max-new-tokens)", 1)
    site = site or site_name("resid_pre", lm.n_layers // 3)
    vector = mean_diff(lm, starter_pairs(pairs), [site])
    coefficients = [0.0, coefficient, -coefficient]
    texts = steered_completions(
        lm, vector, prompts, coefficients, max_new_tokens=max_new_tokens, repetition_penalty=1.3
    )
    return vector, texts
