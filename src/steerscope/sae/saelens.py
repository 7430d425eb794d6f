"""The SAELens on-disk layout: a folder with `cfg.json` and `sae_weights.safetensors`.

Weights: W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae], b_dec [d_in] (jumprelu: threshold [d_sae]).
We write the SAELens 6 config (architecture, d_in, d_sae, k, dtype, device, apply_b_dec_to_input,
normalize_activations, reshape_activations, metadata with hook_name / model_name) and read both it and
the older flat layout (hook_name or hook_point, activation_fn_str / activation_fn + activation_fn_kwargs).
Hook names are TransformerLens names ('blocks.10.hook_resid_pre'), mapped to sites ('resid_pre.10').
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .._version import __version__
from ..core.errors import SteerscopeError
from ..core.io import atomic_write_bytes, write_json
from ..core.sites import hook_to_site, site_to_hook
from .model import ARCHITECTURES, SAEConfig, SparseAutoencoder

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SAELENS_VERSION = "6.0.0"  # the config layout we write


class SAEFileError(SteerscopeError, ValueError):
    """An SAE folder that cannot be read; the message says what is wrong and what to do."""


def save_saelens(sae: SparseAutoencoder, folder: str | Path, extra: dict | None = None) -> Path:
    """Write `cfg.json` and `sae_weights.safetensors` into `folder` (atomically, file by file)."""
    folder = Path(folder)
    cfg = sae.cfg
    metadata = {
        "model_name": cfg.model_name,
        "hook_name": site_to_hook(cfg.site),
        "sae_lens_version": SAELENS_VERSION,
        "sae_lens_training_version": SAELENS_VERSION,
        "steerscope_version": __version__,
        "steerscope_site": cfg.site,
        **cfg.meta,
        **(extra or {}),
    }
    config = {
        "architecture": cfg.architecture,
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": metadata,
    }
    if cfg.k is not None:
        config["k"] = cfg.k
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in sae.state_dict().items()}
    atomic_write_bytes(folder / WEIGHTS_FILE, save(tensors))
    write_json(folder / CFG_FILE, config)
    return folder


def config_from_saelens(raw: dict, where: str = "cfg.json") -> SAEConfig:
    """An SAEConfig from a SAELens cfg.json dict (6.x or the older flat layout)."""
    meta = raw.get("metadata") or raw.get("meta") or {}
    try:
        d_in, d_sae = int(raw["d_in"]), int(raw["d_sae"])
    except KeyError as exc:
        raise SAEFileError(f"{where} has no {exc.args[0]!r}; an SAELens config names d_in and d_sae") from exc
    arch = raw.get("architecture", "standard")
    act = raw.get("activation_fn", raw.get("activation_fn_str", "relu"))
    k = raw.get("k") or (raw.get("activation_fn_kwargs") or {}).get("k")
    if arch == "standard" and act == "topk":  # pre-6 TopK SAEs: standard architecture, topk activation
        arch = "topk"
    if arch not in ARCHITECTURES:
        raise SAEFileError(f"{where}: architecture {arch!r} is not supported; use one of {', '.join(ARCHITECTURES)}")
    norm = raw.get("normalize_activations", "none")
    if norm not in ("none", False, None):
        raise SAEFileError(
            f"{where}: normalize_activations={norm!r} needs a scaling factor steerscope does not apply; "
            "fold it into the weights first (SAELens: fold_activation_norm_scaling_factor) and save again"
        )
    if raw.get("reshape_activations", "none") != "none":
        raise SAEFileError(f"{where}: reshape_activations={raw['reshape_activations']!r} (hook_z) is not supported")
    hook = meta.get("hook_name") or raw.get("hook_name") or raw.get("hook_point")
    site = meta.get("steerscope_site") or hook_to_site(hook)
    keep = {k2: v for k2, v in meta.items() if k2 not in ("hook_name", "model_name", "steerscope_site")}
    return SAEConfig(
        d_in=d_in,
        d_sae=d_sae,
        architecture=arch,
        k=int(k) if k is not None else None,
        apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", True)),
        site=site,
        model_name=meta.get("model_name") or raw.get("model_name"),
        meta=keep,
    )


def _require(*paths: Path) -> None:
    for p in paths:
        if not p.is_file():
            raise SAEFileError(f"{p} is missing; an SAE folder holds {CFG_FILE} and {WEIGHTS_FILE} (SAELens layout)")


def read_config(folder: str | Path) -> SAEConfig:
    """The config of an SAE folder without loading its weights."""
    cfg_path = Path(folder) / CFG_FILE
    _require(cfg_path)
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SAEFileError(f"{cfg_path} is not valid JSON ({exc.msg})") from exc
    return config_from_saelens(raw, str(cfg_path))


def load_saelens(folder: str | Path) -> SparseAutoencoder:
    """Load an SAE folder in the SAELens layout (ours or SAELens's own)."""
    folder = Path(folder)
    weights_path = folder / WEIGHTS_FILE
    _require(folder / CFG_FILE, weights_path)
    cfg = read_config(folder)
    try:
        tensors = load_file(weights_path)
    except (SafetensorError, OSError) as exc:
        raise SAEFileError(f"{weights_path} is not a readable safetensors file ({exc})") from exc
    if "scaling_factor" in tensors:  # old SAELens files: all ones unless fine-tuned
        scale = tensors.pop("scaling_factor")
        if not torch.allclose(scale, torch.ones_like(scale)):
            raise SAEFileError(f"{weights_path} has a fine-tuning scaling_factor; fold it into W_dec first")
    sae = SparseAutoencoder(cfg, seed=None)
    expected = {k: tuple(v.shape) for k, v in sae.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != got:
        raise SAEFileError(f"{weights_path} holds {got}, but a {cfg.architecture} SAE of this config needs {expected}")
    sae.load_state_dict({k: v.float() for k, v in tensors.items()})
    return sae
