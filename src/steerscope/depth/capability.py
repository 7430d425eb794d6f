"""Capability horizons: does a skill, not only next-token cross-entropy, survive horizon k?

Two tasks, each scored by top-1 accuracy at stated positions, for the clean model and at every k:
- induction (in-context copying): a random token sequence of h tokens repeated twice; the predictions of
  the second copy's tokens 2..h (each follows an earlier occurrence of its predecessor) are scored.
  Chance is 1 / (number of candidate tokens).
- cloze (recall): the first sentence of a built-in Wikipedia summary that begins with its title (2 to 4
  words), with the title replaced by "It", then "Title:" and the title's words but the last; the first
  token of the held-out last word is the answer ("It is the study of ... at sea. Title: Maritime" -> " history").
k* by capability is the smallest k whose mean accuracy is at least the clean accuracy minus a tolerance.
Sequences are right-padded: a causal model's prediction at a scored position never sees the padding.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..core.corpus import wikipedia_path
from ..core.forward import at_positions
from ..core.models import LoadedModel
from ..core.validate import BadNumberError, finite, whole
from ..evaluate.stats import bootstrap_mean_ci
from .horizon import HorizonVariant, clean_run, patched_logits

TASK_NAMES = ("induction", "cloze")


@dataclass(frozen=True)
class Task:
    """Token sequences and the (position, expected next token) pairs scored in each."""

    name: str
    ids: Tensor  # [N, T], right-padded
    positions: Tensor  # [N, P] positions whose prediction is scored, -1 where a row has fewer
    targets: Tensor  # [N, P] the expected next tokens
    chance: float
    description: str

    def batches(self, size: int) -> list[Task]:
        whole(size, "the batch size", 1)
        return [
            Task(self.name, ids, pos, tgt, self.chance, self.description)
            for ids, pos, tgt in zip(
                self.ids.split(size), self.positions.split(size), self.targets.split(size), strict=True
            )
        ]


def _candidates(tokenizer, vocab_size: int) -> list[int]:
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    return [i for i in range(vocab_size) if i not in special]


def induction_task(lm: LoadedModel, n: int, half: int = 24, seed: int = 0) -> Task:
    """n sequences of `half` random tokens repeated twice (no special tokens)."""
    whole(n, "the number of induction sequences", 1)
    whole(half, "the induction half length", 3)
    pool = _candidates(lm.tokenizer, int(lm.config.vocab_size))
    gen = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, len(pool), (n, half), generator=gen)
    first = torch.tensor(pool)[picks]
    ids = torch.cat([first, first], dim=1)
    positions = torch.arange(half, 2 * half - 1).expand(n, -1)  # predicts tokens half+1 .. 2*half-1
    targets = ids[:, half + 1 :]
    return Task(
        "induction",
        ids.to(lm.device),
        positions.to(lm.device),
        targets.to(lm.device),
        1.0 / len(pool),
        f"{n} random sequences of {half} tokens repeated twice; top-1 accuracy on the second copy's tokens 2..{half}",
    )


def cloze_items(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(prompt, held-out last title word) pairs from summaries whose first sentence begins with their title."""
    data = json.loads(wikipedia_path().read_text(encoding="utf-8"))
    items = []
    for entry in data.values():
        title, text = entry.get("title", ""), entry.get("extract", "")
        words = title.split(" ")
        if not re.fullmatch(r"[A-Za-z]+( [A-Za-z]+){1,3}", title) or not text.startswith(title + " "):
            continue
        sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
        if title in sentence[len(title) :] or not 40 <= len(sentence) <= 300:
            continue  # the title must be held out, and the sentence say something
        items.append(("It" + sentence[len(title) :] + "\nTitle: " + " ".join(words[:-1]), words[-1]))
    items.sort()
    if len(items) < n:
        raise BadNumberError(f"the cloze task has {len(items)} items; ask for at most that many")
    return random.Random(seed).sample(items, n)


