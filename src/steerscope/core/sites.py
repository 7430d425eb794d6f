"""Site names: every place in the residual stream, named the TransformerLens way.

`embed`, `pos_embed`, `resid_pre.{l}`, `attn_in.{l}`, `attn_out.{l}`, `resid_mid.{l}`, `mlp_in.{l}`,
`mlp_out.{l}`, `resid_post.{l}`, `final`. `attn_in` / `mlp_in` are a sublayer's own residual input (editing
them changes only that sublayer); `attn_out` / `mlp_out` are what a sublayer adds to the stream. `embed` is
the token embedding (TransformerLens `hook_embed`) and `pos_embed` the learned position embedding
(`hook_pos_embed`, GPT-2 only); their sum is `resid_pre.0`. On models without learned positions `embed`
is `resid_pre.0` (with any embedding scale, as Gemma's).

Every site also goes by its TransformerLens hook name: `hook_embed`, `hook_pos_embed`,
`blocks.{l}.hook_{kind}` for each per-layer kind (TransformerLens's `hook_attn_in` holds one copy per head,
[batch, pos, head, d_model]; ours is the one tensor [batch, pos, d_model] they copy). `final` is
`blocks.{L-1}.hook_resid_post`. Other TransformerLens hooks (`ln_final.hook_normalized`, `hook_q`, ...) are
not residual-stream sites and are refused, saying why.

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
GLOBAL_KINDS = ("embed", "pos_embed", "final")
_ORDER = {kind: i for i, kind in enumerate(LAYER_KINDS)}
_PATTERN = re.compile(r"^([a-z_]+)\.(-?\d+)$")
_HOOK = re.compile(r"^blocks\.(\d+)\.hook_([a-z_]+)$")
_TL_GLOBAL = {"hook_embed": "embed", "hook_pos_embed": "pos_embed"}
_TL_LOOK = re.compile(r"^(blocks\.\d+\.|ln_final\.|unembed\.|embed\.|pos_embed\.)?hook_[a-z_]+$|^blocks\.\d+\.")
_TL_REFUSED = {
    "ln_final.hook_normalized": (
        "it is the final norm's output, which no steerscope site holds: the last site is `final`, the residual "
        "the final norm reads (TransformerLens blocks.{L-1}.hook_resid_post); the norm's output is not in the "
        "residual basis (its weight rescales every direction), so steering or ablating there is another operation"
    ),
    "ln_final.hook_scale": "it is the final norm's scale factor [batch, pos, 1], not a residual-stream activation",
}


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
        if self.kind in ("embed", "pos_embed"):
            return (-1, 0 if self.kind == "embed" else 1)
        if self.kind == "final":
            return (1 << 30, 0)
        if self.kind == "module":
            return (0, 0)  # module sites keep the order they were given in
        assert self.layer is not None, f"per-layer site {self.kind} without a layer"
        return (self.layer, _ORDER[self.kind])


def parse_site(name: str | Site, n_layers: int, parallel: bool = False, pos_embed: bool = False) -> Site:
    """Parse and validate a site name (ours or its TransformerLens hook name) against a model with `n_layers`
    blocks; `pos_embed`: the model has learned position embeddings (GPT-2)."""
    if isinstance(name, Site):
        name = str(name)
    if not isinstance(name, str):
        raise SiteError(f"a site must be a string such as 'resid_pre.3', got {type(name).__name__}")
    name = from_transformer_lens(name)
    if name == "pos_embed" and not pos_embed:
        raise SiteError(
            "site 'pos_embed' (TransformerLens hook_pos_embed) exists only on models with learned position "
            "embeddings (GPT-2); this model has none (its positions are rotary, inside attention)"
        )
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
    """A site name (ours or TransformerLens's) taken apart without a model to check it against."""
    name = from_transformer_lens(name)
    if name in GLOBAL_KINDS:
        return Site(name)
    match = _PATTERN.match(name)
    if not match or match.group(1) not in LAYER_KINDS:
        raise SiteError(f"{name!r} is not a site name such as 'resid_pre.3'")
    return Site(match.group(1), int(match.group(2)))


def embedding_names(pos_embed: bool = False) -> list[str]:
    """The sites that write the embedding into the stream: `embed`, and `pos_embed` where positions are learned."""
    return ["embed", "pos_embed"] if pos_embed else ["embed"]


def all_site_names(n_layers: int, parallel: bool = False, pos_embed: bool = False) -> list[str]:
    """Every site of a model, in forward-pass order."""
    kinds = [k for k in LAYER_KINDS if not (parallel and k == "resid_mid")]
    layers = (site_name(k, layer) for layer in range(n_layers) for k in kinds)
    return [*embedding_names(pos_embed), *layers, "final"]


def residual_write_names(n_layers: int, pos_embed: bool = False) -> list[str]:
    """Every site that writes into the residual stream: the embedding(s) and each sublayer output."""
    writes = (site_name(k, layer) for layer in range(n_layers) for k in ("attn_out", "mlp_out"))
    return [*embedding_names(pos_embed), *writes]


def from_transformer_lens(name: str) -> str:
    """steerscope's name for a TransformerLens hook name ('blocks.3.hook_mlp_out' -> 'mlp_out.3', 'hook_embed' ->
    'embed'); a name that is not a TransformerLens hook comes back unchanged, one that is but names no site
    steerscope has (hook_q, ln_final.hook_normalized, ...) is a SiteError saying why."""
    if name in _TL_GLOBAL:
        return _TL_GLOBAL[name]
    match = _HOOK.match(name)
    if match and match.group(2) in LAYER_KINDS:
        return site_name(match.group(2), int(match.group(1)))
    if name in _TL_REFUSED:
        raise SiteError(f"TransformerLens hook {name!r} is not a steerscope site: {_TL_REFUSED[name]}")
    if _TL_LOOK.match(name):
        raise SiteError(
            f"TransformerLens hook {name!r} is not a residual-stream site. steerscope takes hook_embed, "
            "hook_pos_embed (GPT-2) and blocks.L.hook_{" + ", ".join(LAYER_KINDS) + "}, or its own names "
            "(resid_pre.3, ...)"
        )
    return name


def site_to_hook(site: str | None) -> str | None:
    """TransformerLens hook name of a site: 'resid_pre.10' -> 'blocks.10.hook_resid_pre', 'embed' -> 'hook_embed'.

    Anything else (`final`, a module path) is returned unchanged."""
    if site is None:
        return None
    for hook, ours in _TL_GLOBAL.items():
        if site == ours:
            return hook
    match = _PATTERN.match(site)
    if match and match.group(1) in LAYER_KINDS:
        return f"blocks.{match.group(2)}.hook_{match.group(1)}"
    return site


def hook_to_site(hook_name: str | None) -> str | None:
    """The inverse of `site_to_hook`: 'blocks.10.hook_resid_pre' -> 'resid_pre.10'; others unchanged (a
    TransformerLens hook that names no steerscope site is a SiteError)."""
    return None if hook_name is None else from_transformer_lens(hook_name)


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
