"""Contrast data: pairs of a positive and a negative text.

Formats: jsonl `{"positive": ..., "negative": ...}` (optional "split"); A/B items in the CAA layout
(`question`, `answer_matching_behavior`, `answer_not_matching_behavior`; json list or jsonl), turned into
"<question>\\n\\nAnswer: (A" so the answer letter is the last token; CSV with `positive,negative`
columns. Built-in sets (written for steerscope) have a train and a held-out test split.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..core.errors import SteerscopeError
from ..core.io import atomic_write_text
from ..core.reading import file_error, read_json, read_jsonl, read_text
from ..evaluate.behaviour import ABItemError, ab_item


@dataclass(frozen=True)
class ContrastPair:
    positive: str
    negative: str


class PairDataError(SteerscopeError, ValueError):
    """Contrast data that cannot be used; the message names the file and line."""


PAIR_FILE_EXPECTED = {
    ".jsonl": 'one JSON object per line with "positive" and "negative" strings',
    ".json": 'a JSON list of objects with "positive" and "negative" strings',
    ".csv": "UTF-8 CSV with a header row naming the columns positive and negative",
}
PAIR_FILE_FIX = "see 'File formats' in the README for the contrast-pair layouts"


BUILTIN = ("sentiment", "weddings", "formality")
SPLITS = ("train", "test", "all")


def dataset_hash(pairs: list[ContrastPair]) -> str:
    """A short content hash of the pairs, in order."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.positive, p.negative]).encode())
    return h.hexdigest()[:12]


def _check_pair(pos, neg, where: str) -> ContrastPair:
    for name, value in (("positive", pos), ("negative", neg)):
        if not isinstance(value, str) or not value:  # a lone space is ActAdd's neutral prompt, so it is kept
            raise PairDataError(f"{where}: '{name}' must be a non-empty string")
    if pos == neg:
        raise PairDataError(f"{where}: positive and negative are identical")
    return ContrastPair(pos, neg)


def _caa_pair(row: dict, where: str) -> ContrastPair:
    try:
        item = ab_item(row, where)
    except ABItemError as exc:
        raise PairDataError(str(exc)) from None
    return _check_pair(item.prompt + item.matching, item.prompt + item.not_matching, where)


def _row_pair(row, where: str) -> ContrastPair:
    if not isinstance(row, dict):
        raise PairDataError(f"{where}: expected a JSON object")
    if "question" in row:
        return _caa_pair(row, where)
    if "positive" not in row or "negative" not in row:
        raise PairDataError(f"{where}: expected keys 'positive' and 'negative' (or a CAA A/B item)")
    return _check_pair(row["positive"], row["negative"], where)


def read_pairs(path: str | Path, split: str = "all") -> list[ContrastPair]:
    """Read contrast pairs from a .jsonl, .json or .csv file; `split` filters rows with a "split" field."""
    path = Path(path)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not path.is_file():
        raise PairDataError(f"no contrast data at {path}")
    rows: list[tuple[dict, str]] = []
    expected = PAIR_FILE_EXPECTED.get(path.suffix, "")
    if path.suffix == ".jsonl":
        rows = [(row, f"{path}:{n}") for row, n in read_jsonl(path, expected, PAIR_FILE_FIX, PairDataError)]  # type: ignore[misc]
    elif path.suffix == ".json":
        data = read_json(path, expected, PAIR_FILE_FIX, PairDataError)
        if not isinstance(data, list):
            raise PairDataError(f"{path}: expected a JSON list of items")
        rows = [(row, f"{path} item {i}") for i, row in enumerate(data)]
    elif path.suffix == ".csv":
        text = read_text(path, expected, PAIR_FILE_FIX, PairDataError)
        try:
            reader = csv.DictReader(io.StringIO(text, newline=""))
            if not reader.fieldnames or not {"positive", "negative"} <= set(reader.fieldnames):
                raise PairDataError(f"{path}:1: expected a header with columns 'positive' and 'negative'")
            rows = [(row, f"{path}:{n}") for n, row in enumerate(reader, start=2)]
        except csv.Error as exc:
            raise file_error(path, f"not valid CSV ({exc})", expected, PAIR_FILE_FIX, PairDataError) from None
    else:
        raise PairDataError(f"{path}: unknown format; use .jsonl, .json or .csv")
    pairs = [
        _row_pair(row, where)
        for row, where in rows
        if split == "all" or not isinstance(row, dict) or row.get("split", "train") == split
    ]
    if not pairs:
        raise PairDataError(f"{path}: no pairs" + ("" if split == "all" else f" in split {split!r}"))
    return pairs


def builtin_path(name: str) -> Path:
    if name not in BUILTIN:
        raise ValueError(f"unknown built-in pair set {name!r}; built-in sets: {', '.join(BUILTIN)}")
    return Path(str(resources.files("steerscope") / "data" / f"{name}.jsonl"))


def load_pairs(source: str, split: str = "train") -> list[ContrastPair]:
    """Pairs from a built-in set name or a file path."""
    return read_pairs(builtin_path(source) if source in BUILTIN else source, split)


def starter_pairs(name: str = "sentiment", n: int = 8) -> list[ContrastPair]:
    """The first n training pairs of a built-in set (the quick steering job uses these)."""
    return load_pairs(name, "train")[:n]


def write_pairs(path: str | Path, pairs: list[ContrastPair], **extra: str) -> Path:
    """Pairs as jsonl (`positive`, `negative`, plus `extra` fields on each row), atomically; `read_pairs` reads it."""
    rows = [{"positive": p.positive, "negative": p.negative, **extra} for p in pairs]
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return Path(path)
