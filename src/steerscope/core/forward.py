"""The one way steerscope calls a causal LM (token ids or a tokenizer batch in, no KV cache built), and a pass
resumed at any layer from a recorded clean pass (what makes the horizon sweeps cheap)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .adapters import get_module
from .models import LoadedModel

__all__ = ["BlockCalls", "at_positions", "forward_from", "readout", "record_block_calls", "run_forward"]


def run_forward(lm: LoadedModel, inputs: Mapping[str, Tensor] | Tensor, **model_kwargs):
    """Call the causal LM on token ids or a tokenizer batch, without building a KV cache.

    `model_kwargs` go to the model call (e.g. `logits_to_keep=1` for last-position logits only).

    Under left padding, position ids count real tokens only (as `generate` does), so a padded row
    gets the same positions as the row alone in models with absolute position embeddings.
    """
    inputs = {"input_ids": inputs} if isinstance(inputs, Tensor) else dict(inputs)
    mask = inputs.get("attention_mask")
    if mask is not None and "position_ids" not in inputs:
        inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
    return lm.model(**inputs, use_cache=False, **model_kwargs)


@dataclass
class BlockCalls:
    """What each block of one forward pass was called with, besides its hidden states (masks, rotary tables...).

    Kept from a clean pass so that a later pass on the same batch can start at any layer (`forward_from`).
    """

    calls: list[tuple[tuple, dict]] = field(default_factory=list)


@contextmanager
def record_block_calls(lm: LoadedModel) -> Iterator[BlockCalls]:
    """Record, during the forward calls inside the block, the arguments each block gets (its input excepted)."""
    record = BlockCalls()

    def grab(module: nn.Module, args: tuple, kwargs: dict) -> None:
        if "hidden_states" in kwargs:
            kwargs = {k: v for k, v in kwargs.items() if k != "hidden_states"}
        else:
            args = args[1:]
        record.calls.append((args, kwargs))

    handles = [block.register_forward_pre_hook(grab, with_kwargs=True) for block in lm.blocks]
    try:
        yield record
    finally:
        for handle in handles:
            handle.remove()


def readout(lm: LoadedModel, final: Tensor, positions: Tensor | None = None) -> Tensor:
    """Logits from the residual the final norm reads: final norm, unembedding, and the logit soft cap if any.

    positions: [B, P] positions to unembed (the norm, and any hook on it, still sees every position).
    """
    hidden = get_module(lm.model, lm.adapter.final_norm)(final)
    if positions is not None:
        hidden = at_positions(hidden, positions)
    logits = lm.model.get_output_embeddings()(hidden)
    cap = getattr(lm.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def at_positions(values: Tensor, positions: Tensor) -> Tensor:
    """values[b, positions[b, j]] for [B, T, ...] values and [B, P] positions (-1 reads position 0)."""
    index = positions.clamp(min=0).to(values.device)
    return values.gather(1, index.view(*index.shape, *([1] * (values.dim() - 2))).expand(-1, -1, *values.shape[2:]))


def forward_from(
    lm: LoadedModel, layer: int, hidden: Tensor, record: BlockCalls, positions: Tensor | None = None
) -> Tensor:
    """Logits of the forward pass resumed at block `layer` (0..L) from the stream `hidden` entering it.

    `record` holds one pass's block arguments on the same batch (`record_block_calls`). The blocks, the
    final norm and the unembedding are called as modules, so every hook steerscope installed fires.
    Layers below `layer` are not run: this equals a full pass only where nothing below `layer` differs.
    positions: [B, P] positions to unembed (logits [B, P, V]); default all ([B, T, V]).
    """
    if len(record.calls) != lm.n_layers:
        raise ValueError(f"the block record holds {len(record.calls)} calls; the model has {lm.n_layers} blocks")
    if not 0 <= layer <= lm.n_layers:
        raise ValueError(f"a forward pass can resume at layer 0..{lm.n_layers}, got {layer}")
    for block, (args, kwargs) in zip(lm.blocks[layer:], record.calls[layer:], strict=True):
        out = block(hidden, *args, **kwargs)
        hidden = out[0] if isinstance(out, tuple) else out
    return readout(lm, hidden, positions)
