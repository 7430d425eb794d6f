"""Datasets of a sweep: contrast pairs to fit vectors, held-out prompts to steer, a concept scorer, and the
instruction the prompting baseline puts before each prompt.

Held-out prompts come from a JSON file: a list, or a mapping of groups to lists (e.g. neutral / negative).
Validation / test split (deterministic): within each group, prompts at even positions (0, 2, ...) are
validation, those at odd positions test. Vectors are fitted on the pairs' train split only.

A dataset of your own is a [datasets.NAME] table: pairs (built-in name or file), prompts (JSON file),
scorer ("sentiment", "keywords" or "topic"), keywords (list, for "keywords"), topic (text, for "topic"; given
with "keywords", topic relevance is measured beside the keyword rate),
instruction (what the prompting baseline asks for; see ConceptTask.prompted). The built-in sentiment
instruction and its chat form were chosen on validation prompts among three phrasings.

A/B datasets (ABTask; run by sweep/ab.py): CAA-style multiple-choice items, built in as
`caa-<behaviour>` for CAA's seven behaviours (evaluate.behaviour.CAA_BEHAVIOURS), or a [datasets.NAME] table
with `items` (a .json/.jsonl file of A/B items), and optionally n_validation, n_test, template.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, astuple, dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np

from ..core.reading import read_json
from ..evaluate.behaviour import CAA_BEHAVIOURS, TEMPLATES, ABItem, ab_pair_texts, caa_items, read_ab_items
from ..evaluate.scorers import keyword_hits, sentiment_compound, topic_similarity
from .pairs import ContrastPair, load_pairs

SPLITS = ("validation", "test")
SCORERS = ("sentiment", "keywords", "topic")
#: the metric each scorer's effect is read from (per item; its mean is the effect)
EFFECT_METRIC = {"sentiment": "positive", "keywords": "keyword_rate", "topic": "topic_similarity"}
WEDDING_WORDS = ["wedding*", "marri*", "bride*", "groom*", "honeymoon*", "ceremon*", "vows"]
#: the ActAdd paper's wedding words, whole words only (its "share of completions about weddings")
ACTADD_WEDDING_WORDS = ["wedding", "weddings", "wed", "marry", "married", "marriage", "bride", "groom", "honeymoon"]


def _builtin_prompts() -> str:
    return str(resources.files("steerscope") / "data" / "sentiment_prompts.json")


def _builtin_data(name: str) -> str:
    """A `builtin:NAME` file of the package's data folder (NAME.jsonl)."""
    return str(resources.files("steerscope") / "data" / f"{name.removeprefix('builtin:')}.jsonl")


BUILTIN = {
    "sentiment": {
        "pairs": "sentiment",
        "prompts": "builtin:sentiment_prompts",
        "scorer": "sentiment",
        "instruction": "Continue this text in a warm, positive and happy tone:",
    },
    "weddings": {
        "pairs": "weddings",
        "prompts": "builtin:sentiment_prompts",
        "scorer": "keywords",
        "keywords": WEDDING_WORDS,
        "instruction": "Continue this text and make it about a wedding:",
    },
    # the ActAdd paper's experiment: one pair, " weddings" minus " ", scored by its whole-word list, with
    # topic relevance (embedding similarity to "weddings") beside it
    "actadd-weddings": {
        "pairs": "builtin:weddings_actadd",
        "prompts": "builtin:sentiment_prompts",
        "scorer": "keywords",
        "keywords": ACTADD_WEDDING_WORDS,
        "topic": "weddings",
        "instruction": "Continue this text and make it about a wedding:",
    },
}


