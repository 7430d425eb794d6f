"""`SteerscopeModelAPI`: Inspect's model interface over a steered model, in this process or through a running
`steerscope serve` (its OpenAI-compatible /v1 API).

Model args (`-M name=value`): `vector` (a vector file; with `base_url`, a name in the server's --vectors folder),
`coefficient` (default 1), `positions` (default all), or `steering` (a list, or its JSON text, of
`{"vector", "coefficient", "positions"}` for several vectors); `dtype` and `device` for a model loaded here.
Decoding comes from Inspect's GenerateConfig; with no temperature given, decoding is greedy. Every output's
metadata holds the steering's provenance (file, sha256, method, sites, pairs, model fingerprint, coefficient), so
it lands in the Inspect log next to each sample.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import httpx
from inspect_ai.model import (
    ChatCompletionChoice,
    ChatMessage,
    ChatMessageAssistant,
    GenerateConfig,
    ModelAPI,
    ModelOutput,
    ModelUsage,
)
from inspect_ai.tool import ToolChoice, ToolInfo

from ..core.generate import NoChatTemplateError, chat_prompt, generate_completions
from ..core.io import sha256_file
from ..core.loading import load_model
from ..core.models import LoadedModel
from ..core.validate import check_coefficient, finite, whole
from ..steering.requests import Steering, check_steering, steered
from ..steering.vector import SteeringVector

DEFAULT_MAX_TOKENS = 128
STOP_REASONS = {"stop": "stop", "length": "max_tokens"}


def steering_entries(vector: str | None, coefficient: Any, positions: str, steering: Any) -> list[dict[str, Any]]:
    """The model args' steering as a list of {"vector", "coefficient", "positions"}, checked for shape."""
    if steering is not None and vector is not None:
        raise ValueError("give either -M vector=... (with coefficient, positions) or -M steering=[...], not both")
    if isinstance(steering, str):
        try:
            steering = json.loads(steering)
        except ValueError as exc:
            raise ValueError(f"-M steering is not valid JSON ({exc}); give a list of objects") from None
    if steering is None:
        steering = [] if vector is None else [{"vector": vector, "coefficient": coefficient, "positions": positions}]
    if not isinstance(steering, list) or not all(isinstance(e, dict) and "vector" in e for e in steering):
        raise ValueError('-M steering must be a list of {"vector": FILE, "coefficient": C, "positions": "all"}')
    out = []
    for e in steering:
        extra = set(e) - {"vector", "coefficient", "positions"}
        if extra:
            raise ValueError(f"unknown steering field(s) {sorted(extra)}; use vector, coefficient, positions")
        c = e.get("coefficient", 1.0)
        c = float(c) if isinstance(c, str) else c
        out.append(
            {
                "vector": str(e["vector"]),
                "coefficient": check_coefficient(c, f"coefficient of {e['vector']}"),
                "positions": str(e.get("positions", "all")),
            }
        )
    return out


