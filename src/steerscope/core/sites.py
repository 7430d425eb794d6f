"""Site names: every place in the residual stream, named the TransformerLens way.

`embed`, `resid_pre.{l}`, `attn_in.{l}`, `attn_out.{l}`, `resid_mid.{l}`, `mlp_in.{l}`, `mlp_out.{l}`,
`resid_post.{l}`, `final`. `attn_in` / `mlp_in` are a sublayer's own residual input (editing them
changes only that sublayer); `attn_out` / `mlp_out` are what a sublayer adds to the stream.
"""

from __future__ import annotations

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
    """A parsed site: kind plus layer (None for `embed` and `final`)."""

    kind: str
    layer: int | None = None

    def __str__(self) -> str:
        return self.kind if self.layer is None else f"{self.kind}.{self.layer}"

    @property
    def order(self) -> tuple[int, int]:
        """Position in forward-pass order (used to stop a read after the deepest site)."""
        if self.kind == "embed":
            return (-1, 0)
        if self.kind == "final":
            return (1 << 30, 0)
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
