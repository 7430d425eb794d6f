"""Architecture adapters: where each family keeps its blocks, norms and residual writes.

An adapter is plain data. It never wraps or replaces a module; hooks are attached to the
modules it names. Paths are attribute paths: from the causal-LM root for `layers`, `final_norm`
and `embed`, from a block for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import cast

from torch import nn

from .errors import SteerscopeError


class UnsupportedArchitectureError(SteerscopeError, ValueError):
    """The model's architecture has no adapter."""


@dataclass(frozen=True)
class Adapter:
    """How one architecture family is wired.

    `attn_write` / `mlp_write` name the module whose output is exactly what the sublayer adds to the
    residual stream (the post-norm in sandwich-norm families, the dropout in GPT-NeoX).
    """

    family: str
    layers: str
    final_norm: str
    embed: str
    attn_norm: str
    mlp_norm: str
    attn_write: str
    mlp_write: str
    attn_proj: str = ""  # the linear map inside the attention write (for weight orthogonalization)
    mlp_proj: str = ""  # the linear map inside the MLP write
    pos_embed: str = ""  # learned absolute position embedding, if any (from the root)
    parallel: bool = False
    sandwich: bool = False

    def describe(self) -> str:
        wiring = "parallel residual" if self.parallel else "sequential"
        if self.sandwich:
            wiring += ", sandwich norms"
        return f"{self.family} ({wiring})"


_GPT2 = Adapter(
    family="gpt2",
    layers="transformer.h",
    final_norm="transformer.ln_f",
    embed="transformer.wte",
    attn_norm="ln_1",
    mlp_norm="ln_2",
    attn_write="attn",
    mlp_write="mlp",
    attn_proj="attn.c_proj",
    mlp_proj="mlp.c_proj",
    pos_embed="transformer.wpe",
)
_NEOX = Adapter(
    family="gpt_neox",
    layers="gpt_neox.layers",
    final_norm="gpt_neox.final_layer_norm",
    embed="gpt_neox.embed_in",
    attn_norm="input_layernorm",
    mlp_norm="post_attention_layernorm",
    attn_write="post_attention_dropout",
    mlp_write="post_mlp_dropout",
    attn_proj="attention.dense",
    mlp_proj="mlp.dense_4h_to_h",
    parallel=True,
)
_LLAMA = Adapter(
    family="llama",
    layers="model.layers",
    final_norm="model.norm",
    embed="model.embed_tokens",
    attn_norm="input_layernorm",
    mlp_norm="post_attention_layernorm",
    attn_write="self_attn",
    mlp_write="mlp",
    attn_proj="self_attn.o_proj",
    mlp_proj="mlp.down_proj",
)
_GEMMA2 = Adapter(
    family="gemma2",
    layers="model.layers",
    final_norm="model.norm",
    embed="model.embed_tokens",
    attn_norm="input_layernorm",
    mlp_norm="pre_feedforward_layernorm",
    attn_write="post_attention_layernorm",
    mlp_write="post_feedforward_layernorm",
    attn_proj="self_attn.o_proj",
    mlp_proj="mlp.down_proj",
    sandwich=True,
)

#: config.model_type -> adapter
ADAPTERS: dict[str, Adapter] = {
    "gpt2": _GPT2,
    "gpt_neox": _NEOX,
    "llama": _LLAMA,
    "mistral": replace(_LLAMA, family="mistral"),
    "qwen2": replace(_LLAMA, family="qwen2"),
    "qwen3": replace(_LLAMA, family="qwen3"),
    "smollm3": replace(_LLAMA, family="smollm3"),
    "gemma": replace(_LLAMA, family="gemma"),
    "gemma2": _GEMMA2,
    "gemma3_text": replace(_GEMMA2, family="gemma3"),
}

SUPPORTED_MODEL_TYPES = tuple(ADAPTERS)


def adapter_for_config(config) -> Adapter:
    """Return the adapter for a Hugging Face config, or raise naming the supported types."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ADAPTERS:
        raise UnsupportedArchitectureError(
            f"steerscope has no adapter for model_type {model_type!r}. Supported model types: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}. For a multimodal Gemma 3 checkpoint, load its text model."
        )
    adapter = ADAPTERS[model_type]
    if model_type == "gpt_neox":
        adapter = replace(adapter, parallel=bool(getattr(config, "use_parallel_residual", True)))
    return adapter


def get_module(root: nn.Module, path: str) -> nn.Module:
    """Follow a dotted attribute path from `root` (integers index module lists)."""
    module = root
    for part in path.split("."):
        module = cast(nn.ModuleList, module)[int(part)] if part.isdigit() else cast(nn.Module, getattr(module, part))
    return module
