"""Slow, obvious reference computations that do not use steerscope's site logic."""

from __future__ import annotations

import torch

from steerscope.core.adapters import get_module


def block_kwargs(lm, ids, attention_mask=None):
    """Run the model once and record, with plain torch hooks, what each block was called with."""
    calls = []

    def grab(module, args, kwargs):
        calls.append((args[1:], dict(kwargs)))

    handles = [b.register_forward_pre_hook(grab, with_kwargs=True) for b in lm.blocks]
    try:
        with torch.no_grad():
            out = lm.model(input_ids=ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return out, calls


def manual_logits(lm, ids, before=None, after=None, attention_mask=None):
    """Block-by-block forward from HF's embedding output, adding before[l] before block l and after[l] after it."""
    before, after = before or {}, after or {}
    out, calls = block_kwargs(lm, ids, attention_mask)
    h = out.hidden_states[0]
    with torch.no_grad():
        for layer, block in enumerate(lm.blocks):
            if layer in before:
                h = h + before[layer]
            args, kwargs = calls[layer]
            h = block(h, *args, **kwargs)
            h = h[0] if isinstance(h, tuple) else h
            if layer in after:
                h = h + after[layer]
        h = get_module(lm.model, lm.adapter.final_norm)(h)
        logits = lm.model.get_output_embeddings()(h)
        cap = getattr(lm.config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits


def mlp_branch(lm, layer, mlp_input):
    """What layer's MLP sublayer adds to the stream, computed by calling its modules in order."""
    block = lm.blocks[layer]
    a = lm.adapter
    with torch.no_grad():
        y = block.mlp(get_module(block, a.mlp_norm)(mlp_input))
        if a.sandwich:
            y = get_module(block, a.mlp_write)(y)
        return y
