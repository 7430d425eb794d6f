"""Sparse autoencoder on one site: encode, decode, and the error term.

    pre  = (x - b_dec) @ W_enc + b_enc          (b_dec subtracted when `apply_b_dec_to_input`)
    f    = act(pre)                            topk: keep the k largest, then ReLU; standard: ReLU;
                                               jumprelu: ReLU(pre) where pre > threshold, else 0 (as
                                               SAELens: the ReLU matters only where a threshold is < 0)
    x_hat = f @ W_dec + b_dec                  error = x - x_hat

Shapes and names follow SAELens (W_enc [d_in, d_sae], W_dec [d_sae, d_in]), so its files load as they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

ARCHITECTURES = ("topk", "standard", "jumprelu")  # SAELens names; "standard" is ReLU (+ L1 when training)


@dataclass
class SAEConfig:
    """What defines an SAE and where it reads; `site` is a steerscope site name (e.g. 'resid_pre.10')."""

    d_in: int
    d_sae: int
    architecture: str = "topk"
    k: int | None = 32
    apply_b_dec_to_input: bool = True
    site: str | None = None
    model_name: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture == "relu":
            self.architecture = "standard"
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown SAE architecture {self.architecture!r}; use one of {', '.join(ARCHITECTURES)}")
        if self.d_in < 1 or self.d_sae < 1:
            raise ValueError(f"d_in and d_sae must be positive, got {self.d_in}, {self.d_sae}")
        if self.architecture == "topk":
            if self.k is None or not 1 <= self.k <= self.d_sae:
                raise ValueError(f"a topk SAE needs 1 <= k <= d_sae ({self.d_sae}), got k={self.k}")
        else:
            self.k = None

    def to_dict(self) -> dict:
        return asdict(self)


class SparseAutoencoder(nn.Module):
    """An SAE with SAELens parameter names; float32 unless moved."""

    def __init__(self, cfg: SAEConfig, seed: int | None = 0):
        super().__init__()
        self.cfg = cfg
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        w_dec = torch.randn(cfg.d_sae, cfg.d_in, generator=g)
        w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.T.clone().contiguous())
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        if cfg.architecture == "jumprelu":
            self.threshold = nn.Parameter(torch.zeros(cfg.d_sae))

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    def pre_acts(self, x: Tensor) -> Tensor:
        """Encoder pre-activations [..., d_sae]."""
        x = x.to(self.W_enc.dtype)
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activate(self, pre: Tensor) -> Tensor:
        """Latent activations from pre-activations (the architecture's nonlinearity)."""
        if self.cfg.architecture == "topk":
            top = pre.topk(self.cfg.k, dim=-1)
            return torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
        if self.cfg.architecture == "jumprelu":
            return pre.relu() * (pre > self.threshold)
        return pre.relu()

    def encode(self, x: Tensor) -> Tensor:
        """Latent activations [..., d_sae] of activations x [..., d_in]."""
        return self.activate(self.pre_acts(x))

    def decode(self, f: Tensor) -> Tensor:
        """Reconstruction [..., d_in] from latent activations."""
        return f @ self.W_dec + self.b_dec

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def error(self, x: Tensor) -> Tensor:
        """What the SAE misses: x - decode(encode(x))."""
        return x.to(self.W_dec.dtype) - self(x)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Scale decoder rows to unit norm (the encoder is left as it is)."""
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))

    def direction(self, latent: int) -> Tensor:
        """The decoder row of a latent [d_in] (what a unit of its activation adds)."""
        self.check_latent(latent)
        return self.W_dec[latent].detach()

    def check_latent(self, latent: int) -> None:
        if not 0 <= int(latent) < self.d_sae:
            raise ValueError(f"latent {latent} is out of range; this SAE has latents 0..{self.d_sae - 1}")
