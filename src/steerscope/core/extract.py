"""Extraction: the activations a method, a trainer or an analysis reads from a model, in one place.

- `text_vectors`: one activation per text at each site, read at its last token, or the mean or the
  maximum over its real tokens (optionally after a per-token transform such as an SAE's encoder).
- `mean_activations`: running float64 means over tokens (or last tokens); nothing but the sums is kept.
- `site_activations`: every position after the first of token sequences at one site (SAE training data).

Every reader is batched, reads all its sites in one pass and stops after the deepest one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

from .forward import run_forward
from .hooks import SiteSpec, capture, resolve_sites, track_positions
from .hooks import read as read_hooks
from .models import LoadedModel
from .validate import whole

__all__ = ["READS", "mean_activations", "site_activations", "text_vectors"]

#: how `text_vectors` reduces a text's tokens to one vector ("answer" is "last": an A/B item's answer letter)
READS = ("last", "answer", "mean", "max")


def text_vectors(
    lm: LoadedModel,
    texts: Sequence[str],
    sites: Sequence[str],
    read: str = "last",
    batch_size: int = 8,
    sink: Callable[[str, Tensor], None] | None = None,
    transform: Callable[[Tensor], Tensor] | None = None,
    skip_first: bool = False,
) -> dict[str, Tensor] | None:
    """One activation per text at each site ([N, d] float32), or handed batch by batch to `sink`.

    `read`: "last" (alias "answer"), "mean" or "max" over the text's real tokens; `skip_first` leaves
    each text's first token out of "mean" and "max" (a row with no token left reads -inf under "max").
    `transform` maps each token's activation (float32, [B, T, d] -> [B, T, f]) before the reduction.
    """
    if read not in READS:
        raise ValueError(f"read must be one of {', '.join(READS)}, got {read!r}")
    if not texts:
        raise ValueError("no texts to read activations from")
    if not isinstance(lm, LoadedModel) and hasattr(lm, "text_vectors"):
        return _from_reader(lm, texts, sites, read, batch_size, sink, transform, skip_first)
    whole(batch_size, "batch_size (--batch-size)", 1)
    names = [str(s) for s in resolve_sites(lm, sites)]
    kept: dict[str, list[Tensor]] = {s: [] for s in names}
    tracker = track_positions(lm)

    def reduce(name: str, act: Tensor) -> None:
        if transform is not None:
            act = transform(act.float())
        if read in ("mean", "max"):
            state = tracker.require()
            real = ~state.is_pad
            if skip_first:
                real = real & (state.index > 0)
            real = real.to(act.device).unsqueeze(-1)
            if read == "mean":
                real = real.to(act.dtype)
                vec = (act * real).sum(1) / real.sum(1)
            else:
                vec = act.masked_fill(~real, -torch.inf).amax(1)
        else:
            vec = act[:, -1]  # left padding: the last column is every row's last token
        vec = vec.float().cpu()
        (sink(name, vec) if sink is not None else kept[name].append(vec))

    try:
        for start in range(0, len(texts), batch_size):
            batch = lm.tokenize(list(texts[start : start + batch_size]))
            with torch.no_grad(), read_hooks(lm, names, reduce=reduce, stop_after_deepest=True):
                run_forward(lm, batch)
    finally:
        tracker.remove()
    return None if sink is not None else {s: torch.cat(v) for s, v in kept.items()}


def _from_reader(reader, texts, sites, read, batch_size, sink, transform, skip_first) -> dict[str, Tensor] | None:
    """text_vectors through another engine that reads activations itself (e.g. `steerscope.vllm.VllmEngine`)."""
    if transform is not None or skip_first:
        raise ValueError(
            f"{type(reader).__name__} reads last/mean/max activations only (no transform, no skip_first); "
            "use a Hugging Face model (engine='hf') for this method"
        )
    got = reader.text_vectors(list(texts), [str(s) for s in sites], read=read, batch_size=batch_size)
    if sink is None:
        return got
    for name, vec in got.items():
        sink(name, vec)
    return None


def mean_activations(
    lm: LoadedModel,
    texts: list[str],
    sites: SiteSpec | Iterable[SiteSpec],
    positions: str = "all",
    batch_size: int = 8,
    skip_first: bool = False,
) -> dict[str, Tensor]:
    """Running float64 mean of activations over tokens (or the last token of each text).

    `positions`: "all" (every real token) or "last" (each text's last token). Padding is never
    counted; `skip_first` also drops position 0 (a BOS outlier). Nothing but the sums is kept.
    """
    if positions not in ("all", "last"):
        raise ValueError(f"positions must be 'all' or 'last', got {positions!r}")
    if not texts:
        raise ValueError("got an empty list of texts; pass at least one")
    whole(batch_size, "batch_size (--batch-size)", 1)
    parsed = resolve_sites(lm, sites)
    sums = {str(s): torch.zeros(lm.d_model, dtype=torch.float64) for s in parsed}
    counts = dict.fromkeys(sums, 0)
    tracker = track_positions(lm)
    weights: Tensor | None = None

    def reduce(name: str, act: Tensor) -> None:
        nonlocal weights
        if weights is None:
            state = tracker.require()
            if positions == "last":
                weights = torch.zeros_like(state.is_pad)
                weights[:, -1] = True
            else:
                weights = ~state.is_pad
                if skip_first:
                    weights = weights & (state.index > 0)
        sel = act[weights.to(act.device)]
        sums[name] += sel.to(torch.float64).sum(0).cpu()
        counts[name] += sel.shape[0]

    try:
        for start in range(0, len(texts), batch_size):
            weights = None
            batch = lm.tokenize(texts[start : start + batch_size])
            with torch.no_grad(), read_hooks(lm, parsed, reduce=reduce, stop_after_deepest=True):
                run_forward(lm, batch)
    finally:
        tracker.remove()
    for name, n in counts.items():
        if n == 0:
            raise ValueError(f"no tokens were selected at {name}; check the texts and positions")
    return {name: sums[name] / counts[name] for name in sums}


def site_activations(lm: LoadedModel, ids: Tensor, site: str, model_batch: int) -> Tensor:
    """Activations at `site` of every position after the first, [n * (T - 1), d] float32."""
    out = []
    for start in range(0, ids.shape[0], model_batch):
        act = capture(lm, ids[start : start + model_batch].to(lm.device), [site])[site]
        out.append(act[:, 1:].reshape(-1, act.shape[-1]).float().cpu())
    return torch.cat(out)
