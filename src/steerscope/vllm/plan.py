"""Which rows of vLLM's flattened batch each request's vectors go to, for one forward call.

vLLM runs every scheduled request of a step as one flat sequence of tokens: request i owns rows
`query_start_loc[i] : query_start_loc[i + 1]`, and `positions[row]` is that token's index in its own
sequence (prompt then generated tokens). A request's `positions` rule is decided from that index and the
request's prompt length, the same rule `steerscope.core.positions` applies to Hugging Face's padded batches:

- `all`: every token; `prompt`: index < prompt length; `generated`: index >= prompt length;
- `last_prompt`: index == prompt length - 1; `front`: index < rows of a position-wise vector (ActAdd), whose
  row i goes to token i.

This module is plain torch (no vLLM), so it is tested against a slow per-token reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

#: the position rules vLLM can serve (a bool mask over padded columns has no meaning in a flat batch)
VLLM_POSITIONS = ("all", "prompt", "front", "last_prompt", "generated")


@dataclass(frozen=True)
class Addition:
    """One vector (already scaled by its coefficient) at one site for one request: [d] or position-wise [T, d]."""

    site: str
    vector: Tensor
    positions: str = "all"


@dataclass(frozen=True)
class RequestRows:
    """A request in this forward call: its rows in the flat batch, its prompt length and its additions."""

    start: int
    stop: int
    prompt_len: int
    additions: Sequence[Addition]


def selected(positions: str, index: Tensor, prompt_len: int, front_len: int | None) -> Tensor:
    """Bool over `index` (token indices within the request): which tokens the rule touches."""
    if positions == "all":
        return torch.ones_like(index, dtype=torch.bool)
    if positions == "prompt":
        return index < prompt_len
    if positions == "generated":
        return index >= prompt_len
    if positions == "last_prompt":
        return index == prompt_len - 1
    if positions == "front":
        return index < (front_len or 1)
    raise ValueError(f"unknown positions {positions!r}; use one of {', '.join(VLLM_POSITIONS)}")


def site_deltas(
    requests: Sequence[RequestRows], positions: Tensor, d_model: int, dtype: torch.dtype
) -> dict[str, tuple[Tensor, Tensor]]:
    """Per site: (rows [n] long, deltas [n, d]) to add with `index_add_` on the flat activation [N, d].

    A row may appear more than once (two vectors at one site add up)."""
    rows: dict[str, list[Tensor]] = {}
    deltas: dict[str, list[Tensor]] = {}
    for req in requests:
        if not req.additions or req.stop <= req.start:
            continue
        index = positions[req.start : req.stop].to(torch.long).cpu()
        for add in req.additions:
            vec = add.vector
            if add.positions == "all" and vec.dim() == 1:  # the common case: every row of the request
                rows.setdefault(add.site, []).append(torch.arange(req.start, req.stop))
                deltas.setdefault(add.site, []).append(vec.to(dtype).expand(req.stop - req.start, d_model))
                continue
            front_len = int(vec.shape[0]) if vec.dim() == 2 else None
            mask = selected(add.positions, index, req.prompt_len, front_len)
            if not bool(mask.any()):
                continue
            where = torch.nonzero(mask, as_tuple=True)[0]
            vals = vec[index[where]] if vec.dim() == 2 else vec.expand(len(where), d_model)
            rows.setdefault(add.site, []).append(where + req.start)
            deltas.setdefault(add.site, []).append(vals.to(dtype))
    return {s: (torch.cat(rows[s]), torch.cat(deltas[s])) for s in rows}


def apply_deltas(h: Tensor, plan: Mapping[str, tuple[Tensor, Tensor]], site: str) -> Tensor:
    """`h` [N, d] plus the site's deltas at their rows (a new tensor; `h` is left alone)."""
    if site not in plan:
        return h
    rows, vals = plan[site]
    return h.index_add(0, rows.to(h.device), vals.to(device=h.device, dtype=h.dtype))