class SteerscopeModelAPI(ModelAPI):
    """A steerscope model for Inspect: `steerscope/<model spec>`."""

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig = GenerateConfig(),  # noqa: B008 (Inspect's own signature)
        vector: str | None = None,
        coefficient: Any = 1.0,
        positions: str = "all",
        steering: Any = None,
        dtype: str = "float32",
        device: str = "cpu",
        **model_args: Any,
    ) -> None:
        super().__init__(model_name, base_url, api_key, ["STEERSCOPE_API_KEY"], config)
        if model_args:
            raise ValueError(
                f"unknown model arg(s) {sorted(model_args)} for steerscope; use vector, coefficient, positions, "
                "steering, base_url, dtype, device"
            )
        self.entries = steering_entries(vector, coefficient, positions, steering)
        self._lock = threading.Lock()
        self.lm: LoadedModel | None = None
        self.steering: list[Steering] = []
        if base_url is None:
            self.lm = load_model(model_name, dtype=dtype, device=device)
            self.steering = [self._load(e) for e in self.entries]
            check_steering(self.lm, self.steering)  # a vector for another model fails here, before any sample

    def _load(self, entry: dict[str, Any]) -> Steering:
        path = Path(entry["vector"])
        vector = SteeringVector.load(path)
        return Steering(vector, entry["coefficient"], entry["positions"], str(path), sha256_file(path))

    def max_connections(self) -> int:
        return 1 if self.lm is not None else 4  # one model in this process: its hooks are global

    def max_tokens(self) -> int | None:
        return DEFAULT_MAX_TOKENS

    async def generate(
        self, input: list[ChatMessage], tools: list[ToolInfo], tool_choice: ToolChoice, config: GenerateConfig
    ) -> ModelOutput:
        if tools:
            raise ValueError("steerscope models do not call tools; run this task without tools")
        messages = [{"role": m.role, "content": m.text} for m in input]
        if any(m["role"] == "tool" for m in messages):
            raise ValueError("steerscope models take system, user and assistant messages, not tool results")
        settings = self._settings(config)
        if self.lm is None:
            return await self._remote(messages, settings)
        return await asyncio.to_thread(self._local, messages, settings)

    @staticmethod
    def _settings(config: GenerateConfig) -> dict[str, Any]:
        temperature = finite(config.temperature or 0.0, "temperature", 0.0, 2.0)
        return {
            "max_tokens": whole(config.max_tokens or DEFAULT_MAX_TOKENS, "max_tokens", 1),
            "temperature": temperature,
            "top_p": finite(config.top_p if config.top_p is not None else 1.0, "top_p", 0.0, 1.0),
            "seed": whole(config.seed if config.seed is not None else 0, "seed", 0),
            "stop": list(config.stop_seqs or []),
            "n": whole(config.num_choices or 1, "num_choices", 1),
        }

    def _local(self, messages: list[dict[str, str]], settings: dict[str, Any]) -> ModelOutput:
        lm = self.lm
        assert lm is not None
        try:
            prompt = chat_prompt(lm, messages)
        except NoChatTemplateError:  # a base model: the messages as plain text, one paragraph each
            prompt = "\n\n".join(m["content"] for m in messages)
        greedy = settings["temperature"] == 0
        with self._lock, steered(lm, self.steering):
            completions = generate_completions(
                lm,
                [prompt] * settings["n"],
                max_new_tokens=settings["max_tokens"],
                do_sample=not greedy,
                temperature=1.0 if greedy else settings["temperature"],
                top_p=1.0 if greedy else settings["top_p"],
                seed=settings["seed"],
                stop=settings["stop"],
            )
        n_prompt = len(lm.tokenizer(prompt)["input_ids"])
        n_out = sum(c.n_tokens for c in completions)
        return ModelOutput(
            model=self.model_name,
            choices=[
                ChatCompletionChoice(
                    message=ChatMessageAssistant(content=c.text, model=self.model_name, source="generate"),
                    stop_reason=STOP_REASONS[c.finish_reason],  # type: ignore[arg-type]
                )
                for c in completions
            ],
            usage=ModelUsage(input_tokens=n_prompt, output_tokens=n_out, total_tokens=n_prompt + n_out),
            metadata={"steerscope": {"model_fingerprint": lm.fingerprint(), "steering": self.provenance()}},
        )

    def provenance(self) -> list[dict]:
        return [s.provenance() for s in self.steering]

    async def _remote(self, messages: list[dict[str, str]], settings: dict[str, Any]) -> ModelOutput:
        body = {
            "model": self.model_name,
            "messages": messages,
            "max_tokens": settings["max_tokens"],
            "temperature": settings["temperature"],
            "top_p": settings["top_p"] or 1.0,
            "seed": settings["seed"],
            "n": settings["n"],
            "steering": self.entries,
        }
        if settings["stop"]:
            body["stop"] = settings["stop"]
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        url = str(self.base_url).rstrip("/") + "/chat/completions"
        async with httpx.AsyncClient(timeout=600) as client:
            response = await client.post(url, json=body, headers=headers)
        data = response.json()
        if response.status_code != 200:
            message = data.get("error", {}).get("message", response.text) if isinstance(data, dict) else response.text
            raise RuntimeError(
                f"steerscope serve at {self.base_url} refused the request ({response.status_code}): {message}"
            )
        usage = data.get("usage", {})
        return ModelOutput(
            model=self.model_name,
            choices=[
                ChatCompletionChoice(
                    message=ChatMessageAssistant(
                        content=c["message"]["content"], model=self.model_name, source="generate"
                    ),
                    stop_reason=STOP_REASONS.get(c["finish_reason"], "unknown"),  # type: ignore[arg-type]
                )
                for c in data["choices"]
            ],
            usage=ModelUsage(
                input_tokens=usage.get("prompt_tokens", 0),
                output_tokens=usage.get("completion_tokens", 0),
                total_tokens=usage.get("total_tokens", 0),
            ),
            metadata={"steerscope": {"server": self.base_url, **data.get("steerscope", {})}},
        )
