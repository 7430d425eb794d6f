"""The SAELens on-disk layout: a folder with `cfg.json` and `sae_weights.safetensors`.

Weights: W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae], b_dec [d_in] (jumprelu: threshold [d_sae]).
We write the SAELens 6 config (architecture, d_in, d_sae, k, dtype, device, apply_b_dec_to_input,
normalize_activations, reshape_activations, metadata with hook_name / model_name) and read both it and
the older flat layout (hook_name or hook_point, activation_fn_str / activation_fn + activation_fn_kwargs).
Hook names are TransformerLens names ('blocks.10.hook_resid_pre'), mapped to sites ('resid_pre.10').

A TopK SAE saved with `rescale_acts_by_decoder_norm` (SAELens: pre-activations times each decoder row's norm,
latents divided by it before decoding) is loaded with that norm folded in (W_enc and b_enc times it, W_dec
rows divided by it, as SAELens's fold_W_dec_norm), so its latents and reconstructions equal SAELens's;
SAELens's standard and JumpReLU SAEs have no such option and ignore the key, and so do we.
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
from ..core.sites import SiteError, hook_to_site, site_to_hook, split_site
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


def _whole_field(raw: dict, key: str, where: str, low: int = 1) -> int:
    """A cfg.json field that must be a whole number >= low (not a bool, a string or a float with a fraction)."""
    value = raw[key]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SAEFileError(f"{where}: {key} must be a whole number >= {low}, got {value!r}")
    return value


def config_from_saelens(raw: dict, where: str = "cfg.json") -> SAEConfig:
    """An SAEConfig from a SAELens cfg.json dict (6.x or the older flat layout); a field of the wrong type or
    out of range is one SAEFileError naming it."""
    if not isinstance(raw, dict):
        raise SAEFileError(f"{where} must hold a JSON object (an SAELens config), got {type(raw).__name__}")
    meta = raw.get("metadata") or raw.get("meta") or {}
    if not isinstance(meta, dict):
        raise SAEFileError(f"{where}: metadata must be a JSON object, got {meta!r}")
    for key in ("d_in", "d_sae"):
        if key not in raw:
            raise SAEFileError(f"{where} has no {key!r}; an SAELens config names d_in and d_sae")
    d_in, d_sae = _whole_field(raw, "d_in", where), _whole_field(raw, "d_sae", where)
    arch = raw.get("architecture", "standard")
    act = raw.get("activation_fn", raw.get("activation_fn_str", "relu"))
    kwargs = raw.get("activation_fn_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise SAEFileError(f"{where}: activation_fn_kwargs must be a JSON object, got {kwargs!r}")
    if arch == "standard" and act == "topk":  # pre-6 TopK SAEs: standard architecture, topk activation
        arch = "topk"
    if arch == "relu":
        arch = "standard"
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise SAEFileError(f"{where}: architecture {arch!r} is not supported; use one of {', '.join(ARCHITECTURES)}")
    k = None
    if arch == "topk":
        source = raw if raw.get("k") is not None else kwargs
        if source.get("k") is None:
            raise SAEFileError(f"{where}: a topk SAE needs k (1..d_sae = {d_sae}); none is given")
        k = _whole_field(source, "k", where)
        if k > d_sae:
            raise SAEFileError(f"{where}: k must be in 1..d_sae ({d_sae}), got {k}")
    norm = raw.get("normalize_activations", "none")
    if norm not in ("none", False, None):
        raise SAEFileError(
            f"{where}: normalize_activations={norm!r} needs a scaling factor steerscope does not apply; "
            "fold it into the weights first (SAELens: fold_activation_norm_scaling_factor) and save again"
        )
    if raw.get("reshape_activations", "none") != "none":
        raise SAEFileError(f"{where}: reshape_activations={raw['reshape_activations']!r} (hook_z) is not supported")
    b_dec_in = raw.get("apply_b_dec_to_input", True)
    if not isinstance(b_dec_in, bool):
        raise SAEFileError(f"{where}: apply_b_dec_to_input must be true or false, got {b_dec_in!r}")
    site = _site_field(meta, raw, where)
    model_name = meta.get("model_name") or raw.get("model_name")
    if model_name is not None and not isinstance(model_name, str):
        raise SAEFileError(f"{where}: model_name must be a string, got {model_name!r}")
    keep = {k2: v for k2, v in meta.items() if k2 not in ("hook_name", "model_name", "steerscope_site")}
    return SAEConfig(
        d_in=d_in,
        d_sae=d_sae,
        architecture=arch,
        k=k,
        apply_b_dec_to_input=b_dec_in,
        site=site,
        model_name=model_name,
        meta=keep,
    )


def _site_field(meta: dict, raw: dict, where: str) -> str | None:
    """The site the SAE reads: metadata.steerscope_site, or the hook name mapped to a site; it must be one."""
    if meta.get("steerscope_site") is not None:
        key, value = "steerscope_site", meta["steerscope_site"]
    else:
        key = next((k for k in ("hook_name", "hook_point") if (meta.get(k) or raw.get(k)) is not None), "hook_name")
        value = meta.get(key) or raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise SAEFileError(f"{where}: {key} must be a string such as 'blocks.10.hook_resid_pre', got {value!r}")
    try:
        site = hook_to_site(value)
        split_site(site)
    except (SiteError, TypeError) as exc:
        raise SAEFileError(
            f"{where}: {key} {value!r} is not a site steerscope can hook ({exc}); expected a TransformerLens name "
            "such as 'blocks.10.hook_resid_pre' (or metadata.steerscope_site such as 'resid_pre.10')"
        ) from exc
    return site


def _require(*paths: Path) -> None:
    for p in paths:
        if not p.is_file():
            raise SAEFileError(f"{p} is missing; an SAE folder holds {CFG_FILE} and {WEIGHTS_FILE} (SAELens layout)")


def _raw_config(folder: str | Path) -> tuple[dict, str]:
    cfg_path = Path(folder) / CFG_FILE
    _require(cfg_path)
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SAEFileError(f"{cfg_path} is not valid JSON ({exc.msg})") from exc
    return raw, str(cfg_path)


def _config(folder: str | Path) -> tuple[SAEConfig, bool]:
    """The folder's config, and whether its decoder norms must be folded in on loading."""
    raw, where = _raw_config(folder)
    cfg = config_from_saelens(raw, where)
    rescaled = rescales_by_decoder_norm(raw, cfg, where)
    if rescaled:
        cfg.meta["decoder_norm_folded"] = True  # load_saelens folds it: the loaded SAE has unit decoder rows
    return cfg, rescaled


