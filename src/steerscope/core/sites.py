"""Site names: every place in the residual stream, named the TransformerLens way.

`embed`, `resid_pre.{l}`, `attn_in.{l}`, `attn_out.{l}`, `resid_mid.{l}`, `mlp_in.{l}`, `mlp_out.{l}`,
`resid_post.{l}`, `final`. `attn_in` / `mlp_in` are a sublayer's own residual input (editing them
changes only that sublayer); `attn_out` / `mlp_out` are what a sublayer adds to the stream.

On any other torch module (e.g. a maze policy) a site is a module path: `embedder.block2.res1` is that
module's output, `embedder.block2.res1:in` its (first) input.

This is the only module that builds or parses a site string (`site_name`, `parse_site`, `layer_of`),
and the only one that maps site names to TransformerLens hook names (`site_to_hook`, `hook_to_site`).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from .errors import SteerscopeError

LAYER_KINDS = ("resid_pre", "attn_in", "attn_out", "resid_mid", "mlp_in", "mlp_out", "resid_post")
GLOBAL_KINDS = ("embed", "final")
_ORDER = {kind: i for i, kind in enumerate(LAYER_KINDS)}
_PATTERN = re.compile(r"^([a-z_]+)\.(-?\d+)$")
_HOOK = re.compile(r"^blocks\.(\d+)\.hook_([a-z_]+)$")


class SiteError(SteerscopeError, ValueError):
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
        assert self.layer is not None, f"per-layer site {self.kind} without a layer"
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


def site_name(kind: str, layer: int | None = None) -> str:
    """Build a site name: `site_name("resid_pre", 3)` is 'resid_pre.3'; `site_name("final")` is 'final'."""
    if kind in GLOBAL_KINDS:
        if layer is not None:
            raise SiteError(f"site {kind!r} has no layer; got layer {layer}")
        return kind
    if kind not in LAYER_KINDS:
        raise SiteError(f"unknown site kind {kind!r}; kinds: {', '.join(GLOBAL_KINDS + LAYER_KINDS)}")
    if layer is None or isinstance(layer, bool) or int(layer) != layer or layer < 0:
        raise SiteError(f"site kind {kind!r} needs a layer number >= 0, got {layer!r}")
    return f"{kind}.{int(layer)}"


def layer_sites(kind: str, n_layers: int) -> list[str]:
    """`kind` at every layer: ['resid_pre.0', ..., 'resid_pre.{L-1}']."""
    return [site_name(kind, layer) for layer in range(n_layers)]


def layer_of(name: str | Site) -> int:
    """The layer number of a per-layer site name ('mlp_out.7' -> 7)."""
    site = name if isinstance(name, Site) else split_site(name)
    if site.layer is None:
        raise SiteError(f"site {str(name)!r} has no layer")
    return site.layer


def split_site(name: str) -> Site:
    """A site name taken apart without a model to check it against."""
    if name in GLOBAL_KINDS:
        return Site(name)
    match = _PATTERN.match(name)
    if not match or match.group(1) not in LAYER_KINDS:
        raise SiteError(f"{name!r} is not a site name such as 'resid_pre.3'")
    return Site(match.group(1), int(match.group(2)))


def all_site_names(n_layers: int, parallel: bool = False) -> list[str]:
    """Every site of a model, in forward-pass order."""
    kinds = [k for k in LAYER_KINDS if not (parallel and k == "resid_mid")]
    return ["embed", *(site_name(k, layer) for layer in range(n_layers) for k in kinds), "final"]


def residual_write_names(n_layers: int) -> list[str]:
    """Every site that writes into the residual stream: the embedding and each sublayer output."""
    return ["embed", *(site_name(k, layer) for layer in range(n_layers) for k in ("attn_out", "mlp_out"))]


def site_to_hook(site: str | None) -> str | None:
    """TransformerLens hook name of a site: 'resid_pre.10' -> 'blocks.10.hook_resid_pre', 'embed' -> 'hook_embed'.

    Anything that is not a per-layer site name (or 'embed') is returned unchanged."""
    if site is None:
        return None
    if site == "embed":
        return "hook_embed"
    match = _PATTERN.match(site)
    if match and match.group(1) in LAYER_KINDS:
        return f"blocks.{match.group(2)}.hook_{match.group(1)}"
    return site


def hook_to_site(hook_name: str | None) -> str | None:
    """The inverse of `site_to_hook`: 'blocks.10.hook_resid_pre' -> 'resid_pre.10'; others unchanged."""
    if hook_name is None:
        return None
    if hook_name == "hook_embed":
        return "embed"
    match = _HOOK.match(hook_name)
    if match and match.group(2) in LAYER_KINDS:
        return site_name(match.group(2), int(match.group(1)))
    return hook_name


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
