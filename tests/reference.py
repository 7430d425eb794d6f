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


_ATTN_MODULE = {"gpt2": "attn", "gpt_neox": "attention"}


def _attn_module(lm, layer):
    return getattr(lm.blocks[layer], _ATTN_MODULE.get(lm.adapter.family, "self_attn"))


def clean_outputs(lm, ids):
    """Embedding, every sublayer output (in order) and each attention call, from plain torch hooks."""
    a = lm.adapter
    store = {"attn": {}, "mlp": {}, "calls": {}}
    handles = [lm.blocks[0].register_forward_pre_hook(lambda m, args: store.__setitem__("e", args[0]))]
    for n, block in enumerate(lm.blocks):
        handles.append(
            get_module(block, a.attn_write).register_forward_hook(
                lambda m, i, o, n=n: store["attn"].__setitem__(n, o[0] if isinstance(o, tuple) else o)
            )
        )
        handles.append(
            get_module(block, a.mlp_write).register_forward_hook(lambda m, i, o, n=n: store["mlp"].__setitem__(n, o))
        )

        def grab(m, args, kwargs, n=n):
            kw = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            store["calls"][n] = (args[1:], kw)

        handles.append(_attn_module(lm, n).register_forward_pre_hook(grab, with_kwargs=True))
    try:
        with torch.no_grad():
            lm.model(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    outs = [o for n in range(lm.n_layers) for o in (store["attn"][n], store["mlp"][n])]
    return store["e"], outs, store["calls"]


def attn_branch(lm, layer, x, call):
    """What layer's attention sublayer adds to the stream, from its residual input x."""
    block, a = lm.blocks[layer], lm.adapter
    args, kwargs = call
    with torch.no_grad():
        y = _attn_module(lm, layer)(get_module(block, a.attn_norm)(x), *args, **kwargs)[0]
        if a.attn_write not in ("attn", "self_attn"):
            y = get_module(block, a.attn_write)(y)
        return y


def _readout(lm, final):
    with torch.no_grad():
        logits = lm.model.get_output_embeddings()(get_module(lm.model, lm.adapter.final_norm)(final))
    cap = getattr(lm.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def slow_horizon_logits(lm, ids, k, variant, layers=None):
    """The horizon recomputed one sublayer at a time from the cached clean outputs.

    layers: truncate only these layers (every other layer reads its ordinary stream); default n >= k (or K).
    """
    e, clean, calls = clean_outputs(lm, ids)
    L, parallel = lm.n_layers, lm.adapter.parallel
    mean_e = e[:, 1:].mean((0, 1))
    mean_o = [o[:, 1:].mean((0, 1)) for o in clean]
    K = variant.enforce_from if variant.enforce_from is not None else k

    def total(tensors):
        return sum(tensors, torch.zeros_like(e))

    def truncated(src, start_layer, end, full):
        x = total(src[2 * start_layer : end])
        if variant.keep_embedding:
            x = x + e
        if variant.fill == "mean":
            x = x + total([m.expand_as(e) for m in mean_o[: 2 * start_layer]])
            if not variant.keep_embedding:
                x = x + mean_e
        if variant.position0 == "keep":
            x = x.clone()
            x[:, 0] = full[:, 0]
        return x

    patched = []
    for n in range(L):
        for sub in (0, 1):
            end = 2 * n if (parallel or sub == 0) else 2 * n + 1
            full = e + total(patched[:end])
            untouched = n not in layers if layers is not None else n < K
            if variant.readout_only or untouched:
                x = full
            else:
                src = clean if variant.source == "clean" else patched
                x = truncated(src, max(0, n - k), end, full)
            y = attn_branch(lm, n, x, calls[n]) if sub == 0 else _mlp(lm, n, x)
            patched.append(y)
    final = e + total(patched)
    if variant.readout_only and k < L:
        final = truncated(patched, L - k, 2 * L, final)
    return _readout(lm, final)


def _mlp(lm, layer, x):
    return mlp_branch(lm, layer, x)


def manual_stream(lm, ids, order=None):
    """Block-by-block forward from HF's embedding output, running the blocks in `order` (default 0..L-1; a block
    left out adds nothing, a reordered block gets its own call arguments). Returns the stream after each step
    and the logits (final norm, unembedding, soft cap)."""
    out, calls = block_kwargs(lm, ids)
    h = out.hidden_states[0]
    after = []
    with torch.no_grad():
        for layer in range(lm.n_layers) if order is None else order:
            args, kwargs = calls[layer]
            h = lm.blocks[layer](h, *args, **kwargs)
            h = h[0] if isinstance(h, tuple) else h
            after.append(h)
    return after, _readout(lm, h)
