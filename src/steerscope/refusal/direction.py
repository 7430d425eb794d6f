"""The refusal direction: candidates, selection and the ablation / addition checks (Arditi et al., 2024).

Candidates: for every layer l and every post-instruction position p (the chat-template tokens after the
user's text, e.g. `<|im_end|>\\n<|im_start|>assistant\\n`), the difference of mean `resid_pre.l`
activations at p between harmful and harmless prompts (float64 running sums).

Selection rule (published practice, with its defaults):
- the *refusal score* of a prompt is log-odds of refusing at the first reply token:
  log P(R) - log(1 - P(R)), where R is the set of first tokens of refusal openings (REFUSAL_STARTS);
- *bypass*: the mean refusal score on validation harmful prompts when the candidate is projected out of
  every residual write (every layer, every position); lower is better;
- *induce*: the mean refusal score on validation harmless prompts when the candidate is added at its own
  `resid_pre.l` (every position, coefficient 1); a candidate must make it positive (above `induce_min`;
  `induce_min="baseline"` asks only that it rise above the harmless prompts' own score, for models that
  barely refuse, where no single direction makes refusal more likely than not);
- *KL*: mean KL(clean || ablated) of the last-position next-token distribution on validation harmless
  prompts; a candidate must stay below `kl_max` (0.1);
- layers in the last `1 - max_layer_frac` (20%) of the model are excluded (directions there are too close
  to the unembedding to be "the" representation).
A candidate whose ablation does not lower the harmful score below its unsteered value is dropped too (it cannot
be a refusal direction; strongly refusing models never produce one, weak refusers do). The chosen direction is the
candidate with the lowest bypass score among those that pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..core.hooks import add, project_out, read, run_forward
from ..core.models import LoadedModel
from ..core.sites import layer_of, layer_sites, site_name
from .instructions import chat_prompts

REFUSAL_STARTS = ("I", "As", "Sorry")
_MARK = "\x00steerscope-instruction\x00"


def post_instruction_tokens(lm: LoadedModel) -> list[int]:
    """Token ids the chat template puts after the user's text (the candidate positions).

    Raises when the template's suffix does not tokenize to the same ids at the end of a real prompt.
    """
    (prompt,) = chat_prompts(lm, [_MARK])
    suffix = prompt[prompt.index(_MARK) + len(_MARK) :]
    ids = lm.tokenizer(suffix, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"{lm.name}'s prompt format leaves no token after the instruction; nothing to read")
    (probe,) = chat_prompts(lm, ["Tell me a story."])
    tail = lm.tokenizer(probe)["input_ids"][-len(ids) :]
    if tail != ids:
        raise ValueError(
            f"{lm.name}'s tokenizer merges the end of the instruction with the template suffix {suffix!r}; "
            "post-instruction positions cannot be located"
        )
    return ids


def refusal_token_ids(lm: LoadedModel, starts: Sequence[str] = REFUSAL_STARTS) -> list[int]:
    """First token of each refusal opening, written with and without a leading space (tokenizers differ
    in which one a reply starts with)."""
    ids = {lm.tokenizer(text, add_special_tokens=False)["input_ids"][0] for s in starts for text in (s, " " + s)}
    return sorted(ids)


def refusal_scores(last_logits: Tensor, token_ids: Sequence[int]) -> Tensor:
    """Per prompt: log P(refusal token) - log(1 - P(refusal token)) from last-position logits [N, V]."""
    logp = torch.log_softmax(last_logits.double(), dim=-1)
    log_refuse = torch.logsumexp(logp[:, list(token_ids)], dim=-1)
    return log_refuse - torch.log1p(-log_refuse.exp().clamp(max=1 - 1e-12))


def last_logits(
    lm: LoadedModel,
    prompts: Sequence[str],
    batch_size: int = 16,
    intervention: Callable[[], AbstractContextManager] = nullcontext,
) -> Tensor:
    """Next-token logits [N, V] (float32, CPU) at each prompt's last position, under `intervention`."""
    out = []
    for start in range(0, len(prompts), batch_size):
        batch = lm.tokenize(list(prompts[start : start + batch_size]))
        with torch.no_grad(), intervention():
            logits = run_forward(lm, batch, logits_to_keep=1).logits
        out.append(logits[:, -1].float().cpu())
    return torch.cat(out)


