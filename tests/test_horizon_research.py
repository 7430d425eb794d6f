"""The horizon as a research instrument: per-layer profile, capability horizons, variants side by side."""

import csv
import json

import pytest
import torch
from cli_checks import bad
from reference import slow_horizon_logits
from tiny_models import random_ids, save_tiny, tiny_model, tiny_text_file
from typer.testing import CliRunner

from steerscope.cli import app
from steerscope.depth.capability import Task, accuracy, capability_batch, cloze_items, induction_task
from steerscope.depth.horizon import VARIANT_NAMES, HorizonVariant, named_variant, output_means, parse_variants
from steerscope.depth.profile import distinct_window, parse_profile_ks, profile_batch, profile_cost
from steerscope.depth.run import DepthRun, HorizonPlan, TextSpec, run_horizon
from steerscope.evaluate.metrics import clean_reference, next_token_metrics


@pytest.mark.parametrize("family", ["llama", "gpt_neox", "gemma2"])
def test_profile_equals_one_layer_patched_by_hand(family):
    lm = tiny_model(family)
    ids = random_ids(2, 7, 3)
    ks = [1, 2, 3]
    variant = HorizonVariant(keep_embedding=family == "gemma2")
    got = profile_batch(lm, ids, ks, variant)
    with torch.no_grad():
        ref = clean_reference(lm.model(input_ids=ids).logits, ids)
    for n in range(lm.n_layers):
        for j, k in enumerate(ks):
            slow = next_token_metrics(ref, slow_horizon_logits(lm, ids, k, variant, layers=[n]))
            for metric in ("delta_ce", "kl", "top1"):
                assert got[metric][n][j] == pytest.approx(slow[metric].tolist(), abs=1e-4), (family, n, k, metric)


def test_profile_windows_and_cost():
    assert [distinct_window(0, k) for k in (1, 2, 5)] == [1, 1, 1]  # layer 0's window is layer 0 for every k
    assert [distinct_window(3, k) for k in (1, 3, 4, 9)] == [1, 3, 3, 3]
    assert parse_profile_ks("coarse", 30) == [1, 2, 4, 8, 16, 30]
    assert parse_profile_ks("all", 3) == [1, 2, 3]
    passes, equivalent = profile_cost(3, [1, 2, 3])
    assert passes == 1 + 1 + 2  # a window starts at layer max(0, n-k): one start for layers 0 and 1, two for 2
    assert equivalent == pytest.approx((3 + 2 + 1 + 1) / 3)  # each pass runs the blocks from its layer up
    for text in ("0,1", "1,x", "4"):
        with pytest.raises(ValueError):
            parse_profile_ks(text, 3)


def test_accuracy_against_a_loop():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 10)
    positions = torch.tensor([[1, 2, 4], [0, 5, -1], [3, -1, -1]])
    targets = logits.argmax(-1).gather(1, positions.clamp(min=0))
    targets[0, 1] = (targets[0, 1] + 1) % 10  # one miss in row 0
    task = Task("t", torch.zeros(3, 6, dtype=torch.long), positions, targets, 0.1, "")
    expected = []
    for i in range(3):
        pairs = [(p, t) for p, t in zip(positions[i].tolist(), targets[i].tolist(), strict=True) if p >= 0]
        expected.append(sum(int(logits[i, p].argmax()) == t for p, t in pairs) / len(pairs))
    assert accuracy(logits, task).tolist() == pytest.approx(expected)


def test_induction_is_near_chance_for_a_random_model_and_rises_with_k():
    lm = tiny_model("llama", tokenizer=True)
    task = induction_task(lm, 16, half=10, seed=0)
    assert torch.equal(task.ids[:, :10], task.ids[:, 10:]) and task.targets.shape == (16, 9)
    assert int(task.ids.min()) >= 2  # no [PAD] or [UNK]
    out = capability_batch(lm, task, [1, 3], HorizonVariant())
    clean = sum(out["clean"]) / 16
    assert clean < 0.15  # chance is 1/94; an untrained model cannot copy
    assert out["score"][-1] == out["clean"]  # k = L is the clean model


def test_cloze_items_hold_the_title_out():
    items = cloze_items(50, seed=1)
    assert len(items) == 50 and items == cloze_items(50, seed=1) and items != cloze_items(50, seed=2)
    for prompt, word in items:
        sentence, title = prompt.split("\nTitle: ")
        assert sentence.startswith("It ") and word not in title.split() and " " not in word


def test_variant_names():
    assert parse_variants("all") == list(VARIANT_NAMES)
    assert named_variant("enforce", 2).enforce_from == 2 and named_variant("readout").readout_only
    for text in ("clean,clean", "nope", ""):
        with pytest.raises(ValueError):
            parse_variants(text)


