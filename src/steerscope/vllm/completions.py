"""Steered completions on either engine: `engine="hf"` (steerscope's hooks on a Hugging Face model, the reference)
or `engine="vllm"` (every coefficient of every prompt in one vLLM batch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core.loading import load_model
from ..core.models import LoadedModel
from ..core.sites import site_name
from ..core.validate import check_coefficient, whole
from ..steering.generate import coefficient_label
from ..steering.generate import steered_completions as hf_steered_completions
from ..steering.methods import mean_diff
from ..steering.pairs import starter_pairs
from ..steering.vector import SteeringVector
from .engine import Steer, VllmEngine

ENGINES = ("hf", "vllm")


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; use hf (Hugging Face, the default) or vllm")
    return engine


def vllm_completions(
    engine: VllmEngine,
    vector: SteeringVector,
    prompts: Sequence[str],
    coefficients: Sequence[float],
    positions: str = "all",
    allow_other_model: bool = False,
    max_new_tokens: int = 40,
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
    repetition_penalty: float = 1.0,
) -> dict[str, list[str]]:
    """As `steering.generate.steered_completions`, through vLLM: one batch holds every (coefficient, prompt)."""
    coefficients = [check_coefficient(c, "the coefficient (--coefficient)") for c in coefficients]
    whole(max_new_tokens, "max_new_tokens (--max-new-tokens)", 1)
    cells = [(c, p) for c in coefficients for p in prompts]
    steering = [None if c == 0 else Steer(vector, c, positions, allow_other_model) for c, _ in cells]
    done = engine.generate(
        [p for _, p in cells],
        steering=steering,
        max_tokens=max_new_tokens,
        temperature=temperature if do_sample else 0.0,
        seed=seed,
        repetition_penalty=repetition_penalty,
    )
    out: dict[str, list[str]] = {}
    for (c, _), completion in zip(cells, done, strict=True):
        out.setdefault(coefficient_label(c), []).append(completion.text)
    return out


def steered_completions(
    model: str | LoadedModel | VllmEngine,
    vector: SteeringVector,
    prompts: Sequence[str],
    coefficients: Sequence[float],
    positions: str = "all",
    allow_other_model: bool = False,
    engine: str = "hf",
    **generation: Any,
) -> dict[str, list[str]]:
    """Completions per coefficient (label -> one text per prompt) on `engine`; coefficient 0 is unsteered.

    `model`: a spec ("default", a hub id, a folder, a .gguf), a LoadedModel (hf) or a VllmEngine (vllm).
    `generation`: max_new_tokens, do_sample, temperature, seed, repetition_penalty."""
    if check_engine(engine) == "vllm":
        if isinstance(model, LoadedModel):
            raise ValueError("engine='vllm' takes a model spec or a VllmEngine, not a Hugging Face LoadedModel")
        runner = model if isinstance(model, VllmEngine) else VllmEngine(model)
        return vllm_completions(runner, vector, prompts, coefficients, positions, allow_other_model, **generation)
    if isinstance(model, VllmEngine):
        raise ValueError("engine='hf' takes a model spec or a LoadedModel, not a VllmEngine")
    lm = model if isinstance(model, LoadedModel) else load_model(model)
    generation.pop("temperature", None)
    return hf_steered_completions(lm, vector, prompts, coefficients, positions, allow_other_model, **generation)


def steer_with_pairs_vllm(
    engine: VllmEngine,
    pairs: str = "sentiment",
    site: str | None = None,
    coefficient: float = 4.0,
    prompts: Sequence[str] = ("I went to the park today and",),
    max_new_tokens: int = 30,
) -> tuple[SteeringVector, dict[str, list[str]]]:
    """`steerscope steer --engine vllm`: the mean-difference vector read through vLLM, then greedy completions
    unsteered, at +coefficient and at -coefficient in one vLLM batch (as `steering.generate.steer_with_pairs`)."""
    coefficient = check_coefficient(coefficient, "the coefficient (--coefficient)")
    whole(max_new_tokens, "max_new_tokens (--max-new-tokens)", 1)
    site = site or site_name("resid_pre", engine.n_layers // 3)
    vector = mean_diff(engine, starter_pairs(pairs), [site])  # type: ignore[arg-type]  (reads through vLLM)
    vector.meta["engine"] = "vllm"
    texts = vllm_completions(
        engine, vector, prompts, [0.0, coefficient, -coefficient], max_new_tokens=max_new_tokens, repetition_penalty=1.3
    )
    return vector, texts
