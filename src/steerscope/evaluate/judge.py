"""Optional LLM judge (AxBench-style 0-2 ratings) through an OpenAI-compatible endpoint.

Set STEERSCOPE_LLM_URL, STEERSCOPE_LLM_MODEL (and STEERSCOPE_LLM_KEY) to use it; nothing else in
steerscope needs it. Each completion gets three ratings: how clearly it shows the concept, how well it
continues / answers its prompt, and how fluent it is; 0 (not at all), 1 (somewhat), 2 (clearly).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ..core.endpoint import ChatEndpoint

ASPECTS = {
    "concept": "Rate how clearly the text shows this concept: {concept}.",
    "instruction": "Rate how well the text is a relevant continuation of (or answer to) the prompt.",
    "fluency": "Rate how fluent and grammatical the text is, regardless of its content.",
}
TEMPLATE = (
    "{task}\nUse 0 (not at all), 1 (somewhat) or 2 (clearly). First give one short sentence of reasoning, then "
    "the rating in double brackets, like Rating: [[1]].\n\nPrompt: {prompt}\n\nText: {text}"
)
_RATING = re.compile(r"\[\[\s*([012])\s*\]\]")


def parse_rating(reply: str) -> float:
    """The last [[0|1|2]] in a reply, or NaN when there is none."""
    found = _RATING.findall(reply)
    return float(found[-1]) if found else float("nan")


def judge_ratings(
    prompts: Sequence[str], texts: Sequence[str], concept: str, endpoint: ChatEndpoint | None = None
) -> dict[str, np.ndarray]:
    """{aspect: per-text rating in {0, 1, 2} (NaN where the reply had no rating)}; the endpoint defaults to
    the one in the environment (temperature 0)."""
    endpoint = endpoint or ChatEndpoint.from_env("the LLM judge", temperature=0.0)
    out = {}
    for aspect, task in ASPECTS.items():
        question = task.format(concept=concept)
        out[aspect] = np.array(
            [
                parse_rating(endpoint.chat(TEMPLATE.format(task=question, prompt=p, text=t), seed=i))
                for i, (p, t) in enumerate(zip(prompts, texts, strict=True))
            ]
        )
    return out
