"""Where the sites of a model are: one small interface the hook primitives use for every kind of model.

`LanguageModelSites` serves a LoadedModel (site names like `resid_pre.3`, found through its adapter);
`ModuleSites` serves any plain torch module (module paths like `embedder.block2.res1`, or `...:in` for
a module's input). `locator_for(model)` is the one place that tells the two apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch
from torch import Tensor, nn

from .adapters import get_module
from .forward import run_forward
from .models import LoadedModel
from .positions import PositionTracker
from .sites import Site, SiteError, parse_module_site, parse_site, residual_write_names

__all__ = ["LanguageModelSites", "ModuleSites", "SiteLocator", "locator_for"]


class SiteLocator(Protocol):
    """What the hook primitives need to know about a model."""

    def parse(self, name: str | Site) -> Site:
        """Check a site name against the model."""
        ...

    def locate(self, site: Site) -> tuple[nn.Module, str]:
        """The module holding a site and the phase: 'pre' reads its input, 'post' its output."""
        ...

    def block(self, layer: int) -> nn.Module:
        """The transformer block of a layer (only language models have blocks)."""
        ...

    def check_vector(self, site: Site, value: Tensor, allow_positionwise: bool) -> Tensor:
        """`value` checked to fit the activations at `site`, on the model's device and dtype."""
        ...

    def forward(self, inputs: Mapping[str, Tensor] | Tensor) -> object:
        """One forward pass on `inputs`."""
        ...

    def device(self) -> torch.device | None:
        """The one device reads come back on (the model's input device), or None to keep each where it is."""
        ...

    def track_positions(self) -> PositionTracker:
        """A tracker of token positions (language models only)."""
        ...

    def residual_writes(self) -> list[str]:
        """Every site that writes into the residual stream (language models only)."""
        ...


class LanguageModelSites:
    """Sites of a LoadedModel: TransformerLens-style names mapped to modules by its adapter."""

    def __init__(self, lm: LoadedModel):
        self.lm = lm

    def parse(self, name: str | Site) -> Site:
        return parse_site(name, self.lm.n_layers, self.lm.adapter.parallel, bool(self.lm.adapter.pos_embed))

    def locate(self, site: Site) -> tuple[nn.Module, str]:
        lm, a = self.lm, self.lm.adapter
        if site.kind in ("embed", "pos_embed") and a.pos_embed:  # learned positions: each embedding's own output
            return get_module(lm.model, a.embed if site.kind == "embed" else a.pos_embed), "post"
        if site.kind == "embed":  # the whole embedding, as block 0 reads it (Gemma's scale included)
            return lm.blocks[0], "pre"
        if site.kind == "final":
            return get_module(lm.model, a.final_norm), "pre"
        if site.layer is None:
            raise SiteError(f"site {site} is not a site of a language model")
        block = lm.blocks[site.layer]
        table = {
            "resid_pre": (block, "pre"),
            "attn_in": (a.attn_norm, "pre"),
            "attn_out": (a.attn_write, "post"),
            "resid_mid": (a.mlp_norm, "pre"),
            "mlp_in": (a.mlp_norm, "pre"),
            "mlp_out": (a.mlp_write, "post"),
            "resid_post": (block, "post"),
        }
        where, phase = table[site.kind]
        return (where if isinstance(where, nn.Module) else get_module(block, str(where))), phase

    def block(self, layer: int) -> nn.Module:
        return self.lm.blocks[layer]

    def check_vector(self, site: Site, value: Tensor, allow_positionwise: bool) -> Tensor:
        d = self.lm.d_model
        ok = (value.dim() == 1 and value.shape[0] == d) or (
            allow_positionwise and value.dim() == 2 and value.shape[1] == d and value.shape[0] > 0
        )
        if not ok:
            expected = f"[{d}]" + (f" or position-wise [T, {d}]" if allow_positionwise else "")
            raise ValueError(f"vector for {site} has shape {tuple(value.shape)}; expected {expected}")
        return value.to(device=self.lm.device, dtype=self.lm.dtype)

    def forward(self, inputs: Mapping[str, Tensor] | Tensor) -> object:
        return run_forward(self.lm, inputs)

    def device(self) -> torch.device:
        return self.lm.device

    def track_positions(self) -> PositionTracker:
        base = get_module(self.lm.model, self.lm.adapter.layers.rsplit(".", 1)[0])
        return PositionTracker(base)

    def residual_writes(self) -> list[str]:
        return residual_write_names(self.lm.n_layers, bool(self.lm.adapter.pos_embed))


class ModuleSites:
    """Sites of a plain torch module: module paths from `named_modules()`."""

    def __init__(self, module: nn.Module):
        self.module = module

    def parse(self, name: str | Site) -> Site:
        return parse_module_site(self.module, name)

    def locate(self, site: Site) -> tuple[nn.Module, str]:
        path, _, phase = site.path.partition(":")
        return get_module(self.module, path), "pre" if phase else "post"

    def block(self, layer: int) -> nn.Module:
        raise SiteError("a plain torch module has no transformer blocks; name a module path instead")

    def check_vector(self, site: Site, value: Tensor, allow_positionwise: bool) -> Tensor:
        # the shape is checked against the activation when it arrives
        ref = next(self.module.parameters(), None)
        return value if ref is None else value.to(device=ref.device, dtype=ref.dtype)

    def forward(self, inputs: Mapping[str, Tensor] | Tensor) -> object:
        return self.module(inputs)

    def device(self) -> torch.device | None:
        return None

    def track_positions(self) -> PositionTracker:
        raise ValueError("token positions need a language model; on a plain torch module use positions='all'")

    def residual_writes(self) -> list[str]:
        raise ValueError("name the sites on a plain torch module, e.g. sites=['block.0']")


def locator_for(model: LoadedModel | nn.Module | SiteLocator) -> SiteLocator:
    """The locator of a LoadedModel, of a plain torch module, or the locator itself."""
    if isinstance(model, LoadedModel):
        return LanguageModelSites(model)
    if isinstance(model, nn.Module):
        return ModuleSites(model)
    if all(hasattr(model, m) for m in ("parse", "locate", "check_vector", "forward", "device")):
        return model
    raise TypeError(f"expected a LoadedModel or a torch module, got {type(model).__name__}")
