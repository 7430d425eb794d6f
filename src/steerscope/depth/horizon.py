"""The effective layer horizon: does a sublayer need the whole residual stream, or only the last k layers?

Definition. Let e be the embedding and o_s what sublayer s adds to the stream.
For horizon k, every sublayer s of every layer n >= K (K = k unless `enforce_from` is set) gets as
its residual input the truncated stream: the sum of the outputs of the sublayers that precede s within
layers max(0, n-k) .. n. Other layers are untouched; the final residual is e plus every sublayer's
output in the patched run.

Implementation: only the sublayers' own inputs (`attn_in.{n}`, `mlp_in.{n}`) are replaced, so the
stream itself stays e + sum of (patched) outputs. A window sum is a difference of two stream points:
the stream at s minus the stream entering layer m = max(0, n-k) (which holds e and everything before m).

Speed: every variant leaves the layers below its first patched layer (k, or K with `enforce_from`) exactly
as in the clean run, so a patched pass starts there from the clean run's cached stream
(`core.forward.forward_from`) instead of recomputing them; the readout-only variant runs no block at all.
A sweep over k = 1..L thus costs about (L-1)/2 layer passes plus L unembeddings, not L full passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from ..core.forward import BlockCalls, at_positions, forward_from, record_block_calls
from ..core.hooks import edit, read, run_forward
from ..core.models import LoadedModel
from ..core.sites import layer_of, site_name
from ..core.validate import BadNumberError, whole
from ..evaluate.metrics import clean_reference, next_token_metrics, scored_positions
from ..evaluate.stats import bootstrap_mean_ci

SOURCES = ("clean", "propagated")
FILLS = ("zero", "mean")
POSITION0 = ("patch", "keep")


@dataclass(frozen=True)
class HorizonVariant:
    """Which horizon is measured. The defaults are the clean-sourced horizon.

    source: "clean" (window sums of the clean run's outputs) or "propagated" (of the patched run's
        own outputs, so errors compound: a sliding-window residual stream).
    keep_embedding: add e to every truncated stream.
    fill: "zero" drops out-of-window outputs; "mean" puts their mean over the data in their place
        (the embedding too, unless kept).
    enforce_from: enforce at layers >= K for every k (a control for "layers below k are untouched").
    readout_only: leave every sublayer alone and truncate only the residual the final norm reads.
    position0: "patch" truncates position 0 like every other position; "keep" leaves its stream whole.
    """

    source: str = "clean"
    keep_embedding: bool = False
    fill: str = "zero"
    enforce_from: int | None = None
    readout_only: bool = False
    position0: str = "patch"

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("source", self.source, SOURCES),
            ("fill", self.fill, FILLS),
            ("position0", self.position0, POSITION0),
        ):
            if value not in allowed:
                raise ValueError(f"horizon {name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.readout_only and (self.enforce_from is not None or self.source != "clean"):
            raise ValueError("readout_only truncates only the final residual; it takes no enforce_from or source")
        if self.enforce_from is not None and self.enforce_from < 0:
            raise ValueError(f"enforce_from must be >= 0, got {self.enforce_from}")

    def check(self, n_layers: int) -> None:
        """Refuse an `enforce_from` the model does not have (it would patch nothing and report k* = 1)."""
        if self.enforce_from is not None:
            whole(self.enforce_from, "enforce_from (--enforce-from)", 0, n_layers - 1)

    def describe(self) -> str:
        parts = ["readout-only" if self.readout_only else f"{self.source}-sourced"]
        if self.keep_embedding:
            parts.append("embedding kept")
        if self.fill == "mean":
            parts.append("mean-filled")
        if self.enforce_from is not None:
            parts.append(f"enforced at layers >= {self.enforce_from}")
        parts.append(f"position 0 {'kept whole' if self.position0 == 'keep' else 'patched'}")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


#: the variants `--variants` names, each one change from the clean-sourced default
VARIANT_NAMES = ("clean", "propagated", "mean", "embedding", "readout", "enforce")


def named_variant(name: str, enforce_from: int = 0, position0: str = "patch") -> HorizonVariant:
    """The variant `name` stands for: clean (the default), propagated (errors compound), mean (mean fill),
    embedding (kept in every window), readout (only the final readout truncated), enforce (every layer
    >= `enforce_from` truncated for every k; 0: every layer)."""
    table = {
        "clean": {},
        "propagated": {"source": "propagated"},
        "mean": {"fill": "mean"},
        "embedding": {"keep_embedding": True},
        "readout": {"readout_only": True},
        "enforce": {"enforce_from": enforce_from},
    }
    if name not in table:
        raise ValueError(f"unknown horizon variant {name!r}; choose from {', '.join(VARIANT_NAMES)} (or all)")
    return HorizonVariant(position0=position0, **table[name])


def variant_name(variant: HorizonVariant) -> str:
    """The name of `variant` among the named ones ("custom" for another combination)."""
    for name in VARIANT_NAMES:
        if named_variant(name, variant.enforce_from or 0, variant.position0) == variant:
            return name
    return "custom"


def parse_variants(text: str) -> list[str]:
    """'all' or comma-separated variant names, in the given order, each once."""
    names = list(VARIANT_NAMES) if text.strip() == "all" else [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise ValueError(f"name at least one horizon variant: {', '.join(VARIANT_NAMES)} or all")
    for name in names:
        named_variant(name)  # refuses an unknown name
    if len(set(names)) != len(names):
        raise ValueError(f"a horizon variant is named twice: {','.join(names)}")
    return names


@dataclass
class CleanRun:
    """What one clean forward pass leaves for the patched passes of the same batch."""

    resid_pre: list[Tensor]  # stream entering each layer, L tensors [B, T, d]
    sub_in: dict[str, Tensor]  # stream at each sublayer input, by site name (attn_in.n, mlp_in.n)
    final: Tensor  # residual the final norm reads
    logits: Tensor  # [B, T, V]
    calls: BlockCalls  # what each block was called with, so a patched pass can start at any layer


def _stream_sites(lm: LoadedModel) -> list[str]:
    return [s for n in range(lm.n_layers) for s in (site_name("resid_pre", n), site_name("mlp_in", n))] + ["final"]


def clean_run(lm: LoadedModel, ids: Tensor) -> CleanRun:
    """Clean forward pass: logits and the stream at every layer boundary and sublayer input."""
    with torch.no_grad(), read(lm, _stream_sites(lm)) as cache, record_block_calls(lm) as calls:
        logits = run_forward(lm, ids).logits
    pre = [cache[site_name("resid_pre", n)] for n in range(lm.n_layers)]
    sub_in = {site_name("attn_in", n): pre[n] for n in range(lm.n_layers)}
    sub_in.update({site_name("mlp_in", n): cache[site_name("mlp_in", n)] for n in range(lm.n_layers)})
    return CleanRun(resid_pre=pre, sub_in=sub_in, final=cache["final"], logits=logits, calls=calls)


def output_means(lm: LoadedModel, batches: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Mean over the data (positions >= 1) of e and of every sublayer output, in sublayer order."""
    # e is resid_pre.0: the whole embedding (on GPT-2 the `embed` site is the token embedding alone)
    sites = ["resid_pre.0", *(f"{k}.{n}" for n in range(lm.n_layers) for k in ("attn_out", "mlp_out"))]
    sums = {s: torch.zeros(lm.d_model, dtype=torch.float64) for s in sites}
    count = 0

    def reduce(name: str, act: Tensor) -> None:
        sums[name] += act[:, 1:].to(torch.float64).sum((0, 1)).cpu()

    for ids in batches:
        with torch.no_grad(), read(lm, sites, reduce=reduce):
            run_forward(lm, ids)
        count += ids.shape[0] * (ids.shape[1] - 1)
    means = [(sums[s] / count).to(device=lm.device, dtype=lm.dtype) for s in sites]
    return means[0], means[1:]


