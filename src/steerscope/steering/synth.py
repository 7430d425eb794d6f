"""Synthetic contrast pairs written by a language model: a local one (default) or an OpenAI-compatible
endpoint (URL, key and model name from the environment).

Each request asks for one sentence that shows the concept and the same sentence rewritten without it,
on a topic drawn (seeded) from a fixed list so the pairs vary. Replies are parsed, validated and
de-duplicated; nothing that fails validation is kept.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from ..core.endpoint import ChatEndpoint
from ..core.validate import whole
from .pairs import ContrastPair

TOPICS = [
    "food",
    "travel",
    "work",
    "the weather",
    "sports",
    "family",
    "school",
    "shopping",
    "music",
    "a city",
    "a holiday",
    "technology",
    "a pet",
    "a book",
    "a film",
    "the news",
    "health",
    "a neighbour",
    "a garden",
    "a journey by train",
    "a restaurant",
    "a birthday",
    "money",
    "the morning",
    "a hobby",
    "a friend",
]

PROMPT = (
    "Write two short sentences about {topic} that differ only in {concept}. The first sentence must clearly "
    "express {concept}. The second must be the same sentence rewritten so that it expresses the opposite.\n"
    "Reply in exactly this format and nothing else:\nPOSITIVE: <first sentence>\nNEGATIVE: <second sentence>\n"
    "For example, for politeness and the topic a shop:\n"
    "POSITIVE: {example_positive}\nNEGATIVE: {example_negative}"
)
EXAMPLE = ("Could you please help me find the bread, thank you so much.", "Find me the bread, now.")
PREFILL = "POSITIVE:"

_LINE = re.compile(r"^\s*\**\s*(POSITIVE|NEGATIVE)\s*\**\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def parse_pair(reply: str, min_chars: int = 8, max_chars: int = 300) -> ContrastPair | None:
    """The pair in a reply, or None if it is missing or fails validation."""
    found = {m.group(1).upper(): m.group(2).strip().lstrip("-* ").strip('"') for m in _LINE.finditer(reply)}
    pos, neg = found.get("POSITIVE"), found.get("NEGATIVE")
    if not pos or not neg or min(len(pos.split()), len(neg.split())) < 3:
        return None
    if not all(min_chars <= len(t) <= max_chars for t in (pos, neg)):
        return None
    if _norm(pos) == _norm(neg) or any(w in t.upper() for t in (pos, neg) for w in ("POSITIVE:", "NEGATIVE:", "<")):
        return None
    if any(_overlap(t, e) > 0.5 for t in (pos, neg) for e in EXAMPLE):
        return None  # a copy of the prompt's example, not a new pair
    return ContrastPair(pos, neg)


def _overlap(a: str, b: str) -> float:
    wa, wb = set(_norm(a).split()), set(_norm(b).split())
    return len(wa & wb) / max(1, len(wa | wb))


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


@dataclass
class LocalWriter:
    """Writes replies with a local causal LM (its chat template when it has one)."""

    lm: object
    temperature: float = 0.8
    max_new_tokens: int = 60

    def __call__(self, prompts: list[str], seed: int) -> list[str]:
        from ..core.generate import generate_text

        tok = self.lm.tokenizer
        if getattr(tok, "chat_template", None):
            texts = [
                tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
                + PREFILL
                for p in prompts
            ]
        else:
            texts = [f"{p}\n{PREFILL}" for p in prompts]
        replies = generate_text(
            self.lm, texts, self.max_new_tokens, do_sample=True, temperature=self.temperature, seed=seed
        )
        return [PREFILL + r for r in replies]


@dataclass
class EndpointWriter:
    """Writes replies through an OpenAI-compatible /chat/completions endpoint."""

    endpoint: ChatEndpoint

    @classmethod
    def from_env(cls) -> EndpointWriter:
        return cls(ChatEndpoint.from_env("the endpoint writer", temperature=0.8))

    def __call__(self, prompts: list[str], seed: int) -> list[str]:
        return [self.endpoint.chat(p, seed + i) for i, p in enumerate(prompts)]


def generate_pairs(
    writer: Callable[[list[str], int], list[str]],
    concept: str,
    n: int,
    seed: int = 0,
    batch_size: int = 8,
    max_requests: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[list[ContrastPair], int]:
    """Up to n validated, de-duplicated pairs; returns them and the number of requests made."""
    if not concept.strip():
        raise ValueError("the concept must be a non-empty description, e.g. 'happiness' or 'formal language'")
    whole(n, "n (--n, the pairs wanted)", 1)
    whole(batch_size, "batch_size (--batch-size)", 1)
    if max_requests is not None:
        whole(max_requests, "max_requests (--max-requests; 0 on the command line: 10 x n)", 1)
    rng = random.Random(seed)
    max_requests = max_requests or 10 * n
    pairs: list[ContrastPair] = []
    seen: set[tuple[str, str]] = set()
    requests = 0
    while len(pairs) < n and requests < max_requests:
        prompts = [
            PROMPT.format(
                topic=rng.choice(TOPICS), concept=concept, example_positive=EXAMPLE[0], example_negative=EXAMPLE[1]
            )
            for _ in range(batch_size)
        ]
        for reply in writer(prompts, seed + requests):
            pair = parse_pair(reply)
            key = pair and (_norm(pair.positive), _norm(pair.negative))
            if pair and key not in seen and len(pairs) < n:
                seen.add(key)
                pairs.append(pair)
        requests += len(prompts)
        if on_batch is not None:
            on_batch(len(pairs), requests)
    return pairs, requests
