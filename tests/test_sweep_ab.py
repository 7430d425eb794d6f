"""A/B sweeps (CAA's benchmark) on a tiny random model: every planned cell, the layer chosen on validation as a
hand computation picks it, test values equal to a hand-made mean-difference vector, resume after a crash, the
report's CAA table and figures, and configs that cannot run."""

import json

import numpy as np
import pytest
import torch
from sweep_fixtures import one_thread  # noqa: F401  (fixture)
from tiny_models import VOCAB, tiny_model
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from steerscope.core.hooks import capture
from steerscope.evaluate.behaviour import ab_pair_texts, behaviour_probability
from steerscope.evaluate.store import ResultStore, cell_of
from steerscope.steering.tasks import get_task
from steerscope.steering.vector import SteeringVector
from steerscope.sweep.ab import ABSweep, run_ab_sweep
from steerscope.sweep.config import ConfigError, parse_config
from steerscope.sweep.protocol import ab_multipliers
from steerscope.sweep.report import sweep_report
from steerscope.sweep.runner import STORE_NAME, pair_subset

SITES = ["resid_pre.1", "resid_pre.2"]
WORDS = ["[PAD]", "[UNK]", "A", "B", "(", ")", "Answer", ":"]


def letter_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose answer letters, "(" and "Answer:" are tokens (ids < 8), then w8..w95."""
    vocab = {w: i for i, w in enumerate(WORDS)} | {f"w{i}": i for i in range(len(WORDS), VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    out = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[UNK]")
    out.padding_side = "left"
    return out


@pytest.fixture(scope="module")
def lm():
    model = tiny_model("llama")
    model.tokenizer = letter_tokenizer()
    return model


def _items(path, seed: int, n: int = 30):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        words = " ".join(f"w{int(w)}" for w in rng.integers(8, VOCAB, size=int(rng.integers(2, 6))))
        yes = "(A)" if i % 2 else "(B)"
        rows.append({"question": f"{words} w{8 + i} (A) w9 (B) w10", "answer_matching_behavior": yes,
                     "answer_not_matching_behavior": "(B)" if yes == "(A)" else "(A)"})  # fmt: skip
    path.write_text(json.dumps(rows))
    return str(path)


def _config(tmp_path, **overrides):
    text = tmp_path / "text.txt"
    rng = np.random.default_rng(0)
    text.write_text("\n\n".join(" ".join(f"w{int(i)}" for i in rng.integers(8, VOCAB, 30)) for _ in range(4)))
    data = {
        "models": ["tiny"],
        "methods": ["mean_diff"],
        "sites": SITES,
        "coefficients": [2.0],
        "n_pairs": [3, 6],
        "seeds": [0, 1],
        "datasets": {
            "ab1": {"items": _items(tmp_path / "ab1.json", 1), "n_validation": 4, "n_test": 5},
            "ab2": {"items": _items(tmp_path / "ab2.json", 2), "n_test": 6, "n_validation": 4},
        },
        "baselines": ["unsteered", "random"],
        "generation": {"batch_size": 4},
        "side_effects": {"source": str(text), "n": 2, "seq_len": 12, "batch_size": 2},
        "n_boot": 50,
    }
    data.update(overrides)
    return parse_config(data, "test config")


def _hand_vector(lm, task, n, seed, site):
    """CAA's mean difference at the answer letter, one text at a time through capture (no batching, no reads)."""
    subset = pair_subset(task.train_pairs(lm.tokenizer), n, seed)
    diffs = []
    for pair in subset:
        acts = [capture(lm, torch.tensor([lm.tokenizer(t)["input_ids"]]), [site])[site][0, -1] for t in
                (pair.positive, pair.negative)]  # fmt: skip
        diffs.append(acts[0].double() - acts[1].double())
    return torch.stack(diffs).mean(0)