def _fill(variant: HorizonVariant, start_layer: int, e: Tensor, means) -> Tensor | float:
    """What stands in for everything outside a window that starts at layer `start_layer`."""
    extra: Tensor | float = 0.0
    if variant.keep_embedding:
        extra = e
    if variant.fill == "mean":
        mean_e, mean_outputs = means
        out_of_window = sum(mean_outputs[: 2 * start_layer], torch.zeros_like(mean_e))
        extra = extra + out_of_window + (0.0 if variant.keep_embedding else mean_e)
    return extra


def patched_logits(
    lm: LoadedModel,
    ids: Tensor,
    k: int,
    clean: CleanRun,
    variant: HorizonVariant = HorizonVariant(),
    means: tuple[Tensor, list[Tensor]] | None = None,
    resume: bool = True,
    layers: Sequence[int] | None = None,
    positions: Tensor | None = None,
) -> Tensor:
    """Logits of the model run with horizon k ([B, T, V]; [B, P, V] at `positions` [B, P] if given).

    layers: the layers whose sublayers get the truncated stream; default every layer >= k (>= K with
        `enforce_from`). The per-layer profile passes one layer: every other layer runs as usual.
    resume: start at the first patched layer from the clean run's stream (layers below it are the clean
    model's in every variant); False runs the whole model, for checking that both agree.
    """
    if k < 1:
        raise ValueError(f"the horizon k must be >= 1, got {k}")
    if variant.fill == "mean" and means is None:
        raise ValueError("fill='mean' needs the output means (see output_means)")
    L = lm.n_layers
    e = clean.resid_pre[0]
    keep0 = variant.position0 == "keep"

    def finish(window: Tensor, h: Tensor, start_layer: int) -> Tensor:
        new = window + _fill(variant, start_layer, e, means)
        if keep0:
            new = torch.cat([h[:, :1], new[:, 1:]], dim=1)
        return new

    edits: dict[str, Callable[[Tensor], Tensor]] = {}
    current: dict[int, Tensor] = {}  # propagated: the patched run's own stream entering each layer
    first = L  # the first layer whose input the variant changes (L: none, or only the readout)
    if variant.readout_only:
        if layers is not None:
            raise ValueError("the readout-only variant truncates no layer; it takes no `layers`")
        if k < L:
            m = L - k
            edits["final"] = lambda h: finish(h - clean.resid_pre[m], h, m)
    else:
        first = min(L, k if variant.enforce_from is None else variant.enforce_from)
        if layers is not None:
            layers = sorted({whole(n, "a layer to truncate", 0, L - 1) for n in layers})
            first = layers[0] if layers else L
        for n in range(first, L) if layers is None else layers:
            m = max(0, n - k)
            for kind in ("attn_in", "mlp_in"):
                site = site_name(kind, n)
                if variant.source == "clean":
                    window_in = clean.sub_in[site]
                    edits[site] = lambda h, w=window_in, m=m: finish(w - clean.resid_pre[m], h, m)
                else:
                    edits[site] = lambda h, m=m: finish(h - current[m], h, m)
    if resume and not edits:
        return clean.logits if positions is None else at_positions(clean.logits, positions)
    with ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        if edits and variant.source == "propagated":
            if resume:  # the layers not run are the clean model's
                current.update(enumerate(clean.resid_pre[:first]))
            watch = [site_name("resid_pre", n) for n in range(first if resume else 0, L)]
            stack.enter_context(read(lm, watch, reduce=lambda name, act: current.__setitem__(layer_of(name), act)))
        if edits:
            stack.enter_context(edit(lm, edits))
        if resume:
            start = clean.resid_pre[first] if first < L else clean.final
            return forward_from(lm, first, start, clean.calls, positions)
        logits = run_forward(lm, ids).logits
        return logits if positions is None else at_positions(logits, positions)


