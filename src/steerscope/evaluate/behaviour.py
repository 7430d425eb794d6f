"""Behaviour probability on A/B multiple-choice items (CAA layout), as a function of the coefficient.

Each item is shown as "<question>\\n\\nAnswer: (" and the next-token probabilities of the two answer
letters are read at the last position; P(behaviour) = p(matching letter) / (p(A) + p(B)).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..core.hooks import run_forward
from ..core.models import LoadedModel

_LETTER = re.compile(r"^\s*\(?\s*([A-Za-z])\s*\)?")


@dataclass(frozen=True)
class ABItem:
    """A CAA item: the question (with its lettered choices) and the letters of the two answers."""

    question: str
    matching: str  # letter of the behaviour-matching answer, e.g. "A"
    not_matching: str

    @property
    def prompt(self) -> str:
        return f"{self.question}\n\nAnswer: ("


def _letter(answer: str, where: str) -> str:
    m = _LETTER.match(answer) if isinstance(answer, str) else None
    if not m:
        raise ValueError(f"{where}: an answer must start with its letter, like '(A)' or 'A', got {answer!r}")
    return m.group(1).upper()


def read_ab_items(path: str | Path) -> list[ABItem]:
    """A/B items from a .json list or .jsonl file with CAA keys (question, answer_matching_behavior,
    answer_not_matching_behavior)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no A/B items at {path}")
    text = path.read_text(encoding="utf-8")
    rows = json.loads(text) if path.suffix == ".json" else [json.loads(ln) for ln in text.splitlines() if ln.strip()]
    items = []
    for i, row in enumerate(rows):
        where = f"{path} item {i}"
        try:
            q, yes, no = row["question"], row["answer_matching_behavior"], row["answer_not_matching_behavior"]
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"{where}: needs 'question', 'answer_matching_behavior' and 'answer_not_matching_behavior'"
            ) from exc
        items.append(ABItem(q, _letter(yes, where), _letter(no, where)))
    return items


def ab_probability(last_logits: Tensor, matching_ids: Tensor, other_ids: Tensor) -> np.ndarray:
    """P(matching) / (P(matching) + P(other)) per row from next-token logits [B, V] (a softmax over the two)."""
    logits = last_logits.double()
    pair = torch.stack([logits.gather(-1, matching_ids.view(-1, 1)), logits.gather(-1, other_ids.view(-1, 1))], -1)
    return torch.softmax(pair.squeeze(1), dim=-1)[:, 0].cpu().numpy()


def letter_id(lm: LoadedModel, prompt: str, letter: str) -> int:
    """The token the model would emit for `letter` right after `prompt` (refuses multi-token letters)."""
    tok = lm.tokenizer
    base, full = tok(prompt)["input_ids"], tok(prompt + letter)["input_ids"]
    if full[: len(base)] != base or len(full) != len(base) + 1:
        raise ValueError(f"answer letter {letter!r} is not a single token after the prompt for this tokenizer")
    return full[-1]


def behaviour_probability(lm: LoadedModel, items: Sequence[ABItem], batch_size: int = 8) -> np.ndarray:
    """P(behaviour-matching answer) per item, under whatever intervention is active (e.g. `vector.apply`)."""
    if not items:
        raise ValueError("no A/B items to score")
    out = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        prompts = [it.prompt for it in chunk]
        yes = torch.tensor([letter_id(lm, p, it.matching) for p, it in zip(prompts, chunk, strict=True)])
        no = torch.tensor([letter_id(lm, p, it.not_matching) for p, it in zip(prompts, chunk, strict=True)])
        with torch.no_grad():
            logits = run_forward(lm, lm.tokenize(prompts)).logits[:, -1]
        out.append(ab_probability(logits, yes.to(logits.device), no.to(logits.device)))
    return np.concatenate(out)


def behaviour_curve(lm: LoadedModel, items: Sequence[ABItem], vector, coefficients: Sequence[float]) -> dict:
    """{coefficient: per-item P(behaviour)} with `vector` (a SteeringVector) applied at each coefficient."""
    curve = {}
    for c in coefficients:
        with vector.apply(lm, float(c)):
            curve[float(c)] = behaviour_probability(lm, items)
    return curve
