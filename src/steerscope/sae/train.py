"""Train an SAE on activations streamed from a model at one site; resumable; reports its quality.

Data: `token_sequences` (built-in Wikipedia summaries or any text), the first `n_train` sequences for
training, the next `n_eval` for evaluation (documents never trained on). Position 0 (a BOS outlier)
is left out everywhere. Sequences are read in chunks; each chunk's activations are shuffled with a
seed of (seed, chunk), so a run resumed from a checkpoint sees exactly the batches an uninterrupted
one would. The checkpoint holds weights, Adam moments, step and the dead-latent counters.

Loss: squared error / (mean squared distance of x from its mean), i.e. about the fraction of variance
unexplained; "standard" (ReLU) adds `l1_coefficient` x sum_i f_i ||W_dec,i|| / sqrt(scale) (scale-free: 0.2 is
about Anthropic's lambda = 5 on inputs normalized to norm sqrt(d) for d ~ 600); "topk" adds the AuxK loss
(dead latents reconstruct the residual) and keeps decoder rows at unit norm.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..core.corpus import token_sequences
from ..core.cost import forward_flops
from ..core.extract import site_activations
from ..core.hooks import edit, run_forward
from ..core.io import write_json
from ..core.models import LoadedModel
from ..core.runs import RunFolder
from ..core.training import TrainingLoop, TrainState
from ..core.validate import BadNumberError, finite, whole
from ..evaluate.metrics import clean_reference, next_token_metrics
from .model import SAEConfig, SparseAutoencoder
from .saelens import save_saelens

STATE = "train_state.safetensors"


@dataclass(frozen=True)
class SAETrainConfig:
    """SAE training settings; `tokens` counts training activations (positions after the first)."""

    site: str
    expansion: int = 8
    architecture: str = "topk"
    k: int = 32
    l1_coefficient: float = 0.2
    tokens: int = 200_000
    seq_len: int = 64
    batch_size: int = 1024
    chunk_sequences: int = 128
    model_batch: int = 16
    lr: float | None = None
    aux_coefficient: float = 1 / 32
    dead_tokens: int = 50_000
    n_eval: int = 32
    source: str = "wikipedia"
    seed: int = 0
    checkpoint_every: int = 50

    def __post_init__(self) -> None:
        """Refuse bad numbers before any work, naming the setting and its allowed range."""
        for name in ("expansion", "tokens", "batch_size", "chunk_sequences", "model_batch", "dead_tokens"):
            whole(getattr(self, name), f"{name} (--{name.replace('_', '-')})", 1)
        whole(self.k, "k (--k)", 1)
        whole(self.seq_len, "seq_len (--seq-len)", 2)  # the first position of each sequence is not trained on
        whole(self.n_eval, "n_eval (--n-eval)", 1)
        whole(self.seed, "seed (--seed)", 0)
        whole(self.checkpoint_every, "checkpoint_every", 1)
        finite(self.l1_coefficient, "l1_coefficient (--l1-coefficient)", 0.0)
        finite(self.aux_coefficient, "aux_coefficient", 0.0)
        if self.lr is not None and finite(self.lr, "lr (--lr)") <= 0:
            raise BadNumberError(f"lr (--lr) must be a finite number > 0, got {self.lr:g}")

    def learning_rate(self, d_sae: int) -> float:
        """The given lr, or 2e-4 x sqrt(16384 / d_sae) (the TopK scaling of Gao et al.), at most 2e-3."""
        return self.lr if self.lr is not None else min(2e-3, 2e-4 * math.sqrt(16384 / d_sae))


def _lr_factor(step: int, total: int) -> float:
    """Linear warm-up over the first 2% of steps, linear decay to zero over the last 20%."""
    warm, decay = max(1, total // 50), max(1, total // 5)
    return min(1.0, (step + 1) / warm, (total - step) / decay)


def _loss(sae: SparseAutoencoder, x: torch.Tensor, cfg: SAETrainConfig, scale: float, dead: torch.Tensor):
    pre = sae.pre_acts(x)
    f = sae.activate(pre)
    x_hat = sae.decode(f)
    mse = (x_hat - x).pow(2).sum(-1).mean() / scale
    loss = mse
    if sae.cfg.architecture == "standard":
        loss = loss + cfg.l1_coefficient * (f * sae.W_dec.norm(dim=-1)).sum(-1).mean() / math.sqrt(scale)
    elif cfg.aux_coefficient > 0 and bool(dead.any()):
        k_aux = min(int(dead.sum()), sae.d_in // 2)
        masked = pre.masked_fill(~dead, -torch.inf).topk(k_aux, dim=-1)
        aux_f = torch.zeros_like(pre).scatter(-1, masked.indices, masked.values.relu())
        residual = (x - x_hat).detach()
        aux = (aux_f @ sae.W_dec - residual).pow(2).sum(-1).mean() / scale
        loss = loss + cfg.aux_coefficient * aux
    return loss, mse, f


def train_sae(
    lm: LoadedModel,
    out: str | Path,
    cfg: SAETrainConfig,
    show_progress: bool = True,
    stop_after: int | None = None,
    overwrite: bool = False,
    restart: bool = False,
) -> dict:
    """Train (or resume) an SAE into the run folder `out` (core.runs.RunFolder: written in `<out>.partial/`,
    which holds the checkpoint until the run finishes): the SAELens files, the checkpoint and `train.json`.

    `stop_after`: pause after this many steps (the state is saved; call again with the same settings to go on).
    `overwrite`: replace a finished `out`; `restart`: discard an unfinished run with other settings.
    """
    lm_site = str(cfg.site)
    d_sae = cfg.expansion * lm.d_model
    sae_cfg = SAEConfig(
        d_in=lm.d_model,
        d_sae=d_sae,
        architecture=cfg.architecture,
        k=cfg.k if cfg.architecture == "topk" else None,
        site=lm_site,
        model_name=lm.name,
    )
    settings = {"train": asdict(cfg), "model": lm.name, "fingerprint": lm.fingerprint()}
    per_seq = cfg.seq_len - 1
    n_train = math.ceil(cfg.tokens / per_seq)
    ids = token_sequences(lm.tokenizer, cfg.source, n_train + cfg.n_eval, cfg.seq_len, cfg.seed)
    train_ids, eval_ids = ids[:n_train], ids[n_train:]
    n_chunks = math.ceil(n_train / cfg.chunk_sequences)
    steps_in = [
        (min(n_train, (c + 1) * cfg.chunk_sequences) - c * cfg.chunk_sequences) * per_seq // cfg.batch_size
        for c in range(n_chunks)
    ]
    total = sum(steps_in)
    if total == 0:
        raise ValueError(
            f"{cfg.tokens} tokens give no full batch of {cfg.batch_size}; raise --tokens or lower --batch-size"
        )
    folder = RunFolder(out, settings, overwrite, restart)

    sae = SparseAutoencoder(sae_cfg, seed=cfg.seed)
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.learning_rate(d_sae), betas=(0.9, 0.999))
    loop = TrainingLoop(
        folder.path(STATE),
        sae,
        opt,
        settings,
        total,
        cfg.checkpoint_every,
        initial={"since_fired": torch.zeros(d_sae, dtype=torch.long)},
    )
    starts = [sum(steps_in[:c]) for c in range(n_chunks)]
    chunk: dict = {}

    def batch(state: TrainState) -> torch.Tensor:
        """The batch of step `state.step`: its chunk's activations, shuffled with a seed of (seed, chunk)."""
        c = max(i for i in range(n_chunks) if starts[i] <= state.step and steps_in[i] > 0)
        if chunk.get("index") != c:
            rows = train_ids[c * cfg.chunk_sequences : (c + 1) * cfg.chunk_sequences]
            acts = site_activations(lm, rows, lm_site, cfg.model_batch)
            g = torch.Generator().manual_seed(cfg.seed * 100_003 + c)
            chunk.update(index=c, acts=acts[torch.randperm(len(acts), generator=g)])
            if "scale" not in state.extra:  # first chunk: centre the decoder bias, fix the loss scale
                mean = chunk["acts"].mean(0)
                state.extra["scale"] = float((chunk["acts"] - mean).pow(2).sum(-1).mean())
                with torch.no_grad():
                    sae.b_dec.copy_(mean)
        b = state.step - starts[c]
        return chunk["acts"][b * cfg.batch_size : (b + 1) * cfg.batch_size]

    def step(state: TrainState) -> float:
        x = batch(state)
        for group in opt.param_groups:
            group["lr"] = cfg.learning_rate(d_sae) * _lr_factor(state.step, total)
        since_fired = state.tensors["since_fired"]
        loss, mse, f = _loss(sae, x, cfg, state.extra["scale"], since_fired > cfg.dead_tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sae.cfg.architecture == "topk":
            sae.normalize_decoder()
        fired = (f > 0).any(0)
        state.tensors["since_fired"] = torch.where(fired, 0, since_fired + len(x))
        return mse.item()

    def record(state: TrainState, window: list[float]) -> tuple[list, dict[str, str]]:
        dead_frac = float((state.tensors["since_fired"] > cfg.dead_tokens).float().mean())
        mean = sum(window) / len(window)
        return [state.step, mean, dead_frac], {"fvu": f"{mean:.3f}", "dead": f"{dead_frac:.1%}"}

    state = loop.run(
        step,
        record,
        stop_after,
        label=f"SAE {cfg.architecture} x{cfg.expansion} at {lm_site}",
        fields={"fvu": "-", "dead": "-"},
        show_progress=show_progress,
    )
    seconds, losses, since_fired = state.seconds, state.losses, state.tensors["since_fired"]
    if not loop.finished:
        return {"step": state.step, "steps": total, "finished": False, "train_seconds": round(seconds, 1)}
    sae.eval()
    tokens_used = total * cfg.batch_size
    result = {
        "site": lm_site,
        "model": lm.name,
        "architecture": cfg.architecture,
        "d_sae": d_sae,
        "k": sae_cfg.k,
        "steps": total,
        "train_tokens": tokens_used,
        "train_seconds": round(seconds, 1),
        "activations_read": n_train * per_seq,
        "model_tokens_read": n_train * cfg.seq_len,
        "flops_estimate": flops_estimate(lm, lm_site, d_sae, n_train * cfg.seq_len, tokens_used),
        "losses": losses,
        "dead_fraction_train": float((since_fired > cfg.dead_tokens).float().mean()),
        "eval": evaluate_sae(lm, sae, eval_ids, cfg.model_batch),
        "settings": settings,
    }
    cost = {"train_tokens": tokens_used, "train_model_tokens": n_train * cfg.seq_len, "train_seconds": seconds}
    save_saelens(sae, folder.path(), extra={**cost, "train_flops": result["flops_estimate"]["total"]})
    write_json(folder.path("train.json"), result)
    folder.commit()
    return result


def flops_estimate(lm: LoadedModel, site: str, d_sae: int, model_tokens: int, sae_tokens: int) -> dict:
    """Rough FLOPs: the model's forward passes up to the site (core.cost.forward_flops), plus
    12 x d_in x d_sae per training activation for the SAE's dense encoder and decoder, forward and backward."""
    model = forward_flops(lm, [site], model_tokens)
    sae = 12 * lm.d_model * d_sae * sae_tokens
    return {"model_forward": float(model), "sae_train": float(sae), "total": float(model + sae)}


@torch.no_grad()
def evaluate_sae(lm: LoadedModel, sae: SparseAutoencoder, ids: torch.Tensor, model_batch: int = 16) -> dict:
    """FVE, L0 and dead fraction on held-out tokens; delta CE with the reconstruction spliced in.

    Splicing replaces the activation at the SAE's site at every position after the first; the mean
    ablation (every such position set to the mean activation) is the reference for "CE recovered".
    Scores skip position 0.
    """
    site = sae.cfg.site
    if site is None:
        raise ValueError("the SAE names no site; set sae.cfg.site (e.g. 'resid_pre.10')")
    acts = site_activations(lm, ids, site, model_batch)
    f = sae.encode(acts)
    x_hat = sae.decode(f)
    sse = float((acts - x_hat).pow(2).sum())
    sst = float((acts - acts.mean(0)).pow(2).sum())
    mean = acts.mean(0)

    def splice(fn):
        def run(h: torch.Tensor) -> torch.Tensor:
            new = h.clone()
            new[:, 1:] = fn(h[:, 1:].float()).to(h.dtype)
            return new

        return run

    delta = {"sae": [], "mean_ablation": []}
    kl = []
    for start in range(0, ids.shape[0], model_batch):
        batch = ids[start : start + model_batch].to(lm.device)
        ref = clean_reference(run_forward(lm, batch).logits, batch)
        with edit(lm, {site: splice(sae)}):
            m = next_token_metrics(ref, run_forward(lm, batch).logits)
        delta["sae"].append(m["delta_ce"])
        kl.append(m["kl"])
        with edit(lm, {site: splice(lambda h: mean.to(h).expand_as(h))}):
            delta["mean_ablation"].append(next_token_metrics(ref, run_forward(lm, batch).logits)["delta_ce"])
    d_sae_ce = float(torch.cat(delta["sae"]).mean())
    d_mean_ce = float(torch.cat(delta["mean_ablation"]).mean())
    fired = (f > 0).any(0)
    return {
        "tokens": int(acts.shape[0]),
        "fve": 1 - sse / sst,
        "l0": float((f > 0).sum(-1).float().mean()),
        "dead_fraction": float((~fired).float().mean()),
        "delta_ce": d_sae_ce,
        "kl": float(torch.cat(kl).mean()),
        "delta_ce_mean_ablation": d_mean_ce,
        "ce_recovered": 1 - d_sae_ce / d_mean_ce if d_mean_ce > 0 else None,
    }
