"""Text generation helpers: batched, left-padded, KV-cached, seeded.

`generate_text` returns the new text of each prompt; `generate_completions` also says how many tokens each
completion took and why it ended (an end-of-sequence token, a stop string, or the token limit), as an
OpenAI-style server must report it. Both run the same `model.generate` call, so with the same settings they give
the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .models import LoadedModel


@dataclass(frozen=True)
class Completion:
    """One generated completion: its text (cut before a stop string), tokens used and why it ended."""

    text: str
    n_tokens: int  # tokens generated, the end-of-sequence token or the one that completed a stop string included
    finish_reason: str  # "stop" (end-of-sequence token or stop string) or "length" (max_new_tokens reached)


def eos_ids(lm: LoadedModel) -> set[int]:
    """The token ids that end a completion (the generation config's eos_token_id, one or several)."""
    eos = getattr(getattr(lm.model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(lm.tokenizer, "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])}


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """`text` up to the earliest stop string, and whether one was found."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


def _generate_ids(
    lm: LoadedModel,
    prompts: list[str],
    max_new_tokens: int,
    do_sample: bool,
    temperature: float,
    top_p: float,
    seed: int,
    repetition_penalty: float,
    streamer: Any,
    stop: list[str] | None,
) -> list[list[int]]:
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts) or not prompts:
        raise ValueError("prompts must be a non-empty list of strings, e.g. ['I think that']")
    batch = lm.tokenize(prompts)
    mask = batch.get("attention_mask")
    lengths = mask.sum(1).tolist() if mask is not None else [batch["input_ids"].shape[1]] * len(prompts)
    empty = [i for i, n in enumerate(lengths) if n == 0]
    if empty:
        raise ValueError(f"prompt {empty[0] + 1} of {len(prompts)} is empty (no tokens); give some text to complete")
    torch.manual_seed(seed)
    sampling = {"temperature": temperature, "top_k": 0, "top_p": top_p} if do_sample else {}
    stopping = {"stop_strings": stop, "tokenizer": lm.tokenizer} if stop else {}
    with torch.no_grad():
        out = lm.model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            pad_token_id=lm.tokenizer.pad_token_id,
            repetition_penalty=repetition_penalty,
            streamer=streamer,
            **sampling,
            **stopping,
        )
    width = batch["input_ids"].shape[1]
    return [row[width:].tolist() for row in out]


def generate_text(
    lm: LoadedModel,
    prompts: list[str],
    max_new_tokens: int = 40,
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
    repetition_penalty: float = 1.0,
    streamer: Any = None,
    top_p: float = 1.0,
) -> list[str]:
    """Generate a completion for each prompt (only the new text is returned).

    `streamer`: a transformers streamer (`put(token_ids)`, `end()`) that sees the tokens as they are made."""
    completions = generate_completions(
        lm, prompts, max_new_tokens, do_sample, temperature, seed, repetition_penalty, streamer, top_p
    )
    return [c.text for c in completions]


def generate_completions(
    lm: LoadedModel,
    prompts: list[str],
    max_new_tokens: int = 40,
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
    repetition_penalty: float = 1.0,
    streamer: Any = None,
    top_p: float = 1.0,
    stop: list[str] | None = None,
) -> list[Completion]:
    """Like `generate_text`, with stop strings (the text is cut before the first one) and, per completion, the
    number of tokens generated and why it ended."""
    stop = [s for s in stop or [] if s]
    rows = _generate_ids(
        lm, prompts, max_new_tokens, do_sample, temperature, top_p, seed, repetition_penalty, streamer, stop
    )
    ends = eos_ids(lm)
    out = []
    for row in rows:
        n, ended = len(row), False
        for i, token in enumerate(row):
            if token in ends:
                n, ended = i + 1, True
                break
        text, stopped = cut_at_stop(lm.tokenizer.decode(row[:n], skip_special_tokens=True), stop)
        if stopped and not ended:  # generation stopped on the token that completed the stop string
            n = _tokens_until_stop(lm, row[:n], stop)
        out.append(Completion(text, n, "stop" if ended or stopped else "length"))
    return out


def _tokens_until_stop(lm: LoadedModel, row: list[int], stop: list[str]) -> int:
    """The number of leading tokens of `row` whose text first contains a stop string."""
    for i in range(1, len(row) + 1):
        if cut_at_stop(lm.tokenizer.decode(row[:i], skip_special_tokens=True), stop)[1]:
            return i
    return len(row)


class NoChatTemplateError(ValueError):
    """A chat was given to a model whose tokenizer defines no chat template."""


def chat_prompt(lm: LoadedModel, messages: list[dict[str, str]]) -> str:
    """The prompt text of a chat (`[{"role", "content"}]`) under the model's own chat template, ready for the
    assistant's turn; a leading BOS the template writes is dropped when tokenizing adds it again."""
    tokenizer = lm.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        raise NoChatTemplateError(f"{lm.name} defines no chat template; send a plain text prompt instead")
    if not messages:
        raise ValueError("the chat has no messages; send at least one")
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]:
        text = text[len(bos) :]
    return text