@pytest.fixture
def tiny_run(tmp_path):
    save_tiny(tmp_path / "tiny", "llama")
    return tmp_path, TextSpec(source=tiny_text_file(tmp_path), n=4, seq_len=8, batch_size=2)


def test_every_variant_side_by_side_with_capability_and_profile(tiny_run):
    tmp, text = tiny_run
    plan = HorizonPlan(
        variants={name: named_variant(name) for name in VARIANT_NAMES},
        tasks=("induction",),
        task_n=4,
        profile_ks="coarse",
    )
    run = DepthRun(models=[str(tmp / "tiny")], out=tmp / "out", text=text, n_boot=20)
    folder, rows = run_horizon(run, plan=plan)
    model_dir = folder / "tiny"
    for name in ("variants-delta_ce.png", "variants-kl.png", "capability.png", "profile.png", "profile.csv"):
        assert (model_dir / name).is_file(), name
    result = json.loads((model_dir / "horizon.json").read_text())
    assert list(result["variants"]) == list(VARIANT_NAMES)
    # the variants differ where they should: k = 1 changes the model in every variant but readout's own way
    at_k1 = {name: s["per_k"][0]["kl"] for name, s in result["variants"].items()}
    assert len({round(v, 9) for v in at_k1.values()}) >= 4
    assert result["variants"]["clean"]["per_k"][-1]["kl"] < 1e-6  # k = L: the clean model
    assert result["variants"]["enforce"]["per_k"][-1]["kl"] > 1e-4  # enforced at every layer: never clean
    assert len(result["profile"]["k_star"]) == 3 and result["profile"]["ks"] == [1, 2, 3]
    with (folder / "variants.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["variant"] for r in table] == list(VARIANT_NAMES) and "k* induction" in table[0]
    assert rows[0]["clean_induction"] == result["capabilities"]["induction"]["clean"]["clean"]
    assert "k_star_delta_ce_readout_over_layers" in rows[0]
    page = (folder / "index.html").read_text()
    assert "k* by variant" in page and "What these models can support" in page


def test_horizon_cli_variants_tasks_profile_and_refusals(tiny_run):
    tmp, text = tiny_run
    base = ["horizon", str(tmp / "tiny"), "--text", text.source, "--n", "4", "--seq-len", "8", "--n-boot", "20"]
    result = CliRunner().invoke(
        app,
        [*base, "--variants", "clean,mean", "--tasks", "induction", "--task-n", "4", "--profile-ks", "1,2"]
        + ["--out", str(tmp / "h")],
    )
    assert result.exit_code == 0, result.output
    assert "k* by variant" in result.output and "per-layer profile" in result.output
    assert (tmp / "h" / "tiny" / "variants-kl.png").is_file()
    bad([*base, "--variants", "clean,nope", "--out", str(tmp / "x")], "unknown horizon variant", "nope")
    bad([*base, "--variants", "all", "--fill", "mean", "--out", str(tmp / "x")], "--variants names each variant")
    bad([*base, "--tasks", "arithmetic", "--out", str(tmp / "x")], "unknown capability task", "arithmetic")
    bad([*base, "--profile-ks", "0,2", "--out", str(tmp / "x")], "horizon k")
    bad([*base, "--tasks", "induction", "--task-tolerance", "nan", "--out", str(tmp / "x")], "tolerance")
    assert not (tmp / "x").exists()


def test_mean_fill_profile_uses_the_text_means(tiny_run):
    tmp, text = tiny_run
    lm = tiny_model("llama")
    ids = random_ids(2, 8, 5)
    means = output_means(lm, [ids])
    filled = profile_batch(lm, ids, [1], HorizonVariant(fill="mean"), means)
    zero = profile_batch(lm, ids, [1], HorizonVariant())
    assert filled["kl"] != zero["kl"]
    with pytest.raises(ValueError, match="readout"):
        profile_batch(lm, ids, [1], HorizonVariant(readout_only=True))


def test_logits_at_positions_equal_the_full_logits_there():
    from steerscope.depth.horizon import clean_run, patched_logits

    lm = tiny_model("gemma3")
    ids = random_ids(3, 7, 2)
    positions = torch.tensor([[1, 4], [6, -1], [0, 2]])
    clean = clean_run(lm, ids)
    for variant in (HorizonVariant(), HorizonVariant(readout_only=True), HorizonVariant(source="propagated")):
        for k in (1, 2, 3):
            full = patched_logits(lm, ids, k, clean, variant)
            some = patched_logits(lm, ids, k, clean, variant, positions=positions)
            for b in range(3):
                for j, p in enumerate(positions[b].clamp(min=0).tolist()):
                    torch.testing.assert_close(some[b, j], full[b, p], atol=1e-5, rtol=1e-5)
