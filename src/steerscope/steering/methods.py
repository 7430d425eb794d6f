"""Direction-finding methods: functions of the activations they receive, and the model-level methods.

Pure functions on activations (positive and negative texts' activations, [N, d] each):
    mean_diff_direction(pos, neg)   pca_direction(pos, neg, variant)   probe_direction(pos, neg, C, seed)

Model-level methods, all with one signature (found by name in the catalogue, steerscope.methods):
    method(lm, pairs, sites, read="last", batch_size=8, seed=0, **options) -> SteeringVector

`read` says which activation stands for a text (core.extract.text_vectors): "last" (its last token; for
A/B items this is the answer letter, so "answer" is an alias), "mean" or "max" over its tokens. Extraction
is batched, reads every site in one pass and stops after the deepest. Methods other than mean_diff and
actadd return a unit direction scaled to the norm of the mean difference at the same site (so
coefficients are comparable across methods); `scale="unit"` keeps the unit vector.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..core.extract import READS, text_vectors
from ..core.hooks import capture
from ..core.models import LoadedModel
from .alignment import PRECHECK, AlignmentSums, diff_alignment, precheck_meta
from .pairs import ContrastPair, dataset_hash
from .vector import SteeringVector

__all__ = [
    "READS",
    "actadd",
    "mean_diff",
    "mean_diff_direction",
    "pca",
    "pca_direction",
    "probe",
    "probe_direction",
    "random_direction",
    "text_vectors",
]


# --- methods as functions of activations ----------------------------------------------------------


def mean_diff_direction(pos: Tensor, neg: Tensor) -> Tensor:
    """Mean over pairs of (positive - negative), float64 [d]; row i of `pos` pairs with row i of `neg`."""
    _same_shape(pos, neg)
    return (pos.double() - neg.double()).mean(0)


def pca_direction(pos: Tensor, neg: Tensor, variant: str = "diff") -> Tensor:
    """Unit first principal component, float64 [d], signed so that positives project higher.

    "diff": of the centred pair differences (repeng's pca_diff); "center": of each pair's two activations
    centred on their midpoint.
    """
    if variant not in ("diff", "center"):
        raise ValueError(f"pca variant must be 'diff' or 'center', got {variant!r}")
    _same_shape(pos, neg)
    p, n = pos.double().numpy(), neg.double().numpy()
    if variant == "diff":
        data = p - n
        data = data - data.mean(0)
    else:
        mid = (p + n) / 2
        data = np.concatenate([p - mid, n - mid])
    direction = np.linalg.svd(data, full_matrices=False)[2][0]
    if ((p - n) @ direction).mean() < 0:
        direction = -direction
    return torch.from_numpy(direction)


def probe_direction(pos: Tensor, neg: Tensor, C: float = 1.0, seed: int = 0) -> Tensor:
    """Unit weight vector, float64 [d], of an L2-regularised logistic regression (scikit-learn) separating
    positives (label 1) from negatives; `C` is the inverse regularisation strength."""
    from sklearn.linear_model import LogisticRegression

    x = torch.cat([pos, neg]).double().numpy()
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    clf = LogisticRegression(C=C, max_iter=5000, random_state=seed).fit(x, y)
    return torch.from_numpy(clf.coef_[0] / np.linalg.norm(clf.coef_[0]))


def _same_shape(pos: Tensor, neg: Tensor) -> None:
    if pos.shape != neg.shape or pos.dim() != 2 or len(pos) == 0:
        raise ValueError(
            f"expected paired activations [N, d] of the same shape, got {tuple(pos.shape)} and {tuple(neg.shape)}"
        )


# --- model-level methods ----------------------------------------------------------------------------


def _meta(lm: LoadedModel, method: str, pairs: Sequence[ContrastPair], read: str, options: dict) -> dict:
    return {
        "method": method,
        "model": lm.name,
        "fingerprint": lm.fingerprint(),
        "d_model": lm.d_model,
        "n_pairs": len(pairs),
        "dataset_hash": dataset_hash(list(pairs)),
        "read": read,
        "options": options,
    }


def _need_pairs(pairs: Sequence[ContrastPair], method: str, minimum: int = 1) -> None:
    if len(pairs) < minimum:
        raise ValueError(f"{method} needs at least {minimum} contrast pair(s), got {len(pairs)}")


def mean_diff(
    lm: LoadedModel,
    pairs: Sequence[ContrastPair],
    sites: Sequence[str],
    read: str = "last",
    batch_size: int = 8,
    seed: int = 0,
) -> SteeringVector:
    """CAA / diff-in-means: mean over pairs of (positive - negative), from float64 running sums."""
    _need_pairs(pairs, "mean_diff")
    sums: dict[str, Tensor] = {}
    positives: dict[str, list[Tensor]] = {}  # kept until their negatives arrive: the pre-check's differences
    alignment: dict[str, AlignmentSums] = {}
    seen: dict[str, int] = {}

    def accumulate(sign: float) -> Callable[[str, Tensor], None]:
        def sink(name: str, vec: Tensor) -> None:
            sums[name] = sums.get(name, torch.zeros(vec.shape[-1], dtype=torch.float64)) + sign * vec.double().sum(0)
            if sign > 0:
                positives.setdefault(name, []).append(vec)
                return
            start = seen.get(name, 0)
            alignment.setdefault(name, AlignmentSums()).add(positives[name][0][start : start + len(vec)] - vec)
            seen[name] = start + len(vec)

        return sink

    text_vectors(lm, [p.positive for p in pairs], sites, read, batch_size, sink=accumulate(1.0))
    positives = {s: [torch.cat(v)] for s, v in positives.items()}  # one [N, d] tensor per site
    text_vectors(lm, [p.negative for p in pairs], sites, read, batch_size, sink=accumulate(-1.0))
    vectors = {s: v / len(pairs) for s, v in sums.items()}
    meta = _meta(lm, "mean_diff", pairs, read, {})
    meta.update(precheck_meta({s: a.result() for s, a in alignment.items()}))
    return SteeringVector(vectors, meta)


def _paired(lm, pairs, sites, read, batch_size) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    pos = text_vectors(lm, [p.positive for p in pairs], sites, read, batch_size)
    neg = text_vectors(lm, [p.negative for p in pairs], sites, read, batch_size)
    return pos, neg


def _scaled(unit: Tensor, diff_norm: float, scale: str) -> Tensor:
    return unit if scale == "unit" else unit * diff_norm


def _check_scale(scale: str) -> None:
    if scale not in ("mean_diff", "unit"):
        raise ValueError(f"scale must be 'mean_diff' or 'unit', got {scale!r}")


def pca(
    lm: LoadedModel,
    pairs: Sequence[ContrastPair],
    sites: Sequence[str],
    read: str = "last",
    batch_size: int = 8,
    seed: int = 0,
    variant: str = "diff",
    scale: str = "mean_diff",
) -> SteeringVector:
    """First principal component of pair differences ("diff": centred differences, repeng's pca_diff;
    "center": each pair's two activations centred on their midpoint). Signed so positives project higher.
    """
    _need_pairs(pairs, "pca", 2)
    _check_scale(scale)
    if variant not in ("diff", "center"):
        raise ValueError(f"pca variant must be 'diff' or 'center', got {variant!r}")
    pos, neg = _paired(lm, pairs, sites, read, batch_size)
    vectors = {}
    for s in pos:
        diff_norm = float(np.linalg.norm((pos[s].double().numpy() - neg[s].double().numpy()).mean(0)))
        vectors[s] = _scaled(pca_direction(pos[s], neg[s], variant), diff_norm, scale)
    meta = _meta(lm, "pca", pairs, read, {"variant": variant, "scale": scale})
    return SteeringVector(vectors, {**meta, **precheck_meta({s: diff_alignment(pos[s], neg[s]) for s in pos})})


def probe(
    lm: LoadedModel,
    pairs: Sequence[ContrastPair],
    sites: Sequence[str],
    read: str = "last",
    batch_size: int = 8,
    seed: int = 0,
    C: float = 1.0,
    scale: str = "mean_diff",
) -> SteeringVector:
    """Weight direction of an L2-regularised logistic regression (scikit-learn) separating positives
    (label 1) from negatives; `C` is the inverse regularisation strength."""
    _need_pairs(pairs, "probe", 2)
    _check_scale(scale)
    pos, neg = _paired(lm, pairs, sites, read, batch_size)
    vectors = {}
    for s in pos:
        diff_norm = float(np.linalg.norm((pos[s] - neg[s]).double().numpy().mean(0)))
        vectors[s] = _scaled(probe_direction(pos[s], neg[s], C, seed), diff_norm, scale)
    meta = _meta(lm, "probe", pairs, read, {"C": C, "scale": scale})
    return SteeringVector(vectors, {**meta, **precheck_meta({s: diff_alignment(pos[s], neg[s]) for s in pos})})


def random_direction(
    lm: LoadedModel,
    pairs: Sequence[ContrastPair],
    sites: Sequence[str],
    read: str = "last",
    batch_size: int = 8,
    seed: int = 0,
    like: SteeringVector | None = None,
) -> SteeringVector:
    """The control: a uniformly random direction with the norm of `like` (default: the mean difference)."""
    if like is not None and not isinstance(like, SteeringVector):
        raise TypeError(f"like= takes a SteeringVector (its norms are copied), got {type(like).__name__}")
    reference = like if like is not None else mean_diff(lm, pairs, sites, read, batch_size)
    g = torch.Generator().manual_seed(seed)
    vectors = {}
    for s in sites:
        v = torch.randn(lm.d_model, generator=g, dtype=torch.float64)
        vectors[s] = v / v.norm() * reference.meta["norms"][str(s)]
    meta = _meta(lm, "random", pairs, read, {"seed": seed, "norm_of": reference.meta.get("method")})
    if like is None:  # the pairs' own pre-check (the control's direction ignores it: it should not predict here)
        meta.update({k: reference.meta[k] for k in PRECHECK if k in reference.meta})
    return SteeringVector(vectors, meta)


#: ActAdd's BOS handling: "auto" reads the pair after a BOS (the tokenizer's own, else a stand-in token) and
#: never steers position 0; "tokenizer" reads the pair exactly as the tokenizer gives it (no BOS added)
ACTADD_BOS = ("auto", "tokenizer")
#: stand-ins for a BOS when the tokenizer adds none, in order: GPT-2's BOS (the document separator of GPT-2,
#: SmolLM, Qwen and Pythia vocabularies), then the tokenizer's bos and eos tokens
BOS_STAND_INS = ("<|endoftext|>",)


def bos_stand_in(tokenizer, bos: str = "auto") -> int | None:
    """The token id ActAdd puts at position 0 of its pair: None when the tokenizer adds its own BOS (or
    `bos="tokenizer"`), else `bos` itself when it names a token, else the first of `BOS_STAND_INS`, the
    tokenizer's bos_token and eos_token that is one token of the vocabulary."""
    if bos == "tokenizer":
        return None
    own, bare = tokenizer("x")["input_ids"], tokenizer("x", add_special_tokens=False)["input_ids"]
    if bos == "auto" and len(own) > len(bare):
        return None
    vocab = tokenizer.get_vocab()
    names = [bos] if bos != "auto" else [*BOS_STAND_INS, tokenizer.bos_token, tokenizer.eos_token]
    for name in names:
        if name and name in vocab:
            return int(vocab[name])
    what = f"{bos!r} is not one token of this vocabulary" if bos != "auto" else "it has no BOS, eos or <|endoftext|>"
    raise ValueError(f"actadd cannot put a BOS in front of its pair: {what}; pass bos='<a token>' or bos='tokenizer'")


def actadd(
    lm: LoadedModel,
    pairs: Sequence[ContrastPair],
    sites: Sequence[str],
    read: str = "last",
    batch_size: int = 8,
    seed: int = 0,
    pad_token: str = " ",
    bos: str = "auto",
) -> SteeringVector:
    """ActAdd: one pair; the position-wise difference [T, d] of the two prompts' activations, added at the
    front positions of the user's prompt (row i to its i-th token). The shorter prompt is right-padded with
    `pad_token` (default: a space, as in the ActAdd paper) until both have the same number of tokens.

    As in the paper, whose GPT-2 prompts begin with a BOS, both prompts are read after a BOS and row 0 (the
    BOS) is zero, so position 0 of the user's prompt is never changed: on a tokenizer that adds a BOS, it is
    that BOS, and rows 1.. go to the tokens after it, exactly as in the paper; on one that adds none (SmolLM2),
    a stand-in token (`bos_stand_in`: `<|endoftext|>` where the vocabulary has it) is put in front of the pair,
    and position 0 of the user's prompt -- its first token, which plays the BOS's part (an attention sink
    with a massive activation norm) -- is left alone, so rows 1.. go to its second token on. `bos="tokenizer"`
    reads the pair as the tokenizer gives it (on SmolLM2 its first token then sits at position 0 and is added to
    the prompt's position 0: the vector does nothing or breaks the text); `bos="<token>"` names the stand-in."""
    if len(pairs) != 1:
        raise ValueError(f"actadd takes exactly one contrast pair, got {len(pairs)}")
    tok = lm.tokenizer
    front = bos_stand_in(tok, bos)
    if front is None:
        ids = [tok(t)["input_ids"] for t in (pairs[0].positive, pairs[0].negative)]
    else:
        ids = [[front, *tok(t, add_special_tokens=False)["input_ids"]] for t in (pairs[0].positive, pairs[0].negative)]
    pad = tok(pad_token, add_special_tokens=False)["input_ids"]
    if len(pad) != 1:
        raise ValueError(f"pad_token {pad_token!r} must be exactly one token, got {len(pad)}")
    width = max(len(i) for i in ids)
    padded = torch.tensor([i + pad * (width - len(i)) for i in ids], device=lm.device)
    acts = capture(lm, padded, sites)
    vectors = {s: (a[0] - a[1]) for s, a in acts.items()}
    skips_bos = bos != "tokenizer"
    if skips_bos:
        for v in vectors.values():
            v[0] = 0.0  # the BOS (or its stand-in): the same token in both prompts, never steered
    tokens = tok.convert_ids_to_tokens(padded[0].tolist()), tok.convert_ids_to_tokens(padded[1].tolist())
    options = {"pad_token": pad_token, "tokens": width, "bos": bos, "bos_token_id": front, "pair_tokens": tokens}
    meta = _meta(lm, "actadd", pairs, "all positions", options)
    return SteeringVector(vectors, meta)