def test_ab_sweep_cells_selection_and_values(tmp_path, lm):
    config = _config(tmp_path)
    path = run_ab_sweep(config, tmp_path / "out", models={"tiny": lm})
    with ResultStore(path) as store:
        rows = store.rows(metric="p_behaviour")
        all_rows = store.rows()
    cells = {cell_of(r) for r in rows}
    multipliers = [m for m in ab_multipliers([2.0]) if m != 0]
    assert multipliers == [-2.0, -1.0, -0.5, 0.5, 1.0, 2.0]
    val = [c for c in cells if c.split == "validation" and c.method == "mean_diff"]
    assert len(val) == 2 * 2 * 2 * len(SITES) * 2  # datasets x n_pairs x seeds x sites x (-1, +1)
    assert len([c for c in cells if c.method == "unsteered"]) == 4

    # the layer sweep by hand: per n, the site with the largest mean over datasets of P(+1) - P(-1)
    def p_at(n, site, dataset, m):
        found = [np.mean(r["items"]) for r in rows if r["split"] == "validation" and r["n_pairs"] == n
                 and (r["site"], r["dataset"], r["coefficient"]) == (site, dataset, m)]  # fmt: skip
        return np.mean(found)

    for n in (3, 6):
        effect = {s: np.mean([p_at(n, s, d, 1.0) - p_at(n, s, d, -1.0) for d in ("ab1", "ab2")]) for s in SITES}
        best = max(effect, key=effect.get)
        test = {c for c in cells if c.split == "test" and c.method == "mean_diff" and c.n_pairs == n}
        assert {c.site for c in test} == {best}
        assert sorted({c.coefficient for c in test}) == multipliers and len(test) == 2 * 2 * len(multipliers)
        assert {c.site for c in cells if c.split == "test" and c.method == "random"} <= set(SITES)
    # a test value equals P under a hand-made mean-difference vector
    task = get_task("ab1", config.custom_datasets)
    cell = next(c for c in cells if c.split == "test" and c.method == "mean_diff" and c.n_pairs == 6 and c.seed == 1
                and c.dataset == "ab1" and c.coefficient == 2.0)  # fmt: skip
    hand = SteeringVector({cell.site: _hand_vector(lm, task, 6, 1, cell.site)})
    expected = behaviour_probability(lm, task.split_items()["test"], vector=hand, coefficient=2.0)
    got = next(r for r in rows if cell_of(r) == cell)["items"]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert len(got) == len(task.split_items()["test"]) >= 5
    # test cells carry side effects and the fit's cost; the random control sits at mean_diff's site
    metrics = {r["metric"] for r in all_rows if cell_of(r) == cell}
    assert {"p_behaviour", "delta_ce", "kl", "cost_pair_tokens"} <= metrics
    rand_sites = {c.site for c in cells if c.method == "random" and c.dataset == "ab1"}
    assert rand_sites == {cell.site} or len(rand_sites) == 1
    selection = json.loads((tmp_path / "out" / "selection.json").read_text())
    assert set(selection) == {"tiny / mean_diff / n=3", "tiny / mean_diff / n=6"}

    # the report: the CAA table (multiplier 0 is the unsteered cell), effects, figures
    report = sweep_report(tmp_path / "out")
    table = json.loads((report / "report.json").read_text())["caa_table"]
    zero = [r for r in table if r["multiplier"] == 0 and r["dataset"] == "ab1" and r["method"] == "mean_diff"]
    unsteered = next(r for r in rows if (r["method"], r["dataset"], r["split"]) == ("unsteered", "ab1", "test"))
    assert zero and all(abs(r["p"] - np.mean(unsteered["items"])) < 1e-6 for r in zero)
    assert {r["multiplier"] for r in table if r["method"] == "mean_diff"} == {0.0, *multipliers}
    assert (report / "caa_effects.csv").is_file() and list(report.glob("*caa_mean_diff_n6.png"))
    assert list(report.glob("*ab_layer_sweep_mean_diff_n6.png"))
    page = (report / "index.html").read_text()
    assert "P(behaviour-matching answer) on test" in page and "P(+1) - P(-1)" in page


class Crash(Exception):
    pass


def test_ab_sweep_resumes_after_a_crash(tmp_path, lm):
    config = _config(tmp_path, n_pairs=[3], seeds=[0], baselines=["unsteered"])
    seen = []

    def crash(cell):
        seen.append(cell)
        if len(seen) == 7:
            raise Crash

    with pytest.raises(Crash):
        run_ab_sweep(config, tmp_path / "out", models={"tiny": lm}, on_cell=crash)
    with ResultStore(tmp_path / "out.partial" / STORE_NAME) as store:
        assert len(store.done()) == 7
    again = []
    path = run_ab_sweep(config, tmp_path / "out", models={"tiny": lm}, on_cell=again.append)
    with ResultStore(path) as store:
        keys = [cell_of(r).key for r in store.rows(metric="p_behaviour")]
    assert len(keys) == len(set(keys)) == 7 + len(again)
    assert not {c.key for c in again} & {c.key for c in seen}


def test_ab_configs_that_cannot_run(tmp_path, lm):
    with pytest.raises(ConfigError, match="actadd cannot read the answer letter"):
        ABSweep(_config(tmp_path, methods=["mean_diff", "actadd"], n_pairs=[1, 3]), tmp_path / "a", models={"tiny": lm})
    mixed = _config(tmp_path)
    mixed.datasets.append("sentiment")
    with pytest.raises(ConfigError, match=r"datasets \['sentiment'\] generate text"):
        ABSweep(mixed, tmp_path / "b", models={"tiny": lm})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"question": "w9", "answer_matching_behavior": "Yes",
                                "answer_not_matching_behavior": "No"}]))  # fmt: skip
    config = _config(tmp_path, datasets={"bad": {"items": str(bad)}})
    with pytest.raises(ValueError, match=f"{bad} item 0: an answer must be one letter"):
        ABSweep(config, tmp_path / "c", models={"tiny": lm})


def test_the_sweep_command_runs_ab_configs_and_refuses_bad_items(tmp_path, lm):
    from cli_checks import bad

    from steerscope.sweep.runner import run_sweep

    config = _config(tmp_path, n_pairs=[3], seeds=[0], sites=["resid_pre.1"], baselines=["unsteered"])
    path = run_sweep(config, tmp_path / "out", models={"tiny": lm})  # dispatched to the A/B sweep
    with ResultStore(path) as store:
        assert {r["metric"] for r in store.rows()} >= {"p_behaviour"}
    items = tmp_path / "bad.json"
    items.write_text(json.dumps([{"question": "Q?", "answer_matching_behavior": "(A)",
                                  "answer_not_matching_behavior": "Maybe"}]))  # fmt: skip
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'sites = ["resid_pre.1"]\ncoefficients = [1]\nn_pairs = [1]\n[datasets.mine]\nitems = "{items}"\n')
    bad(["sweep", cfg, "--out", tmp_path / "x"], f"{items} item 0", "an answer must be one letter", "'Maybe'")


def test_chat_pairs_end_in_the_letter(lm):
    task = get_task("caa-refusal")
    item = task.split_items()["train"][0]
    pos, neg = ab_pair_texts(lm.tokenizer, item)
    assert pos.endswith(f"Answer: ({item.matching}") and neg.endswith(f"Answer: ({item.not_matching}")
