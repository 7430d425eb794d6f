"""What finding an intervention cost: model tokens read and a FLOP estimate, for amortized comparisons.

A forward pass that stops after `site` costs about 2 x (parameters of the blocks run before the site
is read) FLOPs per token (Kaplan et al.'s 2N rule; attention's quadratic term and the embedding lookup
are left out). The estimate is the same for every method, so ratios between methods are what it is for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .models import LoadedModel
from .sites import parse_site


def blocks_before(lm: LoadedModel, site: str) -> int:
    """How many blocks run before `site` is read: L for resid_pre.L, L + 1 for anything else in block L;
    all of them for a site without a layer number."""
    parsed = parse_site(site, lm.n_layers, lm.adapter.parallel, bool(lm.adapter.pos_embed))
    if parsed.layer is None:
        return lm.n_layers
    return parsed.layer + (0 if parsed.kind == "resid_pre" else 1)


def forward_flops(lm: LoadedModel, sites: Iterable[str], tokens: int) -> float:
    """Estimated FLOPs to read `tokens` tokens up to the deepest of `sites` (2 x block parameters per token)."""
    depth = max((blocks_before(lm, s) for s in sites), default=lm.n_layers)
    params = sum(p.numel() for block in list(lm.blocks)[:depth] for p in block.parameters())
    return 2.0 * params * tokens


def text_tokens(lm: LoadedModel, texts: Sequence[str]) -> int:
    """Tokens the model reads for `texts` (the tokenizer's own special tokens included, no padding)."""
    return int(sum(len(lm.tokenizer(t)["input_ids"]) for t in texts))