def last_position_kl(clean: Tensor, other: Tensor) -> Tensor:
    """KL(clean || other) per row of two [N, V] logit tensors (float64)."""
    p = torch.log_softmax(clean.double(), -1)
    q = torch.log_softmax(other.double(), -1)
    return (p.exp() * (p - q)).sum(-1).clamp_min(0)


def candidate_directions(
    lm: LoadedModel,
    harmful: Sequence[str],
    harmless: Sequence[str],
    n_positions: int,
    batch_size: int = 16,
    on_batch: Callable[[], None] | None = None,
) -> Tensor:
    """[n_positions, n_layers, d] float64: mean harmful minus mean harmless `resid_pre.l` at the last
    n_positions tokens of each (chat-formatted) prompt."""
    if not harmful or not harmless:
        raise ValueError("need at least one harmful and one harmless prompt")
    sites = layer_sites("resid_pre", lm.n_layers)
    sums = torch.zeros(n_positions, lm.n_layers, lm.d_model, dtype=torch.float64)

    def accumulate(weight: float) -> Callable[[str, Tensor], None]:
        def reduce(name: str, act: Tensor) -> None:
            layer = layer_of(name)
            sums[:, layer] += weight * act[:, -n_positions:].double().sum(0).cpu()  # left padding: real tokens end

        return reduce

    for weight, prompts in ((1.0 / len(harmful), harmful), (-1.0 / len(harmless), harmless)):
        for start in range(0, len(prompts), batch_size):
            batch = lm.tokenize(list(prompts[start : start + batch_size]))
            with torch.no_grad(), read(lm, sites, reduce=accumulate(weight), stop_after_deepest=True):
                run_forward(lm, batch)
            if on_batch is not None:
                on_batch()
    return sums


@dataclass
class Candidate:
    """One (position, layer) candidate and its selection scores."""

    position: int  # negative: -1 is the last prompt token
    layer: int
    norm: float
    bypass: float | None = None
    induce: float | None = None
    kl: float | None = None
    status: str = "not scored"


@dataclass
class Selection:
    candidates: list[Candidate]
    chosen: Candidate | None
    baseline: dict = field(default_factory=dict)
    rule: dict = field(default_factory=dict)


def _scored_layers(n_layers: int, max_layer_frac: float, layer_step: int = 1) -> list[int]:
    if not 0 < max_layer_frac <= 1:
        raise ValueError(f"max_layer_frac must be in (0, 1], got {max_layer_frac}")
    if layer_step < 1:
        raise ValueError(f"layer_step must be at least 1, got {layer_step}")
    return [layer for layer in range(0, n_layers, layer_step) if layer < max_layer_frac * n_layers]


def _swept_positions(n_positions: int, last_positions: int | None) -> int:
    if last_positions is None:
        return n_positions
    if not 1 <= last_positions <= n_positions:
        raise ValueError(f"last_positions must be between 1 and {n_positions}, got {last_positions}")
    return last_positions


@dataclass(frozen=True)
class SelectionRule:
    """The selection thresholds and the sweep's thinning (see the module doc).

    `induce_min`: a number, or "baseline" (the harmless prompts' own refusal score); `layer_step` and
    `last_positions` thin the sweep for large models (every k-th layer; only the last few positions).
    """

    kl_max: float = 0.1
    max_layer_frac: float = 0.8
    induce_min: float | str = 0.0
    layer_step: int = 1
    last_positions: int | None = None


