"""Which steerscope sites vLLM's fused Llama-family layers expose, and the hook that reads or edits each.

vLLM's decoder layer is `(positions, hidden, residual) -> (hidden, residual)`, with the residual add fused into
the next RMSNorm, so:
- `embed` is the embedding's output; `resid_pre.{l}` is `hidden + residual` entering layer l (just `hidden` at
  layer 0); `resid_post.{l}` and `final` are `hidden + residual` leaving layer l (`final`: the last layer);
- `attn_out.{l}` / `mlp_out.{l}` are the attention / MLP module outputs, the writes into the stream;
- `resid_mid.{l}` is read as the residual the post-attention norm returns, and added through the attention write
  (as steerscope's Hugging Face hooks add it);
- `attn_in.{l}` / `mlp_in.{l}` (a sublayer's own input, the stream left alone) are refused: the fused norm takes
  the stream and the sublayer input as one tensor, so there is no place to change one without the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from ..core.errors import SteerscopeError
from ..core.sites import Site, parse_site
from .plan import VLLM_POSITIONS

#: model types whose vLLM decoder layers have the `(hidden, residual)` shape and module names used here
VLLM_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
VLLM_SITE_KINDS = ("embed", "resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post", "final")

Reader = Callable[..., Tensor]
Writer = Callable[[tuple, Callable[[Tensor], Tensor]], Any]


class VllmUnsupportedError(SteerscopeError, ValueError):
    """Something the vLLM engine cannot serve exactly (a site, a position rule, an architecture)."""


def check_site(name: str, n_layers: int) -> str:
    """The site's canonical name if vLLM serves it; else one line naming what works instead."""
    site = parse_site(name, n_layers)
    if site.kind in ("attn_in", "mlp_in"):
        raise VllmUnsupportedError(
            f"site {site} is not served by the vLLM engine: vLLM fuses the residual add into the norm, so a "
            f"sublayer's own input cannot change without the stream; use resid_pre/resid_mid (the stream) "
            f"or engine='hf'"
        )
    if site.kind not in VLLM_SITE_KINDS:
        raise VllmUnsupportedError(
            f"site {site} is not served by the vLLM engine; it serves {', '.join(VLLM_SITE_KINDS)} (or use engine='hf')"
        )
    return str(site)


def check_positions(positions: object) -> str:
    """A position rule vLLM serves; a bool mask (padded columns) is refused in one line."""
    if isinstance(positions, str) and positions in VLLM_POSITIONS:
        return positions
    if isinstance(positions, str):
        raise VllmUnsupportedError(f"unknown positions {positions!r}; use one of {', '.join(VLLM_POSITIONS)}")
    raise VllmUnsupportedError(
        "a bool position mask is not served by the vLLM engine (vLLM has no padded columns); use one of "
        f"{', '.join(VLLM_POSITIONS)} or engine='hf'"
    )


def check_model_type(model_type: str) -> None:
    if model_type not in VLLM_MODEL_TYPES:
        raise VllmUnsupportedError(
            f"the vLLM engine serves the model types {', '.join(VLLM_MODEL_TYPES)}, not {model_type!r}; "
            "use engine='hf' for this model"
        )


def _stream(hidden: Tensor, residual: Tensor | None) -> Tensor:
    return hidden if residual is None else hidden + residual


def _layer_args(args: tuple, kwargs: dict) -> tuple[Tensor, Tensor | None]:
    hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[1]
    residual = kwargs["residual"] if "residual" in kwargs else (args[2] if len(args) > 2 else None)
    return hidden, residual


def _pre_layer_reader(args: tuple, kwargs: dict) -> Tensor:
    return _stream(*_layer_args(args, kwargs))


def _pre_layer_writer(rest: tuple, fn: Callable[[Tensor], Tensor]) -> Any:
    args, kwargs = rest
    if "hidden_states" in kwargs:
        return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}
    return (args[0], fn(args[1]), *args[2:]), kwargs


def _post_pair_reader(args: tuple, out: tuple) -> Tensor:
    return _stream(out[0], out[1])


def _post_pair_writer(rest: tuple, fn: Callable[[Tensor], Tensor]) -> Any:
    out = rest[1]
    return (fn(out[0]), *out[1:])


def _post_tensor_reader(args: tuple, out: Tensor) -> Tensor:
    return out


def _post_tensor_writer(rest: tuple, fn: Callable[[Tensor], Tensor]) -> Any:
    return fn(rest[1])


def _norm_residual_reader(args: tuple, out: tuple) -> Tensor:
    return out[1]


def hook_points(inner: nn.Module, name: str) -> list[tuple[nn.Module, str, Reader | None, Writer | None]]:
    """(module, "pre" | "post", reader, writer) for a site in vLLM's decoder stack `inner` (empty when this
    pipeline stage does not hold the site's layer)."""
    layers = inner.layers
    site = parse_site(name, len(layers))
    start = int(getattr(inner, "start_layer", 0))
    end = int(getattr(inner, "end_layer", len(layers)))
    if site.kind == "embed":
        return [(inner.embed_tokens, "post", _post_tensor_reader, _post_tensor_writer)] if start == 0 else []
    layer = len(layers) - 1 if site.kind == "final" else site.layer
    assert layer is not None
    if not start <= layer < end:
        return []
    block = layers[layer]
    if site.kind == "resid_pre":
        return [(block, "pre", _pre_layer_reader, _pre_layer_writer)]
    if site.kind in ("resid_post", "final"):
        return [(block, "post", _post_pair_reader, _post_pair_writer)]
    if site.kind == "attn_out":
        return [(block.self_attn, "post", _post_tensor_reader, _post_tensor_writer)]
    if site.kind == "mlp_out":
        return [(block.mlp, "post", _post_tensor_reader, _post_tensor_writer)]
    if site.kind == "resid_mid":  # read after the post-attention norm's fused add; add through the attention write
        return [
            (block.post_attention_layernorm, "post", _norm_residual_reader, None),
            (block.self_attn, "post", None, _post_tensor_writer),
        ]
    raise VllmUnsupportedError(str(Site(site.kind, site.layer)) + " is not served by the vLLM engine")