def read_config(folder: str | Path) -> SAEConfig:
    """The config of an SAE folder without loading its weights."""
    return _config(folder)[0]


def rescales_by_decoder_norm(raw: dict, cfg: SAEConfig, where: str = "cfg.json") -> bool:
    """Whether SAELens would rescale this SAE's latents by its decoder norms (TopK only, as in SAELens 6)."""
    flag = raw.get("rescale_acts_by_decoder_norm", False)
    if not isinstance(flag, bool):
        raise SAEFileError(f"{where}: rescale_acts_by_decoder_norm must be true or false, got {flag!r}")
    return flag and cfg.architecture == "topk"


@torch.no_grad()
def fold_decoder_norm(sae: SparseAutoencoder, where: str = "the SAE") -> None:
    """Fold each decoder row's norm into the encoder (W_enc columns and b_enc times it, W_dec rows divided by
    it): the SAE then computes what SAELens computes with `rescale_acts_by_decoder_norm`, latents included."""
    norms = sae.W_dec.norm(dim=-1)
    if not bool((norms > 0).all()):
        dead = int((norms == 0).nonzero()[0, 0])
        raise SAEFileError(
            f"{where}: decoder row {dead} is zero, and rescale_acts_by_decoder_norm divides latents by the "
            "decoder norms; SAELens itself would produce NaN for it"
        )
    sae.W_enc.mul_(norms)
    sae.b_enc.mul_(norms)
    sae.W_dec.div_(norms.unsqueeze(-1))


def load_saelens(folder: str | Path) -> SparseAutoencoder:
    """Load an SAE folder in the SAELens layout (ours or SAELens's own)."""
    folder = Path(folder)
    weights_path = folder / WEIGHTS_FILE
    _require(folder / CFG_FILE, weights_path)
    cfg, rescaled = _config(folder)
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
    if rescaled:
        fold_decoder_norm(sae, str(weights_path))
    return sae
