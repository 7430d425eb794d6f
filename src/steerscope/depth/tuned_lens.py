"""The tuned lens (Belrose et al. 2023): one affine translator per layer, trained so the lens matches the model.

Translator l maps the stream h at `resid_post.{l}` to h + A_l h + b_l before the model's own readout (final
norm, unembedding, soft cap). A_l and b_l start at zero, so an untrained tuned lens is the logit lens. Training
minimises the mean over layers and positions >= 1 of KL(final || tuned lens_l), the model frozen, with Adam
(the last layer's translator is held at the identity: there the logit lens already is the model, and Adam would
turn its rounding-level gradients into full-size steps);
it runs through the one resumable training loop (core.training). A lens is saved as safetensors (tensors
`weight` [L, d, d], `bias` [L, d]) with its provenance in the header: model, fingerprint, text, steps, tokens,
learning rate, wall time, steerscope version. Loading checks the shape and the model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import Tensor, nn

from .._version import __version__
from ..core.errors import SteerscopeError
from ..core.forward import readout
from ..core.hooks import read, run_forward
from ..core.io import atomic_write_bytes
from ..core.models import LoadedModel
from ..core.training import TrainingLoop
from .lens import lens_sites


class TunedLensFileError(SteerscopeError, ValueError):
    """A tuned-lens file that is unreadable or made for another model."""


class TunedLens(nn.Module):
    """Affine translators for every layer; called as `lens(layer, stream)` (a `depth.lens.Translator`)."""

    def __init__(self, n_layers: int, d_model: int, meta: dict | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_layers, d_model, d_model))
        self.bias = nn.Parameter(torch.zeros(n_layers, d_model))
        self.meta: dict = dict(meta or {})

    def forward(self, layer: int, stream: Tensor) -> Tensor:
        w, b = self.weight[layer].to(stream.dtype), self.bias[layer].to(stream.dtype)
        return stream + stream @ w.T + b

    def save(self, path: str | Path) -> Path:
        """Write the lens and its provenance atomically (safetensors, no pickle)."""
        tensors = {"weight": self.weight.detach().float().contiguous(), "bias": self.bias.detach().float().contiguous()}
        atomic_write_bytes(path, save(tensors, metadata={"steerscope": json.dumps(self.meta)}))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, lm: LoadedModel | None = None, allow_other_model: bool = False) -> TunedLens:
        """Read a saved lens; with `lm`, refuse one of another shape or (unless allowed) another model."""
        try:
            with safe_open(str(path), "pt") as fh:
                meta = json.loads((fh.metadata() or {}).get("steerscope", "{}"))
                weight, bias = fh.get_tensor("weight"), fh.get_tensor("bias")
        except Exception as err:  # safetensors raises several types for a broken file
            raise TunedLensFileError(f"cannot read the tuned lens {path}: {err}") from None
        lens = cls(weight.shape[0], weight.shape[1], meta)
        with torch.no_grad():
            lens.weight.copy_(weight)
            lens.bias.copy_(bias)
        if lm is not None:
            if (weight.shape[0], weight.shape[1]) != (lm.n_layers, lm.d_model):
                raise TunedLensFileError(
                    f"the tuned lens {path} has {weight.shape[0]} layers of width {weight.shape[1]}; {lm.name} has "
                    f"{lm.n_layers} of width {lm.d_model}: train one for this model (steerscope lens MODEL --tuned)"
                )
            made_for = meta.get("fingerprint")
            if made_for and made_for != lm.fingerprint() and not allow_other_model:
                raise TunedLensFileError(
                    f"the tuned lens {path} was trained on {meta.get('model', '?')} (fingerprint {made_for}), not "
                    f"{lm.name}; train one for this model, or pass allow_other_model=True"
                )
        return lens.to(lm.device) if lm is not None else lens


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """No gradient for the model's own weights inside the block (restored on exit)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def tuned_lens_loss(lm: LoadedModel, lens: TunedLens, ids: Tensor) -> Tensor:
    """Mean over layers and positions >= 1 of KL(final || tuned lens) on one batch (differentiable in `lens`)."""
    sites = lens_sites(lm)
    with torch.no_grad(), read(lm, sites) as cache:
        logits = run_forward(lm, ids).logits
    logp = torch.log_softmax(logits[:, 1:].float(), dim=-1)
    p = logp.exp()
    total = torch.zeros((), device=logp.device)
    for n, site in enumerate(sites):
        logq = torch.log_softmax(readout(lm, lens(n, cache.pop(site)[:, 1:])).float(), dim=-1)
        total = total + (p * (logp - logq)).sum(-1).mean()
    return total / len(sites)


def train_tuned_lens(
    lm: LoadedModel,
    batches: Sequence[Tensor],
    steps: int,
    state_path: str | Path,
    lr: float = 1e-3,
    meta: dict | None = None,
    show_progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> TunedLens:
    """Train a tuned lens for `steps` Adam steps over `batches` (cycled), checkpointed into `state_path`.

    Resumes from `state_path` when its settings match. The returned lens's `meta` holds the provenance and
    the cost: steps, tokens seen, wall seconds (of this and earlier runs) and the loss per checkpoint.
    """
    if not batches:
        raise ValueError("training a tuned lens needs at least one batch of text")
    lens = TunedLens(lm.n_layers, lm.d_model).to(lm.device)
    opt = torch.optim.Adam(lens.parameters(), lr=lr)
    settings = {"model": lm.name, "fingerprint": lm.fingerprint(), "steps": steps, "lr": lr, **(meta or {})}
    loop = TrainingLoop(state_path, lens, opt, settings, steps, checkpoint_every=max(1, min(50, steps // 4)))

    def step(state) -> float:
        ids = batches[state.step % len(batches)]
        opt.zero_grad(set_to_none=True)
        loss = tuned_lens_loss(lm, lens, ids)
        loss.backward()
        for p in (lens.weight, lens.bias):  # the last layer's lens is the model: its translator stays the identity
            if p.grad is not None:
                p.grad[-1] = 0.0
        opt.step()
        value = float(loss.detach())
        if on_step is not None:
            on_step(state.step, value)
        return value

    def record(state, window):
        mean = sum(window) / len(window)
        return {"step": state.step, "kl": mean}, {"kl": f"{mean:.3f}"}

    start = time.perf_counter()
    with _frozen(lm.model):
        state = loop.run(step, record, label="tuned lens", fields={"kl": "-"}, show_progress=show_progress)
    tokens_per_step = [int(b.shape[0] * (b.shape[1] - 1)) for b in batches]
    lens.meta = {
        **settings,
        "layers": lm.n_layers,
        "d_model": lm.d_model,
        "objective": "mean over layers and positions >= 1 of KL(final || tuned lens)",
        "tokens": sum(tokens_per_step[i % len(batches)] for i in range(steps)),
        "seconds": state.seconds,
        "seconds_this_run": time.perf_counter() - start,
        "losses": state.losses,
        "steerscope": __version__,
    }
    return lens