# --- sweep over k --------------------------------------------------------------------------------

METRICS = ("delta_ce", "kl", "top1")


def horizon_batch(
    lm: LoadedModel,
    ids: Tensor,
    ks: Sequence[int],
    variant: HorizonVariant = HorizonVariant(),
    means: tuple[Tensor, list[Tensor]] | None = None,
    on_k: Callable[[int], None] | None = None,
    resume: bool = True,
) -> dict[str, list[list[float]]]:
    """One clean pass and one patched pass per k on a batch: per-sequence metrics, [len(ks)][B] each.

    resume: patched passes start at their first patched layer (see `patched_logits`).
    """
    check_ks(ks, lm.n_layers)  # refuses k outside 1..L (the order of `ks` is kept)
    variant.check(lm.n_layers)
    clean = clean_run(lm, ids)
    ref = clean_reference(clean.logits, ids)
    scored = scored_positions(ref, ids.shape[0])  # only these are unembedded
    out: dict[str, list[list[float]]] = {m: [] for m in (*METRICS, "clean_ce")}
    for k in ks:
        logits = patched_logits(lm, ids, k, clean, variant, means, resume, positions=scored)
        scores = next_token_metrics(ref, logits, at_scored=True)
        for name, values in scores.items():
            out[name].append(values.tolist())
        if on_k is not None:
            on_k(k)
    out["clean_ce"] = out["clean_ce"][:1]
    return out


def check_ks(ks: Sequence[int] | None, n_layers: int) -> list[int]:
    """The horizons to sweep: default 1..L; each must be >= 1."""
    if ks is None:
        return list(range(1, n_layers + 1))
    given = [whole(k, "a horizon k", 1, n_layers) for k in ks]
    if not given:
        raise BadNumberError(f"name at least one horizon k in 1..{n_layers}")
    if len(set(given)) != len(given):
        raise BadNumberError(f"horizons k are given twice: {given}")
    return sorted(given)


def summarize_horizon(
    ks: Sequence[int],
    per_seq: dict[str, list[list[float]]],
    thresholds: dict[str, float],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Means with bootstrap intervals over sequences for every k, and k* per threshold.

    per_seq[metric] is [len(ks)][N]. k* for a metric is the smallest k whose mean is below the
    threshold; None (and a note) when no swept k meets it.
    """
    rows = []
    arrays = {m: np.asarray(per_seq[m], dtype=np.float64) for m in METRICS}
    for i, k in enumerate(ks):
        row: dict = {"k": int(k)}
        for m in METRICS:
            row[m] = float(arrays[m][i].mean())
            row[f"{m}_ci"] = list(bootstrap_mean_ci(arrays[m][i], n_boot, seed))
        rows.append(row)
    k_star = {}
    for metric, threshold in thresholds.items():
        if metric not in ("delta_ce", "kl"):
            raise ValueError(f"thresholds are for delta_ce or kl, got {metric!r}")
        hit = next((r["k"] for r in rows if abs(r[metric]) < threshold), None)
        entry = {"threshold": threshold, "k": hit}
        if hit is None:
            entry["note"] = f"no swept k has {metric} below {threshold}; k* is not defined for this sweep"
        k_star[metric] = entry
    clean_ce = np.asarray(per_seq["clean_ce"][0], dtype=np.float64)
    return {"per_k": rows, "k_star": k_star, "clean_ce": float(clean_ce.mean())}
