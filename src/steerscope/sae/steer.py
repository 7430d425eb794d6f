"""Steering by SAE feature: clamp a latent (keeping the SAE's error term) or add its decoder direction.

sae_clamp: h -> decode(f with f[latent] := value at the chosen positions) + (h - decode(f)),  f = encode(h)
           so only the latent's contribution changes: h + (value - f[latent]) * W_dec[latent].
sae_add:   h -> h + coefficient * W_dec[latent]   (an ordinary SteeringVector, applied like any other).
Choosing the latent from contrast pairs (the methods sae_clamp and sae_add) is in sae.methods.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..core.generate import generate_text
from ..core.hooks import edit, track_positions
from ..core.models import LoadedModel
from ..core.positions import position_weights, validate_positions
from ..core.validate import check_coefficient, finite, whole
from ..steering.methods import _meta
from ..steering.vector import SteeringVector
from .model import SparseAutoencoder


def _site(sae: SparseAutoencoder, site: str | None) -> str:
    site = site or sae.cfg.site
    if site is None:
        raise ValueError("the SAE names no site; pass site='resid_pre.10' (where it was trained)")
    return str(site)


def _check(lm: LoadedModel, sae: SparseAutoencoder, latent: int) -> None:
    if sae.d_in != lm.d_model:
        raise ValueError(f"the SAE reads {sae.d_in} dimensions but {lm.name} has d_model {lm.d_model}")
    sae.check_latent(latent)


def clamp_fn(sae: SparseAutoencoder, latent: int, value: float, weights=None):
    """The edit `h -> clamped h`; `weights()` gives a bool [B, T] of positions to clamp (None: all)."""

    def clamp(h: Tensor) -> Tensor:
        # decode(f') + (h - decode(f)) with f' = f except at `latent` equals h + (f'[latent] - f[latent]) W_dec[latent]
        # (the decoder is linear); the second form leaves unclamped positions bit-exact instead of re-rounded.
        with torch.no_grad():  # on the SAE's device (a model split over devices has sites on several)
            current = sae.encode(h.to(sae.W_dec.device))[..., latent]
            target = torch.full_like(current, float(value))
            if weights is not None:
                target = torch.where(weights().to(current.device), target, current)
            delta = (target - current).unsqueeze(-1) * sae.W_dec[latent]
            return h + delta.to(device=h.device, dtype=h.dtype)

    return clamp


@contextmanager
def sae_clamp(
    lm: LoadedModel,
    sae: SparseAutoencoder,
    latent: int,
    value: float,
    site: str | None = None,
    positions: str | Tensor = "all",
) -> Iterator[None]:
    """Clamp one latent to `value` at `site` (default: the SAE's own) during forward calls in the block."""
    value = finite(value, "the clamp value")
    _check(lm, sae, latent)
    positions = validate_positions(positions)
    site = _site(sae, site)
    with ExitStack() as stack:
        weights = None
        if not (isinstance(positions, str) and positions == "all"):
            tracker = track_positions(lm)
            stack.callback(tracker.remove)
            weights = lambda: position_weights(positions, tracker.require())  # noqa: E731
        stack.enter_context(edit(lm, {site: clamp_fn(sae, latent, value, weights)}))
        yield


def sae_add_vector(
    lm: LoadedModel, sae: SparseAutoencoder, latent: int, site: str | None = None, norm: float | None = None
) -> SteeringVector:
    """The latent's decoder direction as a SteeringVector (unit norm, or `norm`), applied with `.apply(lm, c)`."""
    _check(lm, sae, latent)
    site = _site(sae, site)
    d = sae.direction(latent).float()
    d = d / d.norm() * (1.0 if norm is None else norm)
    options = {"latent": int(latent), "d_sae": sae.d_sae, "architecture": sae.cfg.architecture}
    return SteeringVector({site: d}, _meta(lm, "sae_add", [], "-", options))


# --- a fitted clamp under the steering contract (steering.contract.Intervention; fitted in sae.methods) ---


@dataclass
class SAEClamp:
    """A fitted clamp, an Intervention: `apply(lm, coefficient)` clamps the latent to coefficient x `scale`.

    `scale` (see sae.methods.fit_sae_clamp): by default the mean-difference norm of the pairs divided by the
    latent's decoder norm, so that where the latent is off, coefficient c moves the residual as far as
    mean_diff at coefficient c (coefficients comparable across methods); or the latent's largest
    activation on the positive texts (AxBench-style multiples of the maximum activation).
    """

    sae: SparseAutoencoder
    latent: int
    site: str
    scale: float
    meta: dict = field(default_factory=dict)

    @property
    def sites(self) -> list[str]:
        return [self.site]

    def __repr__(self) -> str:
        return f"SAEClamp(latent {self.latent} at {self.site}, scale {self.scale:.4g}, d_sae {self.sae.cfg.d_sae})"

    @contextmanager
    def apply(self, lm: LoadedModel, coefficient: float = 1.0, positions: str | Tensor = "all") -> Iterator[None]:
        coefficient = check_coefficient(coefficient)
        with sae_clamp(lm, self.sae, self.latent, coefficient * self.scale, self.site, positions):
            yield


def latent_completions(
    lm: LoadedModel,
    sae: SparseAutoencoder,
    latent: int,
    values: Sequence[float],
    prompts: Sequence[str],
    mode: str = "clamp",
    max_new_tokens: int = 30,
) -> dict[str, list[str]]:
    """`steerscope sae steer`: greedy completions unsteered and, per value, with the latent clamped to it
    (mode 'clamp') or with its unit decoder row added at that coefficient (mode 'add')."""
    if mode not in ("clamp", "add"):
        raise ValueError(f"mode must be clamp or add, got {mode!r}")
    _check(lm, sae, latent)
    values = [check_coefficient(v, "the latent value (--value)") for v in values]
    whole(max_new_tokens, "max_new_tokens (--max-new-tokens)", 1)
    texts = {}
    for v in [None, *values]:
        if v is None:
            ctx, label = nullcontext(), "unsteered"
        elif mode == "clamp":
            ctx, label = sae_clamp(lm, sae, latent, v), f"latent {latent} := {v:g}"
        else:
            ctx, label = sae_add_vector(lm, sae, latent).apply(lm, v), f"{v:+g} x decoder row {latent}"
        with ctx:
            texts[label] = generate_text(lm, list(prompts), max_new_tokens=max_new_tokens, repetition_penalty=1.3)
    return texts
