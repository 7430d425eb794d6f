"""Text generation helper: batched, left-padded, KV-cached, seeded."""

from __future__ import annotations

from typing import Any

import torch

from .models import LoadedModel


def generate_text(
    lm: LoadedModel,
    prompts: list[str],
    max_new_tokens: int = 40,
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
    repetition_penalty: float = 1.0,
    streamer: Any = None,
) -> list[str]:
    """Generate a completion for each prompt (only the new text is returned).

    `streamer`: a transformers streamer (`put(token_ids)`, `end()`) that sees the tokens as they are made."""
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
    sampling = {"temperature": temperature, "top_k": 0, "top_p": 1.0} if do_sample else {}
    with torch.no_grad():
        out = lm.model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            pad_token_id=lm.tokenizer.pad_token_id,
            repetition_penalty=repetition_penalty,
            streamer=streamer,
            **sampling,
        )
    width = batch["input_ids"].shape[1]
    return [lm.tokenizer.decode(row[width:], skip_special_tokens=True) for row in out]
