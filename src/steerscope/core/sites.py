"""Site names: every place in the residual stream, named the TransformerLens way.

`embed`, `resid_pre.{l}`, `attn_in.{l}`, `attn_out.{l}`, `resid_mid.{l}`, `mlp_in.{l}`, `mlp_out.{l}`,
`resid_post.{l}`, `final`. `attn_in` / `mlp_in` are a sublayer's own residual input (editing them
changes only that sublayer); `attn_out` / `mlp_out` are what a sublayer adds to the stream.

On any other torch module (e.g. a maze policy) a site is a module path: `embedder.block2.res1` is that
module's output, `embedder.block2.res1:in` its (first) input.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

LAYER_KINDS = ("resid_pre", "attn_in", "attn_out", "resid_mid", "mlp_in", "mlp_out", "resid_post")
GLOBAL_KINDS = ("embed", "final")
_ORDER = {kind: i for i, kind in enumerate(LAYER_KINDS)}
_PATTERN = re.compile(r"^([a-z_]+)\.(-?\d+)$")


class SiteError(ValueError):
    """A site name that does not exist in this model."""


@dataclass(frozen=True)
class Site:
    """A parsed site: kind plus layer (None for `embed` and `final`), or kind 'module' plus a module path."""

    kind: str
    layer: int | None = None
    path: str = ""

    def __str__(self) -> str:
        if self.kind == "module":
            return self.path
        return self.kind if self.layer is None else f"{self.kind}.{self.layer}"

    @property
    def order(self) -> tuple[int, int]:
        """Position in forward-pass order (used to stop a read after the deepest site)."""
        if self.kind == "embed":
            return (-1, 0)
        if self.kind == "final":
            return (1 << 30, 0)
        if self.kind == "module":
            return (0, 0)  # module sites keep the order they were given in
        return (self.layer, _ORDER[self.kind])


def parse_site(name: str | Site, n_layers: int, parallel: bool = False) -> Site:
    """Parse and validate a site name against a model with `n_layers` blocks."""
    if isinstance(name, Site):
        name = str(name)
    if not isinstance(name, str):
        raise SiteError(f"a site must be a string such as 'resid_pre.3', got {type(name).__name__}")
    if name in GLOBAL_KINDS:
        return Site(name)
    match = _PATTERN.match(name)
    if not match or match.group(1) not in LAYER_KINDS:
        raise SiteError(
            f"unknown site {name!r}. Expected one of {', '.join(GLOBAL_KINDS)} or "
            f"<kind>.<layer> with kind in {', '.join(LAYER_KINDS)} (e.g. 'resid_pre.3')."
        )
    kind, layer = match.group(1), int(match.group(2))
    if not 0 <= layer < n_layers:
        raise SiteError(f"site {name!r}: layer {layer} is out of range; this model has layers 0..{n_layers - 1}.")
    if parallel and kind == "resid_mid":
        raise SiteError(
            f"site {name!r} does not exist in a parallel-residual block (attention and MLP read the same "
            "input). Use resid_pre / attn_out / mlp_out / resid_post instead."
        )
    return Site(kind, layer)


def all_site_names(n_layers: int, parallel: bool = False) -> list[str]:
    """Every site of a model, in forward-pass order."""
    kinds = [k for k in LAYER_KINDS if not (parallel and k == "resid_mid")]
    return ["embed", *(f"{k}.{layer}" for layer in range(n_layers) for k in kinds), "final"]


def parse_module_site(model, name: str | Site) -> Site:
    """Check a module-path site ('a.b.c' = the module's output, 'a.b.c:in' = its input) against a torch module."""
    if isinstance(name, Site):
        name = str(name)
    if not isinstance(name, str):
        raise SiteError(f"a module site must be a module path such as 'block.0', got {type(name).__name__}")
    path, sep, phase = name.partition(":")
    if sep and phase != "in":
        raise SiteError(f"site {name!r}: the only suffix is ':in' (the module's input); without it the output is used")
    paths = [p for p, _ in model.named_modules() if p]
    if path not in paths:
        near = difflib.get_close_matches(path, paths, n=4) or paths[:4]
        raise SiteError(
            f"{type(model).__name__} has no module {path!r}. Sites on a plain torch module are module paths from "
            f"model.named_modules(), e.g. {', '.join(near)}."
        )
    return Site("module", path=name)
