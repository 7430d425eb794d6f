"""Does SAELens itself load our SAE folders, and do we load SAELens's? Encode and decode compared numerically.

Needs an environment with SAELens next to steerscope (SAELens pulls TransformerLens; pin torch first so no
CUDA build is pulled):

    python3 -m venv .venv-saelens && . .venv-saelens/bin/activate
    pip install torch==2.13.0 && pip install -c <(echo torch==2.13.0) sae-lens && pip install --no-deps -e .
    python benchmarks/check_saelens.py [SAE_FOLDER ...]

For each SAE folder we wrote (default: a random TopK, a random ReLU and a random JumpReLU SAE with some
negative thresholds, saved by steerscope), SAELens's `SAE.load_from_disk` loads it and both encode and decode
the same inputs; then SAELens saves TopK, standard and JumpReLU SAEs with random weights (`save_model`) and
steerscope's `load_saelens` reads them back, plus the two edge cases: a TopK SAE with
`rescale_acts_by_decoder_norm=True` and decoder rows far from unit norm (we fold the norms in on loading), and
a JumpReLU SAE whose thresholds are partly negative (SAELens applies a ReLU before the threshold). Prints the
largest absolute differences of latents and reconstructions; exits 1 if any exceeds 1e-4.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import sae_lens
import torch
from sae_lens import SAE, JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig

from steerscope.sae.model import SAEConfig, SparseAutoencoder
from steerscope.sae.saelens import load_saelens, save_saelens

TOLERANCE = 1e-4


def _randomize(module: torch.nn.Module, seed: int, negative_thresholds: bool = False) -> None:
    """Random weights (decoder rows of norm about 3.5, far from 1); thresholds >= 0, or centred on 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            values = torch.randn(p.shape, generator=g)
            if name == "threshold":
                p.copy_(values * 0.5 if negative_thresholds else values.abs() * 0.1)
            else:
                p.copy_(values * 0.5)


def _inputs(d_in: int, b_dec: torch.Tensor, seed: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return b_dec.detach() + torch.randn(64, d_in, generator=g) * 2.0


def _compare(ours: SparseAutoencoder, theirs, label: str) -> bool:
    x = _inputs(ours.d_in, ours.b_dec)
    with torch.no_grad():
        f_ours, f_theirs = ours.encode(x), theirs.encode(x)
        r_ours, r_theirs = ours.decode(f_ours), theirs.decode(f_theirs)
    df, dr = float((f_ours - f_theirs).abs().max()), float((r_ours - r_theirs).abs().max())
    same_active = bool(torch.equal(f_ours > 0, f_theirs > 0))
    ok = df < TOLERANCE and dr < TOLERANCE and same_active
    l0 = float((f_ours > 0).sum(-1).float().mean())
    print(
        f"{label:52s} L0 {l0:6.1f}  max |latents| diff {df:.1e}  max |reconstruction| diff {dr:.1e}  "
        f"same active set {same_active}  {'OK' if ok else 'MISMATCH'}"
    )
    return ok


def ours_in_saelens(folder: Path) -> bool:
    ours = load_saelens(folder)
    theirs = SAE.load_from_disk(str(folder), device="cpu")
    return _compare(ours, theirs, f"ours -> SAELens: {folder.name} ({type(theirs).__name__})")


def theirs_in_ours(tmp: Path) -> list[bool]:
    results = []
    meta = {"hook_name": "blocks.3.hook_resid_pre", "model_name": "gpt2"}
    common = {"d_in": 48, "d_sae": 96, "dtype": "float32", "device": "cpu"}
    made = [
        ("topk", "topk", TopKSAE(TopKSAEConfig(k=6, **common)), False),
        ("standard", "standard", StandardSAE(StandardSAEConfig(**common)), False),
        ("jumprelu", "jumprelu", JumpReLUSAE(JumpReLUSAEConfig(**common)), False),
        ("topk_rescaled", "topk", TopKSAE(TopKSAEConfig(k=6, rescale_acts_by_decoder_norm=True, **common)), False),
        ("jumprelu_negative_thresholds", "jumprelu", JumpReLUSAE(JumpReLUSAEConfig(**common)), True),
    ]
    for i, (label, arch, sae, negative) in enumerate(made):
        for key, value in meta.items():
            setattr(sae.cfg.metadata, key, value)
        _randomize(sae, seed=i, negative_thresholds=negative)
        folder = tmp / f"saelens_{label}"
        sae.save_model(folder)
        ours = load_saelens(folder)
        ok = ours.cfg.site == "resid_pre.3" and ours.cfg.architecture == arch
        if label == "topk_rescaled":
            norms = sae.W_dec.detach().norm(dim=-1)
            print(
                f"  (decoder norms {float(norms.min()):.2f}..{float(norms.max()):.2f}; folded: "
                f"{ours.cfg.meta.get('decoder_norm_folded')}; ignoring the flag would differ by "
                f"{_ignored_flag_diff(sae):.1f} in the latents)"
            )
        if negative:
            print(f"  ({int((sae.threshold < 0).sum())} of {sae.cfg.d_sae} thresholds < 0)")
        results.append(_compare(ours, sae, f"SAELens -> ours: {label} (site {ours.cfg.site})") and ok)
    return results


def _ignored_flag_diff(sae) -> float:
    """How far the latents of the same weights are from SAELens's if the rescale flag were ignored."""
    plain = SparseAutoencoder(SAEConfig(d_in=sae.cfg.d_in, d_sae=sae.cfg.d_sae, architecture="topk", k=sae.cfg.k))
    plain.load_state_dict({k: v.detach().clone() for k, v in sae.state_dict().items()})
    x = _inputs(sae.cfg.d_in, sae.b_dec)
    with torch.no_grad():
        return float((plain.encode(x) - sae.encode(x)).abs().max())


def main(folders: list[str]) -> int:
    print(f"SAELens {sae_lens.__version__}, torch {torch.__version__}")
    ok = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not folders:
            for i, (arch, k) in enumerate((("topk", 8), ("standard", None), ("jumprelu", None))):
                sae = SparseAutoencoder(
                    SAEConfig(d_in=64, d_sae=256, architecture=arch, k=k, site="resid_pre.5"), seed=i
                )
                _randomize(sae, seed=10 + i, negative_thresholds=arch == "jumprelu")
                folders.append(str(save_saelens(sae, tmp / f"ours_{arch}")))
        ok += [ours_in_saelens(Path(f)) for f in folders]
        ok += theirs_in_ours(tmp)
    print("all equal" if all(ok) else "MISMATCHES above")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
