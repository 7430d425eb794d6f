"""Which token positions an intervention touches, right under left padding and KV-cached generation.

A pre-hook on the base model records, for every forward call, each input token's index among the
real (non-padding) tokens of its row, whether it is padding, and the prompt length of each row. A
call that attends only to its own tokens starts a new prompt; a call with a non-empty cache
continues it (one new position per row during cached generation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

POSITION_SPECS = ("all", "prompt", "front", "last_prompt", "generated")


@dataclass
class PositionState:
    """Positions of the tokens in the current forward call."""

    index: torch.Tensor  # [B, q] long: index among the row's real tokens (pads get -1)
    is_pad: torch.Tensor  # [B, q] bool
    past_len: int  # columns already in the cache before this call
    prompt_len: torch.Tensor  # [B] long: real tokens in the prompt (set at the prefill call)


class PositionTracker:
    """Keeps a PositionState up to date from a forward pre-hook on the base model."""

    def __init__(self, base_model: torch.nn.Module):
        self.state: PositionState | None = None
        self.handle = base_model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def remove(self) -> None:
        self.handle.remove()

    def require(self) -> PositionState:
        if self.state is None:
            raise RuntimeError(
                "positions are unknown: run the model through its forward (model(...) or generate), not a single block"
            )
        return self.state

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        ref = ids if ids is not None else embeds
        batch, q = int(ref.shape[0]), int(ref.shape[1])
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.dim() == 2:
            mask = mask.to(torch.bool)
            past = mask.shape[1] - q
        else:
            cache = kwargs.get("cache", kwargs.get("past_key_values"))
            past = int(cache.get_seq_length()) if cache is not None else 0
            mask = torch.ones(batch, past + q, dtype=torch.bool, device=ref.device)
        index = (mask.long().cumsum(-1) - 1)[:, -q:]
        is_pad = ~mask[:, -q:]
        index = index.masked_fill(is_pad, -1)
        prompt_len = mask.long().sum(-1) if past == 0 or self.state is None else self.state.prompt_len
        self.state = PositionState(index=index, is_pad=is_pad, past_len=past, prompt_len=prompt_len)


def validate_positions(spec):
    """Check a position spec: one of POSITION_SPECS or a bool mask [B, T] over input columns."""
    if isinstance(spec, str):
        if spec not in POSITION_SPECS:
            raise ValueError(
                f"unknown positions {spec!r}; use one of {', '.join(POSITION_SPECS)} or a bool mask [batch, seq]"
            )
        return spec
    if isinstance(spec, torch.Tensor):
        if spec.dim() != 2:
            raise ValueError(f"a position mask must be 2-D [batch, seq], got shape {tuple(spec.shape)}")
        if spec.dtype != torch.bool:
            raise ValueError(f"a position mask must have dtype torch.bool, got {spec.dtype}")
        return spec
    raise ValueError(f"positions must be a string or a bool tensor, got {type(spec).__name__}")


def position_weights(spec, state: PositionState, front_len: int | None = None) -> torch.Tensor:
    """Bool [B, q]: which tokens of the current call the spec selects."""
    idx, real = state.index, ~state.is_pad
    if isinstance(spec, torch.Tensor):
        if spec.shape[0] != idx.shape[0]:
            raise ValueError(f"position mask has batch size {spec.shape[0]} but the input has {idx.shape[0]} rows")
        cols = torch.arange(state.past_len, state.past_len + idx.shape[1], device=idx.device)
        inside = cols < spec.shape[1]
        if state.past_len == 0 and not bool(inside.all()):
            raise ValueError(
                f"position mask covers {spec.shape[1]} columns but the input has {idx.shape[1]}; "
                "give a mask at least as wide as the (padded) prompt"
            )
        out = torch.zeros_like(real)
        out[:, inside] = spec.to(idx.device)[:, cols[inside]]
        return out
    prompt = state.prompt_len.to(idx.device).unsqueeze(1)
    if spec == "all":
        return real
    if spec == "prompt":
        return real & (idx < prompt)
    if spec == "front":
        return real & (idx < (front_len or 1))
    if spec == "last_prompt":
        return real & (idx == prompt - 1)
    if spec == "generated":
        return real & (idx >= prompt)
    raise ValueError(f"unknown positions {spec!r}")
