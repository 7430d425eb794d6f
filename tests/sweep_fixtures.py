"""A tiny concept dataset in the tiny tokenizer's words (w0..w93), and a sweep config over it."""

import json

import numpy as np
import pytest
import torch


def write_tiny_dataset(folder) -> dict:
    """Pairs (w90 ... vs w91 ...), prompts in two groups, a natural-text file; returns the dataset table."""
    rng = np.random.default_rng(0)
    words = lambda k: " ".join(f"w{int(i)}" for i in rng.integers(2, 60, size=k))  # noqa: E731
    pairs = folder / "pairs.jsonl"
    pairs.write_text(
        "".join(json.dumps({"positive": f"w90 {words(3)}", "negative": f"w91 {words(3)}"}) + "\n" for _ in range(12))
    )
    prompts = folder / "prompts.json"
    prompts.write_text(json.dumps({"a": [words(3) for _ in range(4)], "b": [words(2) for _ in range(4)]}))
    text = folder / "text.txt"
    text.write_text("\n\n".join(words(40) for _ in range(6)))
    return {
        "pairs": str(pairs),
        "prompts": str(prompts),
        "scorer": "keywords",
        "keywords": ["w90", "w5"],
        "instruction": "w90 w90 w90",
    }


def tiny_config(folder, **overrides):
    from steerscope.sweep.config import parse_config

    data = {
        "models": ["tiny"],
        "methods": ["mean_diff", "probe", "actadd"],
        "sites": ["resid_pre.1", "resid_pre.2"],
        "coefficients": [1.0, 4.0],
        "n_pairs": [1, 2, 4],
        "seeds": [0, 1],
        "datasets": {"tinyset": write_tiny_dataset(folder)},
        "generation": {"max_new_tokens": 4, "batch_size": 3},
        "side_effects": {"source": str(folder / "text.txt"), "n": 3, "seq_len": 16, "batch_size": 2},
        "selection": {"max_fluency_cost": 2.0},
        "n_boot": 100,
        "method_options": {"actadd": {"pad_token": "w0"}},
    }
    data.update(overrides)
    return parse_config(data, "test config")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run far faster on one thread (two threads on a busy 2-core machine spin and wait)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
