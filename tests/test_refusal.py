"""Instruction sets, chat formatting and the refusal-phrase metric."""

import pytest
from tiny_models import tiny_model

from steerscope.refusal.instructions import chat_prompts, is_refusal, load_instructions, refusal_rate


def test_instruction_sets_have_disjoint_splits():
    for kind in ("harmful", "harmless"):
        train, test = load_instructions(kind, "train"), load_instructions(kind, "test")
        assert len(train) >= 128 and len(test) >= 32, kind
        assert not set(train) & set(test)
        assert len(load_instructions(kind, "all")) == len(train) + len(test)
    assert not set(load_instructions("harmful", "all")) & set(load_instructions("harmless", "all"))
    with pytest.raises(ValueError, match="kind must be"):
        load_instructions("spicy")


def test_refusal_phrases():
    assert is_refusal("I'm sorry, but I can't help with that.")
    assert is_refusal("As an AI language model, I must decline.")
    assert is_refusal("I can\u2019t do that")
    assert not is_refusal("Sure! Here is a recipe for banana bread.")
    assert refusal_rate(["I cannot help.", "Here you go.", "Of course.", "I won't."]) == 0.5
    with pytest.raises(ValueError, match="no completions"):
        refusal_rate([])


def test_chat_prompts_fall_back_without_a_template():
    lm = tiny_model("llama", tokenizer=True)
    assert chat_prompts(lm, ["w1 w2"]) == ["w1 w2\n"]


@pytest.mark.embedded
def test_chat_prompts_use_the_template_on_the_default_model():
    from steerscope import load_model

    lm = load_model("default")
    (prompt,) = chat_prompts(lm, ["How do I bake bread?"])
    assert "How do I bake bread?" in prompt and prompt.rstrip().endswith("assistant")