def cloze_task(lm: LoadedModel, n: int, seed: int = 0) -> Task:
    """n cloze items: the prompt, and the first token of the held-out word (after a space) as the answer."""
    if lm.tokenizer is None:
        raise ValueError("the cloze task needs the model's tokenizer")
    pairs = cloze_items(n, seed)
    prompts = [lm.tokenizer(p, add_special_tokens=True)["input_ids"] for p, _ in pairs]
    answers = [lm.tokenizer(" " + word, add_special_tokens=False)["input_ids"][0] for _, word in pairs]
    width = max(len(p) for p in prompts)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    ids = torch.full((n, width), pad, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, : len(p)] = torch.tensor(p)
    positions = torch.tensor([[len(p) - 1] for p in prompts])
    return Task(
        "cloze",
        ids.to(lm.device),
        positions.to(lm.device),
        torch.tensor(answers).unsqueeze(1).to(lm.device),
        0.0,
        f"{n} Wikipedia first sentences with the title replaced by 'It', then 'Title:' and its words but the last; "
        "top-1 accuracy on the first token of the held-out word",
    )


def make_task(name: str, lm: LoadedModel, n: int, seed: int = 0) -> Task:
    if name == "induction":
        return induction_task(lm, n, seed=seed)
    if name == "cloze":
        return cloze_task(lm, n, seed)
    raise ValueError(f"unknown capability task {name!r}; choose from {', '.join(TASK_NAMES)}")


def parse_tasks(text: str) -> list[str]:
    """Comma-separated task names ('' for none, 'all' for every task)."""
    names = list(TASK_NAMES) if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        if name not in TASK_NAMES:
            raise BadNumberError(f"unknown capability task {name!r}; choose from {', '.join(TASK_NAMES)} or all")
    return list(dict.fromkeys(names))


def accuracy(logits: Tensor, task: Task, at_scored: bool = False) -> Tensor:
    """Per-sequence top-1 accuracy over the task's scored positions ([N], float64).

    logits: [N, T, V], or [N, P, V] already at the scored positions with `at_scored`.
    """
    valid = task.positions >= 0
    picked = (logits if at_scored else at_positions(logits, task.positions)).argmax(-1)
    hits = ((picked == task.targets) & valid).double().sum(-1)
    return hits / valid.double().sum(-1).clamp(min=1)


def capability_batch(
    lm: LoadedModel,
    task: Task,
    ks: Sequence[int],
    variant: HorizonVariant,
    means: tuple[Tensor, list[Tensor]] | None = None,
    on_k: Callable[[int], None] | None = None,
) -> dict[str, list]:
    """Clean accuracy ([N]) and accuracy at every k ([len(ks)][N]) on one batch of a task (only the scored
    positions are unembedded)."""
    clean = clean_run(lm, task.ids)
    with torch.no_grad():
        out: dict[str, list] = {"clean": accuracy(clean.logits, task).tolist(), "score": []}
        for k in ks:
            logits = patched_logits(lm, task.ids, k, clean, variant, means, positions=task.positions)
            out["score"].append(accuracy(logits, task, at_scored=True).tolist())
            if on_k is not None:
                on_k(k)
    return out


def summarize_capability(
    ks: Sequence[int], clean: Sequence[float], scores: Sequence[Sequence[float]], tolerance: float, n_boot: int = 1000
) -> dict:
    """Mean accuracy with bootstrap intervals per k, the clean accuracy, and k* within `tolerance` of clean."""
    tolerance = finite(tolerance, "the capability tolerance (--task-tolerance)", 0.0, 1.0)
    clean_arr = np.asarray(clean, dtype=np.float64)
    clean_mean = float(clean_arr.mean())
    rows = []
    for k, values in zip(ks, scores, strict=True):
        arr = np.asarray(values, dtype=np.float64)
        rows.append({"k": int(k), "score": float(arr.mean()), "score_ci": list(bootstrap_mean_ci(arr, n_boot, 0))})
    hit = next((r["k"] for r in rows if r["score"] >= clean_mean - tolerance), None)
    return {
        "clean": clean_mean,
        "clean_ci": list(bootstrap_mean_ci(clean_arr, n_boot, 0)),
        "tolerance": tolerance,
        "k_star": hit,
        "per_k": rows,
    }
