"""An OpenAI-compatible /chat/completions endpoint, configured from the environment (never required).

STEERSCOPE_LLM_URL (e.g. https://api.openai.com/v1), STEERSCOPE_LLM_MODEL, and STEERSCOPE_LLM_KEY if the
endpoint wants a key. Used by the synthetic pair writer and the LLM judge.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

ENV_URL, ENV_KEY, ENV_MODEL = "STEERSCOPE_LLM_URL", "STEERSCOPE_LLM_KEY", "STEERSCOPE_LLM_MODEL"


@dataclass
class ChatEndpoint:
    """One user message in, the assistant's reply out."""

    url: str
    key: str
    model: str
    temperature: float = 0.8
    timeout: float = 60.0

    @classmethod
    def from_env(cls, purpose: str = "the endpoint", temperature: float = 0.8) -> ChatEndpoint:
        url, key, model = os.environ.get(ENV_URL), os.environ.get(ENV_KEY), os.environ.get(ENV_MODEL)
        if not url or not model:
            raise ValueError(
                f"{purpose} needs {ENV_URL} (e.g. https://api.openai.com/v1) and {ENV_MODEL} in the "
                f"environment, and {ENV_KEY} if the endpoint wants a key"
            )
        return cls(url=url.rstrip("/"), key=key or "", model=model, temperature=temperature)

    def chat(self, prompt: str, seed: int = 0) -> str:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": self.temperature,
            "seed": seed,
        }
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(f"{self.url}/chat/completions", json.dumps(body).encode(), headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.loads(response.read())
        except (urllib.error.URLError, TimeoutError) as exc:
            raise ConnectionError(f"the endpoint {self.url} did not answer: {exc}") from exc
        try:
            return payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"unexpected reply from {self.url}: {str(payload)[:200]}") from exc
