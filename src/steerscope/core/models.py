"""Model loading: the embedded default, hub ids, local folders and local GGUF files."""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

from .adapters import Adapter, adapter_for_config, get_module
from .errors import SteerscopeError
from .sites import all_site_names, split_site


class ModelLoadError(SteerscopeError, RuntimeError):
    """A model could not be loaded; the message says why and what to do."""


@dataclass
class LoadedModel:
    """A Hugging Face causal LM with its tokenizer and architecture adapter.

    The model itself is untouched: steerscope attaches hooks to its modules and removes them.
    """

    model: Any  # a transformers PreTrainedModel (an nn.Module)
    tokenizer: Any  # its tokenizer, or None
    adapter: Adapter
    name: str
    source: str = ""
    _fingerprint: str | None = field(default=None, repr=False)

    @classmethod
    def from_hf(cls, model: Any, tokenizer: Any = None, name: str | None = None) -> LoadedModel:
        """Wrap an already loaded Hugging Face causal LM (e.g. one you built or fine-tuned)."""
        adapter = adapter_for_config(model.config)
        if tokenizer is not None:
            _prepare_tokenizer(tokenizer)
        name = name or getattr(model.config, "_name_or_path", "") or model.config.model_type
        return cls(model=model.eval(), tokenizer=tokenizer, adapter=adapter, name=name, source="in-memory")

    @property
    def config(self):
        return self.model.config

    def __repr__(self) -> str:
        """One line: name, family, depth and width (not the module tree)."""
        return (
            f"LoadedModel({self.name}: {self.adapter.describe()}, {self.n_layers} layers, d_model {self.d_model}, "
            f"from {self.source or '?'})"
        )

    @property
    def blocks(self) -> nn.ModuleList:
        return cast(nn.ModuleList, get_module(self.model, self.adapter.layers))

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def d_model(self) -> int:
        return int(self.config.hidden_size)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the device of the weights, or for a model split over devices by accelerate
        (`device_map`) the device its input embedding runs on."""
        return input_device(self.model)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def site_names(self) -> list[str]:
        return all_site_names(self.n_layers, self.adapter.parallel, bool(self.adapter.pos_embed))

    def fingerprint(self) -> str:
        """A short hash of the architecture and of every weight as loaded (name, shape, dtype and all bytes).

        Computed once per model (about 0.3 s for a 135M model on a CPU) and kept; editing the weights in place
        (e.g. `orthogonalize`) resets it.
        """
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model, self.n_layers)
        return self._fingerprint

    def tokenize(self, texts: str | list[str], **kwargs) -> dict[str, torch.Tensor]:
        """Tokenize a batch with left padding, on the model's device."""
        if self.tokenizer is None:
            raise ValueError("this LoadedModel has no tokenizer; pass token ids directly")
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            raise ValueError("got an empty list of prompts; pass at least one string")
        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True, **kwargs)
        return {k: v.to(self.device) for k, v in enc.items()}


def input_device(model: nn.Module) -> torch.device:
    """The device a model's inputs go to: its input embedding's execution device when accelerate dispatched it
    (weights offloaded to CPU RAM or disk sit on the meta device between calls), else its first weight's device."""
    get_embeddings = getattr(model, "get_input_embeddings", None)
    embed = get_embeddings() if callable(get_embeddings) else None
    where = getattr(getattr(embed, "_hf_hook", None), "execution_device", None)
    if where is not None:
        return torch.device(where)
    return next(model.parameters()).device


def weights_fingerprint(model: nn.Module, n_layers: int) -> str:
    """16 hex digits of a sha256 over the config basics and every parameter tensor's name, shape, dtype and bytes.

    Weights that accelerate offloaded (to CPU RAM or disk) are read back module by module, so a model split over
    devices has the fingerprint of the same model in one piece.
    """
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    cfg = {k: getattr(config, k, None) for k in ("model_type", "hidden_size", "vocab_size")}
    h.update(json.dumps({**cfg, "n_layers": n_layers}, sort_keys=True).encode())
    by_module: dict[str, list[str]] = {}  # named_parameters' order (ties counted once), grouped by module
    for name, _ in model.named_parameters():
        owner, _, leaf = name.rpartition(".")
        by_module.setdefault(owner, []).append(leaf)
    with torch.no_grad():
        for owner, leaves in by_module.items():
            module = model.get_submodule(owner)
            with _weights_in_memory(module):
                for leaf in leaves:
                    param = getattr(module, leaf)
                    h.update(f"{owner + '.' if owner else ''}{leaf}:{tuple(param.shape)}:{param.dtype}".encode())
                    flat = param.detach().reshape(-1).contiguous().cpu()
                    h.update(flat.view(torch.uint8).numpy().data)
    return h.hexdigest()[:16]


def _weights_in_memory(module: nn.Module) -> contextlib.AbstractContextManager:
    """A module's offloaded weights loaded for the block (accelerate), or nothing to do."""
    if getattr(module, "_hf_hook", None) is None:
        return contextlib.nullcontext()
    from accelerate.utils import align_module_device

    return align_module_device(module)


def _prepare_tokenizer(tokenizer) -> None:
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def model_summary(lm: LoadedModel) -> dict[str, str]:
    """What `steerscope info` shows: family, size, dtype, fingerprint, and the site names in short."""
    names = lm.site_names()
    kinds = [s.kind for s in map(split_site, names) if s.layer == 0]
    return {
        "family": lm.adapter.describe(),
        "layers": str(lm.n_layers),
        "d_model": str(lm.d_model),
        "parameters": f"{lm.n_params():,}",
        "dtype": str(lm.dtype).removeprefix("torch."),
        "fingerprint": lm.fingerprint(),
        "sites": f"({len(names)}): embed, {{{', '.join(kinds)}}}.{{0..{lm.n_layers - 1}}}, final",
    }
