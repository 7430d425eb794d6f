"""A tiny random llama with a byte-level tokenizer (any text tokenizes, offline), saved as a model folder (the
fixtures `folder` and `lm`, a pytest plugin of the playground's test modules), and helpers for talking to it.

PYTEST_DONT_REWRITE: it holds no assertions, and the test modules import it before pytest loads it as a plugin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_models import CONFIGS, _scale_up_weights
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from steerscope import load_model


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """One token per byte (ids 2..257), with <pad>=0 and <eos>=1: no merges, nothing to download."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<pad>": 0, "<eos>": 1, **{ch: i + 2 for i, ch in enumerate(alphabet)}}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def save_byte_model(folder: Path, seed: int = 0) -> Path:
    """A tiny random llama over the byte tokenizer, saved as a Hugging Face folder (no EOS: it never stops early)."""
    tok = byte_tokenizer()
    config = CONFIGS["llama"]()
    config.vocab_size, config.pad_token_id, config.eos_token_id, config.bos_token_id = len(tok), 0, None, None
    config.max_position_embeddings = 8192  # long streams in the load tests
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    _scale_up_weights(model)
    model.generation_config.eos_token_id = None
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def sse_events(lines) -> list[dict]:
    """The JSON events of a server-sent-event body (an iterable of text lines)."""
    return [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The byte model as a folder: the model spec the playground serves and its commands load."""
    return save_byte_model(tmp_path_factory.mktemp("model") / "bytes")


@pytest.fixture(scope="module")
def lm(folder):
    return load_model(str(folder))
