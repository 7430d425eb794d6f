"""Tiny random models of every supported family, built from a config (no downloads)."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

from steerscope import LoadedModel

VOCAB, D, LAYERS, HEADS = 96, 32, 3, 4
_COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=D,
    num_hidden_layers=LAYERS,
    num_attention_heads=HEADS,
    intermediate_size=64,
    max_position_embeddings=128,
)
_LLAMA_LIKE = dict(_COMMON, num_key_value_heads=2, tie_word_embeddings=False)

CONFIGS = {
    "gpt2": lambda: GPT2Config(
        vocab_size=VOCAB,
        n_embd=D,
        n_layer=LAYERS,
        n_head=HEADS,
        n_positions=128,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=1,
        eos_token_id=2,
    ),
    "gpt_neox": lambda: GPTNeoXConfig(**_COMMON, use_parallel_residual=True, rotary_pct=0.5),
    "gpt_neox_seq": lambda: GPTNeoXConfig(**_COMMON, use_parallel_residual=False, rotary_pct=0.5),
    "llama": lambda: LlamaConfig(**_LLAMA_LIKE),
    "mistral": lambda: MistralConfig(**_LLAMA_LIKE, sliding_window=None),
    "qwen2": lambda: Qwen2Config(**_LLAMA_LIKE),
    "qwen3": lambda: Qwen3Config(**_LLAMA_LIKE, head_dim=8),
    "gemma": lambda: GemmaConfig(**_LLAMA_LIKE, head_dim=8),
    "gemma2": lambda: Gemma2Config(**_LLAMA_LIKE, head_dim=8, sliding_window=16, query_pre_attn_scalar=8),
    "gemma3": lambda: Gemma3TextConfig(**_LLAMA_LIKE, head_dim=8, sliding_window=16, query_pre_attn_scalar=8),
}
FAMILIES = list(CONFIGS)


def tiny_model(family: str, seed: int = 0, tokenizer: bool = False) -> LoadedModel:
    """A random model of the family in fp32 eval mode (with the tiny word-level tokenizer if asked)."""
    torch.manual_seed(seed)
    config = CONFIGS[family]()
    config.pad_token_id = 0
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _scale_up_weights(model)
    return LoadedModel.from_hf(model.eval(), tiny_tokenizer() if tokenizer else None, name=f"tiny-{family}")


def _scale_up_weights(model: torch.nn.Module) -> None:
    """Default init (std 0.02) makes sublayer outputs tiny; larger weights make every test sensitive."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.2)
            elif "norm" in name or "ln" in name:
                p.uniform_(0.5, 1.5) if "bias" not in name else p.normal_(0.0, 0.1)
            else:
                p.normal_(0.0, 0.1)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the words w0..w93 (ids 2..95), with [PAD]=0 and [UNK]=1."""
    vocab = {"[PAD]": 0, "[UNK]": 1, **{f"w{i}": i + 2 for i in range(VOCAB - 2)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[UNK]")


def tiny_text_file(folder) -> str:
    """Ten documents of twelve random words w0..w89 separated by blank lines; returns the file path."""
    g = torch.Generator().manual_seed(0)
    docs = [" ".join(f"w{int(i)}" for i in torch.randint(0, 90, (12,), generator=g)) for _ in range(10)]
    path = folder / "docs.txt"
    path.write_text("\n\n".join(docs))
    return str(path)


def save_tiny(folder, family: str = "llama", seed: int = 0):
    """Save a tiny random model and its tokenizer as a Hugging Face folder; returns the model."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(CONFIGS[family]())
    _scale_up_weights(model)
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return model


def random_ids(batch: int = 2, seq: int = 7, seed: int = 1) -> torch.Tensor:
    """Seeded random token ids (never the pad id 0)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, VOCAB, (batch, seq), generator=g)