@dataclass
class ConceptTask:
    name: str
    pairs: str
    prompts: str
    scorer: str
    instruction: str
    keywords: list[str] = field(default_factory=list)
    topic: str = ""

    def __post_init__(self) -> None:
        if self.scorer not in SCORERS:
            raise ValueError(f"dataset {self.name}: scorer must be one of {', '.join(SCORERS)}, got {self.scorer!r}")
        if self.scorer == "keywords" and not self.keywords:
            raise ValueError(f"dataset {self.name}: the keywords scorer needs a list 'keywords'")
        if self.scorer == "topic" and not self.topic:
            raise ValueError(f"dataset {self.name}: the topic scorer needs a 'topic' description")

    @property
    def effect_metric(self) -> str:
        return EFFECT_METRIC[self.scorer]

    def train_pairs(self) -> list[ContrastPair]:
        return load_pairs(_builtin_data(self.pairs) if self.pairs.startswith("builtin:") else self.pairs, "train")

    def split_prompts(self) -> dict[str, list[str]]:
        """{"validation": [...], "test": [...]} by the even / odd rule in the module docstring."""
        path = _builtin_prompts() if self.prompts == "builtin:sentiment_prompts" else self.prompts
        if not Path(path).is_file():
            raise FileNotFoundError(f"dataset {self.name}: no prompt file at {path}")
        data = read_json(path, "a JSON list of prompts (or a mapping of such lists)", f"fix dataset {self.name}'s file")
        groups = [data] if isinstance(data, list) else [v for v in data.values() if isinstance(v, list)]
        if not groups or not all(isinstance(p, str) for g in groups for p in g):
            raise ValueError(f"dataset {self.name}: {path} must hold a list of prompts or a mapping of such lists")
        out = {s: [p for g in groups for p in g[i::2]] for i, s in enumerate(SPLITS)}
        if not out["test"]:
            raise ValueError(f"dataset {self.name}: {path} needs at least two prompts (one per split)")
        return out

    def prompted(self, tokenizer, prompts: list[str]) -> list[str]:
        """The prompting baseline's inputs: with a chat template, a user turn "<instruction> <prompt>" and the
        assistant's reply started with the prompt itself; without one, "<instruction>\n\n<prompt>"."""
        if getattr(tokenizer, "chat_template", None):
            return [
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": f"{self.instruction} {p}"}], tokenize=False, add_generation_prompt=True
                )
                + p
                for p in prompts
            ]
        return [f"{self.instruction}\n\n{p}" for p in prompts]

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Per-item concept scores; the effect metric is among them."""
        if self.scorer == "sentiment":
            compound = np.asarray(sentiment_compound(texts))
            return {"positive": (compound >= 0.05).astype(float), "sentiment": compound}
        out = {"keyword_rate": np.asarray(keyword_hits(texts, self.keywords))} if self.scorer == "keywords" else {}
        if self.topic:  # the topic scorer's metric, or topic relevance beside a keyword rate
            out["topic_similarity"] = np.asarray(topic_similarity(texts, self.topic))
        return out


AB_SPLITS = ("train", "validation", "test")
#: the metric of an A/B dataset: P(behaviour-matching answer) per item
AB_METRIC = "p_behaviour"
#: beside it: logit(matching) - logit(other) per item (the log-odds of P; per-item slopes read it)
AB_LOGIT_METRIC = "logit_diff"
CAA_PREFIX = "caa:"
BUILTIN_AB = {f"caa-{b}": {"items": f"{CAA_PREFIX}{b}"} for b in CAA_BEHAVIOURS}


@dataclass
class ABTask:
    """A/B items (CAA): vectors from the train split's answer-letter activations, P(matching answer) measured on
    disjoint validation and test splits.

    Split (deterministic): the distinct questions, in file order, are permuted with numpy default_rng(0); the
    first `n_test` are test, the next `n_validation` validation, the rest train (an item goes where its
    question goes, so no question is in two splits). `template`: "auto" shows items through the model's chat
    template when it has one (evaluate.behaviour.ab_prompt)."""

    name: str
    items: str  # "caa:<behaviour>" or a file of A/B items
    n_validation: int = 20
    n_test: int = 50
    template: str = "auto"

    effect_metric = AB_METRIC

    def __post_init__(self) -> None:
        for key in ("n_validation", "n_test"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"dataset {self.name}: {key} must be an integer >= 1, got {value!r}")
        if self.template not in TEMPLATES:
            choices = ", ".join(TEMPLATES)
            raise ValueError(f"dataset {self.name}: template must be one of {choices}, got {self.template!r}")

    def load(self) -> list[ABItem]:
        if self.items.startswith(CAA_PREFIX):
            return caa_items(self.items.removeprefix(CAA_PREFIX))
        return read_ab_items(self.items)

    def split_items(self) -> dict[str, list[ABItem]]:
        """{"train": [...], "validation": [...], "test": [...]} by the rule in the class docstring."""
        return self._splits

    @cached_property
    def _splits(self) -> dict[str, list[ABItem]]:
        items = self.load()
        questions = list(dict.fromkeys(it.question for it in items))
        held = self.n_test + self.n_validation
        if len(questions) <= held:
            raise ValueError(
                f"dataset {self.name}: {len(questions)} distinct questions, but n_test + n_validation = {held} "
                "leaves none to train on; lower them"
            )
        order = np.random.default_rng(0).permutation(len(questions))
        rank = {questions[int(i)]: r for r, i in enumerate(order)}
        split_of = lambda q: "test" if rank[q] < self.n_test else "validation" if rank[q] < held else "train"  # noqa: E731
        return {s: [it for it in items if split_of(it.question) == s] for s in AB_SPLITS}

    def train_pairs(self, tokenizer) -> list[ContrastPair]:
        """The train items as contrast pairs: the prompt followed by the matching / the other answer letter."""
        return [ContrastPair(*ab_pair_texts(tokenizer, it, self.template)) for it in self.split_items()["train"]]

    def definition(self) -> dict:
        """What the dataset holds, for the run's settings: its options and the questions of each split (hashed)."""
        digest = {
            s: hashlib.sha256(json.dumps([astuple(it) for it in v]).encode()).hexdigest()[:16]
            for s, v in self.split_items().items()
        }
        sizes = {s: len(v) for s, v in self.split_items().items()}
        return {**asdict(self), "split_sizes": sizes, "split_hashes": digest}


def is_ab(task: object) -> bool:
    """Whether a dataset is an A/B one (measured by sweep/ab.py, not by generating text)."""
    return isinstance(task, ABTask)


def get_task(name: str, custom: dict | None = None) -> ConceptTask | ABTask:
    """A built-in dataset (sentiment, weddings, caa-<behaviour>) or one defined in the config."""
    spec = (custom or {}).get(name) or BUILTIN.get(name) or BUILTIN_AB.get(name)
    if spec is None:
        builtin = ", ".join([*BUILTIN, *BUILTIN_AB])
        raise ValueError(f"unknown dataset {name!r}; built-in: {builtin}, or define [datasets.{name}] in the config")
    if "items" in spec:
        allowed_ab = {"items", "n_validation", "n_test", "template"}
        unknown = set(spec) - allowed_ab
        if unknown:
            keys = ", ".join(sorted(allowed_ab))
            raise ValueError(f"dataset {name}: unknown key(s) {sorted(unknown)} for an A/B dataset; allowed: {keys}")
        return ABTask(name=name, **spec)
    allowed = {"pairs", "prompts", "scorer", "instruction", "keywords", "topic"}
    unknown = set(spec) - allowed
    if unknown:
        raise ValueError(f"dataset {name}: unknown key(s) {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}")
    missing = {"pairs", "prompts", "scorer", "instruction"} - set(spec)
    if missing:
        raise ValueError(f"dataset {name}: missing key(s) {sorted(missing)}")
    return ConceptTask(name=name, **spec)
