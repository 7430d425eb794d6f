"""The one way steerscope calls a causal LM: token ids or a tokenizer batch in, no KV cache built."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from .models import LoadedModel

__all__ = ["run_forward"]


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