def select_direction(
    lm: LoadedModel,
    directions: Tensor,
    val_harmful: Sequence[str],
    val_harmless: Sequence[str],
    rule: SelectionRule | None = None,
    *,
    batch_size: int = 16,
    on_candidate: Callable[[Candidate], None] | None = None,
    scored: dict[tuple[int, int], Candidate] | None = None,
) -> Selection:
    """Score every candidate below the layer cut-off and choose one by `rule` (the module doc).

    `scored` holds candidates already scored by an interrupted run (keyed by (position, layer)); they are
    not recomputed. `on_candidate` gets each newly scored candidate (to checkpoint it).
    """
    rule = rule or SelectionRule()
    kl_max, max_layer_frac, induce_min = rule.kl_max, rule.max_layer_frac, rule.induce_min
    layer_step, last_positions = rule.layer_step, rule.last_positions
    scored = scored or {}
    tokens = refusal_token_ids(lm)
    n_pos = directions.shape[0]
    harmful_clean = last_logits(lm, val_harmful, batch_size)
    harmless_clean = last_logits(lm, val_harmless, batch_size)
    baseline = {
        "harmful_refusal_score": float(refusal_scores(harmful_clean, tokens).mean()),
        "harmless_refusal_score": float(refusal_scores(harmless_clean, tokens).mean()),
    }
    kept = _scored_layers(lm.n_layers, max_layer_frac, layer_step)
    if induce_min == "baseline":
        induce_min = baseline["harmless_refusal_score"]
    elif isinstance(induce_min, str):
        raise ValueError(f"induce_min must be a number or 'baseline', got {induce_min!r}")
    first_swept = n_pos - _swept_positions(n_pos, last_positions)
    # e.g. resid_pre.0 at a template token is the same embedding for every prompt: a difference of ~1e-16
    tiny_scale = float(directions.norm(dim=-1).max())
    candidates = []
    for p in range(n_pos):
        for layer in range(lm.n_layers):
            r = directions[p, layer]
            c = Candidate(position=p - n_pos, layer=layer, norm=float(r.norm()))
            candidates.append(c)
            if layer >= max_layer_frac * lm.n_layers:
                c.status = "excluded: last layers"
                continue
            if layer not in kept or p < first_swept:
                c.status = "not swept"
                continue
            if c.norm <= 1e-6 * tiny_scale:
                c.status = "excluded: zero direction (identical activations)"
                continue
            if (c.position, layer) in scored:
                old = scored[(c.position, layer)]
                c.bypass, c.kl, c.induce = old.bypass, old.kl, old.induce
            else:
                c.bypass, c.kl, c.induce = _score(
                    lm, r.float(), layer, val_harmful, val_harmless, harmless_clean, tokens, batch_size
                )
                if on_candidate is not None:
                    on_candidate(c)
            c.status = _verdict(c, kl_max, induce_min, baseline["harmful_refusal_score"])
    passed = [c for c in candidates if c.status == "passed"]
    chosen = min(passed, key=lambda c: c.bypass) if passed else None
    if chosen is not None:
        chosen.status = "chosen"
    rule = {
        "refusal_tokens": [lm.tokenizer.decode([t]) for t in tokens],
        "kl_max": kl_max,
        "induce_min": induce_min,
        "max_layer_frac": max_layer_frac,
        "scored_layers": kept,
        "scored_positions": list(range(first_swept - n_pos, 0)),
        "n_val_harmful": len(val_harmful),
        "n_val_harmless": len(val_harmless),
    }
    return Selection(candidates, chosen, baseline, rule)


def _score(lm, vec, layer, val_harmful, val_harmless, harmless_clean, tokens, batch_size):
    """(bypass, KL, induce) for one candidate direction."""

    def ablate():
        return project_out(lm, vec)

    def induce():
        return add(lm, {site_name("resid_pre", layer): vec})

    bypass = float(refusal_scores(last_logits(lm, val_harmful, batch_size, ablate), tokens).mean())
    kl = float(last_position_kl(harmless_clean, last_logits(lm, val_harmless, batch_size, ablate)).mean())
    induced = float(refusal_scores(last_logits(lm, val_harmless, batch_size, induce), tokens).mean())
    return bypass, kl, induced


def _verdict(c: Candidate, kl_max: float, induce_min: float, harmful_baseline: float) -> str:
    if c.bypass >= harmful_baseline:
        return "filtered: ablation does not lower refusal"
    if c.induce <= induce_min:
        return "filtered: addition does not induce refusal"
    if c.kl >= kl_max:
        return f"filtered: KL >= {kl_max:g}"
    return "passed"


def n_scored(
    n_positions: int, n_layers: int, max_layer_frac: float, layer_step: int = 1, last_positions: int | None = None
) -> int:
    """How many candidates select_direction will score (for progress bars)."""
    return _swept_positions(n_positions, last_positions) * len(_scored_layers(n_layers, max_layer_frac, layer_step))


def split_validation(prompts: Sequence[str], n_val: int) -> tuple[list[str], list[str]]:
    """The last n_val prompts validate; the rest make the candidates."""
    if not 0 < n_val < len(prompts):
        raise ValueError(f"n_val must be between 1 and {len(prompts) - 1} for {len(prompts)} prompts, got {n_val}")
    return list(prompts[:-n_val]), list(prompts[-n_val:])
