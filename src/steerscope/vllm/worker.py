"""steerscope's vLLM worker extension: forward hooks inside each vLLM worker that add per-request vectors and
read per-request activations.

vLLM mixes this class into its worker when the engine is built with
`worker_extension_cls="steerscope.vllm.worker.SteerscopeWorkerExtension"`; the driver calls its `steerscope_*`
methods on every worker through `LLM.collective_rpc`. A request names what it wants in its sampling parameters,
`extra_args={"steerscope": {"steer": KEY, "capture": KEY}}`, where a steer key was registered beforehand on
every worker. In each forward call a pre-hook on the decoder stack maps vLLM's flat token rows to requests
(`query_start_loc` of the forward context) and builds one plan of rows and deltas per site (`plan.py`); the site
hooks then add them out of place (`index_add`) and copy out the rows a capture asked for.

Decoder layers of the Llama family in vLLM return `(hidden, residual)` with the residual add fused into the
next norm, so the residual stream after a layer is `hidden + residual`: that is what `resid_pre` / `resid_post` /
`final` read, and an addition there goes into `hidden`. Under tensor parallelism every rank holds the whole
(replicated) residual and adds the same rows; under pipeline parallelism a rank hooks only the layers it holds.
This module imports vLLM only inside the worker (where vLLM is running anyway).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .plan import Addition, RequestRows, apply_deltas, site_deltas
from .sites import hook_points

EXTRA_KEY = "steerscope"


class SteerscopeWorkerExtension:
    """Methods vLLM adds to its worker (the worker holds `model_runner`)."""

    model_runner: Any

    # --- state, created on first use (vLLM builds the worker; we add no __init__) --------------------

    def _ss(self) -> dict[str, Any]:
        state = self.__dict__.get("_steerscope")
        if state is None:
            state = {"vectors": {}, "hooks": {}, "plan": {}, "captures": [], "captured": {}, "handles": []}
            self.__dict__["_steerscope"] = state
        return state

    def _decoder(self) -> nn.Module:
        model = self.model_runner.model
        inner = getattr(model, "model", None)
        if inner is None or not hasattr(inner, "layers"):
            raise RuntimeError(f"steerscope cannot find the decoder layers of vLLM's {type(model).__name__}")
        return inner

    # --- RPC: called by the driver on every worker -----------------------------------------------

    def steerscope_describe(self) -> dict[str, Any]:
        """The model as this worker holds it: model type, layers, width and which layers are on this rank."""
        inner = self._decoder()
        config = self.model_runner.model_config.hf_config
        return {
            "model_type": str(getattr(config, "model_type", "")),
            "n_layers": len(inner.layers),
            "d_model": int(config.hidden_size),
            "start_layer": int(getattr(inner, "start_layer", 0)),
            "end_layer": int(getattr(inner, "end_layer", len(inner.layers))),
        }

    def steerscope_register(self, key: str, additions: list[tuple[str, list, str]]) -> None:
        """Keep a request's additions (site, coefficient-scaled vector as nested lists, positions) under `key`."""
        state = self._ss()
        state["vectors"][key] = [
            Addition(site, torch.tensor(vec, dtype=torch.float32), pos) for site, vec, pos in additions
        ]
        self._ensure_hooks([site for site, _, _ in additions])

    def steerscope_forget(self, keys: list[str]) -> None:
        """Drop registered additions and captured activations."""
        state = self._ss()
        for key in keys:
            state["vectors"].pop(key, None)
            state["captured"].pop(key, None)

    def steerscope_watch(self, sites: list[str]) -> None:
        """Make sure hooks exist at `sites` (for captures)."""
        self._ensure_hooks(sites)

    def steerscope_collect(self, keys: list[str]) -> dict[str, dict[str, tuple[list[int], list]]]:
        """Captured prompt activations per capture key and site: (token indices, rows as nested lists); forgets them."""
        state = self._ss()
        out: dict[str, dict[str, tuple[list[int], list]]] = {}
        for key in keys:
            per_site = state["captured"].pop(key, {})
            out[key] = {}
            for site, parts in per_site.items():
                index = torch.cat([p[0] for p in parts])
                rows = torch.cat([p[1] for p in parts])
                out[key][site] = (index.tolist(), rows.tolist())
        return out

    # --- hooks -----------------------------------------------------------------------------------

    def _ensure_hooks(self, sites: list[str]) -> None:
        state = self._ss()
        inner = self._decoder()
        for site in sites:
            if site in state["hooks"]:
                continue
            for module, phase, reader, writer in hook_points(inner, site):
                hook = self._make_hook(site, reader, writer)
                if phase == "pre":
                    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
                else:
                    handle = module.register_forward_hook(hook)
                state["handles"].append(handle)
            state["hooks"][site] = True

    def _refresh_plan(self) -> None:
        """At the first site hook of a forward call: this call's rows, deltas and captures, per site.

        (vLLM calls its decoder stack's `forward` directly, past module hooks, so the plan cannot be made in a
        pre-hook there; a forward call is recognised by its forward-context object.)"""
        state = self._ss()
        context = _forward_context()
        if context is state.get("context"):
            return
        state["context"], state["plan"], state["captures"] = context, {}, []
        if context is None:
            return
        runner = self.model_runner
        wanted = []  # (batch index, request state, what it asks for): most steps of a bare batch stop here
        for i, req_id in enumerate(runner.input_batch.req_ids):
            req = runner.requests.get(req_id)
            extra = (getattr(getattr(req, "sampling_params", None), "extra_args", None) or {}).get(EXTRA_KEY)
            if extra:
                wanted.append((i, req, extra))
        starts = _query_start_loc(context) if wanted else None
        if starts is None:
            return
        positions = runner.positions[: int(starts[-1])].cpu()
        rows: list[RequestRows] = []
        for i, req, extra in wanted:
            if i + 1 >= len(starts):
                continue
            start, stop = int(starts[i]), int(starts[i + 1])
            prompt_len = len(req.prompt_token_ids or ())
            additions = state["vectors"].get(extra.get("steer"), ()) if extra.get("steer") else ()
            rows.append(RequestRows(start, stop, prompt_len, additions))
            if extra.get("capture"):
                index = positions[start:stop].to(torch.long)
                keep = index < prompt_len
                if bool(keep.any()):
                    state["captures"].append((extra["capture"], start, stop, index[keep], keep))
        if any(r.additions for r in rows):
            d_model = int(runner.model_config.hf_config.hidden_size)
            state["plan"] = site_deltas(rows, positions, d_model, torch.float32)

    def _make_hook(self, site: str, reader: Callable | None, writer: Callable | None) -> Callable:
        state = self._ss()

        def hook(module: nn.Module, *rest: Any) -> Any:
            self._refresh_plan()
            captures = state["captures"]
            if captures and reader is not None:
                act = reader(*rest)
                for key, start, stop, index, keep in captures:
                    rows = act[start:stop][keep.to(act.device)].detach().to("cpu", torch.float32, copy=True)
                    state["captured"].setdefault(key, {}).setdefault(site, []).append((index, rows))
            if writer is not None and site in state["plan"]:
                return writer(rest, lambda h: apply_deltas(h, state["plan"], site))
            return None

        return hook


def _forward_context() -> Any:
    """vLLM's context of the current forward call (a new object per call), or None."""
    from vllm.forward_context import get_forward_context, is_forward_context_available

    return get_forward_context() if is_forward_context_available() else None


def _query_start_loc(context: Any) -> Tensor | None:
    """Row offsets of the requests in the current forward call, or None outside a real step."""
    if context is None:
        return None
    meta = context.attn_metadata
    if isinstance(meta, list):  # two micro-batches (DBO): not served
        return None
    if not meta:
        return None
    first = next(iter(meta.values()))
    starts = getattr(first, "query_start_loc_cpu", None)
    if starts is None:
        starts = getattr(first, "query_start_loc", None)
    return None if starts is None else starts.cpu()
