"""Weight orthogonalization: remove a direction from every matrix and bias that writes into the residual
stream, so the edited model never represents it, and export it as an ordinary Hugging Face folder.

For a unit direction d, each write W (output = W x + b) becomes (I - d d^T) W and b - (b.d) d; embedding rows
(token and learned position embeddings) lose their component along d. Tied embeddings are untied first, so
the unembedding is unchanged. The result equals inference-time directional ablation
(`steerscope.project_out` at every residual write) up to floating-point error. Sandwich-norm families
(Gemma 2/3) normalize a sublayer's output after the matrix, so no weight edit can remove d exactly: they are
refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from .adapters import get_module
from .errors import SteerscopeError
from .io import atomic_folder
from .models import LoadedModel


class OrthogonalizationError(SteerscopeError, ValueError):
    """The model cannot be orthogonalized exactly; the message says why."""


def _unit(direction: Tensor, d_model: int) -> Tensor:
    if direction.dim() != 1 or direction.shape[0] != d_model:
        raise ValueError(f"direction has shape {tuple(direction.shape)}; expected [{d_model}]")
    if not direction.is_floating_point() or direction.norm() == 0:
        raise ValueError("direction must be a non-zero floating-point vector")
    return direction.double() / direction.double().norm()


def _project_rows(weight: Tensor, unit: Tensor) -> None:
    """Rows of [*, d] lose their component along unit (embeddings; Conv1D weights stored [in, d])."""
    w = weight.data.double()
    weight.data.copy_(w - (w @ unit).unsqueeze(-1) * unit)


def _project_columns(weight: Tensor, unit: Tensor) -> None:
    """A Linear weight [d, in]: its outputs lose their component along unit."""
    w = weight.data.double()
    weight.data.copy_(w - unit.unsqueeze(-1) * (unit @ w))


def _project_write(module: Any, unit: Tensor) -> None:
    if type(module).__name__ == "Conv1D":  # GPT-2: output = x @ W + b, W is [in, out]
        _project_rows(module.weight, unit)
    elif isinstance(module, nn.Linear):
        _project_columns(module.weight, unit)
    else:
        raise OrthogonalizationError(f"unexpected residual write module {type(module).__name__}")
    if getattr(module, "bias", None) is not None:
        b = module.bias.data.double()
        module.bias.data.copy_(b - (b @ unit) * unit)


def _weight(model: nn.Module, path: str) -> Tensor:
    return cast(Tensor, get_module(model, path).weight)


def untie_embeddings(lm: LoadedModel) -> bool:
    """Give the unembedding its own copy of tied weights; returns whether they were tied."""
    model = lm.model
    head = model.get_output_embeddings()
    emb: Any = get_module(model, lm.adapter.embed)
    if head is None or head.weight.data_ptr() != emb.weight.data_ptr():
        return False
    head.weight = nn.Parameter(emb.weight.detach().clone())
    model.config.tie_word_embeddings = False
    if hasattr(model.config, "get_text_config"):
        model.config.get_text_config().tie_word_embeddings = False
    return True


def orthogonalize(lm: LoadedModel, direction: Tensor) -> dict:
    """Edit `lm.model` in place; returns a record of what was changed."""
    if lm.adapter.sandwich:
        raise OrthogonalizationError(
            f"{lm.adapter.family} normalizes each sublayer's output (sandwich norms) before adding it to the "
            "stream, so removing a direction from the weights cannot remove it from the stream. Use "
            "inference-time ablation (steerscope.project_out) instead."
        )
    unit = _unit(direction.detach().cpu(), lm.d_model).to(lm.device)
    tied = untie_embeddings(lm)
    edited = [lm.adapter.embed]
    with torch.no_grad():
        _project_rows(_weight(lm.model, lm.adapter.embed), unit)
        if lm.adapter.pos_embed:
            _project_rows(_weight(lm.model, lm.adapter.pos_embed), unit)
            edited.append(lm.adapter.pos_embed)
        for n, block in enumerate(lm.blocks):
            for path in (lm.adapter.attn_proj, lm.adapter.mlp_proj):
                _project_write(get_module(block, path), unit)
                edited.append(f"{lm.adapter.layers}.{n}.{path}")
    lm._fingerprint = None
    return {
        "direction_sha256": hashlib.sha256(unit.float().cpu().numpy().tobytes()).hexdigest()[:16],
        "untied_embeddings": tied,
        "edited_modules": len(edited),
    }


def export(lm: LoadedModel, out: str | Path, record: dict, overwrite: bool = False) -> Path:
    """Write the edited model and tokenizer as a Hugging Face folder, atomically."""
    out = Path(out)
    with atomic_folder(out, replace=overwrite) as tmp:
        lm.model.save_pretrained(tmp)
        if lm.tokenizer is not None:
            lm.tokenizer.save_pretrained(tmp)
        (tmp / "steerscope_orthogonalization.json").write_text(
            json.dumps({**record, "source_model": lm.name}, indent=2) + "\n"
        )
    return out
