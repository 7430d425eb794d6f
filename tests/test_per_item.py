"""Per-item effects (who a vector fails): A/B slopes against a slow item-by-item computation, generation effects
against the stored completions scored one at a time, the anti-steerable fraction by hand, per_item.csv in the run
folder and the report's sections."""

import csv

import numpy as np
import pytest
from sweep_fixtures import one_thread, tiny_config  # noqa: F401  (fixture)
from test_sweep_ab import _config, _hand_vector, letter_tokenizer
from tiny_models import tiny_model

from steerscope.evaluate.behaviour import behaviour_probability
from steerscope.evaluate.store import ResultStore
from steerscope.steering.tasks import get_task
from steerscope.steering.vector import SteeringVector
from steerscope.sweep.per_item import PER_ITEM_NAME, anti_steerable_fraction, item_slopes
from steerscope.sweep.report import sweep_report
from steerscope.sweep.runner import run_sweep


@pytest.fixture(scope="module")
def ab_lm():
    model = tiny_model("llama")
    model.tokenizer = letter_tokenizer()
    return model


def _csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_slopes_and_fraction_by_hand():
    x = [-1.0, 0.0, 2.0]
    y = np.array([[1.0, 0.0, np.nan], [2.0, 0.0, 5.0], [4.0, 0.0, np.nan]])
    got = item_slopes(x, y)
    assert got[0] == pytest.approx(np.polyfit(x, y[:, 0], 1)[0])
    assert got[1] == 0.0 and np.isnan(got[2])  # a flat item; an item with one finite value
    frac = anti_steerable_fraction(np.array([[-1.0, 2.0, 0.0, 3.0], [-0.5, -1.0, 0.0, np.nan]]), n_boot=200)
    assert frac["value"] == pytest.approx(3 / 7) and frac["tied"] == pytest.approx(2 / 7)
    assert frac["ci"][0] <= frac["value"] <= frac["ci"][1]
    assert anti_steerable_fraction(np.array([[1.0, 2.0]]), n_boot=50)["ci"] == [0.0, 0.0]


def test_ab_per_item_slopes_equal_an_item_by_item_computation(tmp_path, ab_lm):
    config = _config(tmp_path, n_pairs=[3], seeds=[0, 1], sites=["resid_pre.1"], baselines=["unsteered"])
    run_sweep(config, tmp_path / "out", models={"tiny": ab_lm})
    rows = _csv(tmp_path / "out" / PER_ITEM_NAME)
    mine = [r for r in rows if (r["dataset"], r["method"], r["seed"]) == ("ab1", "mean_diff", "1")]
    task = get_task("ab1", config.custom_datasets)
    items = task.split_items()["test"]
    assert len(mine) == len(items) and {r["kind"] for r in rows} == {"ab"}
    multipliers = [float(m) for m in mine[0]["multipliers"].split()]
    assert 0.0 in multipliers and len(multipliers) == 7
    hand = SteeringVector({"resid_pre.1": _hand_vector(ab_lm, task, 3, 1, "resid_pre.1")})
    for row in mine:
        item = items[int(row["item"])]
        assert row["text"] == item.question
        # slow: one item at a time, one multiplier at a time, slope by numpy's polyfit
        p = np.array([behaviour_probability(ab_lm, [item], vector=hand, coefficient=m)[0] for m in multipliers])
        logit = np.log(p) - np.log1p(-p)
        assert float(row["effect"]) == pytest.approx(np.polyfit(multipliers, logit, 1)[0], abs=2e-4)
        assert float(row["effect_p"]) == pytest.approx(np.polyfit(multipliers, p, 1)[0], abs=2e-5)

    report = sweep_report(tmp_path / "out")
    anti = _csv(report / "anti_steerable.csv")
    one = next(r for r in anti if (r["dataset"], r["method"]) == ("ab1", "mean_diff"))
    effects = [float(r["effect"]) for r in rows if (r["dataset"], r["method"]) == ("ab1", "mean_diff")]
    assert float(one["anti_steerable"]) == pytest.approx(np.mean(np.array(effects) < 0))
    assert int(one["n_seeds"]) == 2 and int(one["n_items"]) == len(items)
    page = (report / "index.html").read_text()
    assert "who the vector fails" in page and list(report.glob("*ab1_per_item.png"))
    assert (report / PER_ITEM_NAME).is_file()


def test_generation_per_item_effects_are_steered_minus_unsteered(tmp_path):
    lm = tiny_model("llama", tokenizer=True)
    config = tiny_config(tmp_path, methods=["mean_diff"], n_pairs=[4], seeds=[0], sites=["resid_pre.1"],
                         coefficients=[4.0])  # fmt: skip
    path = run_sweep(config, tmp_path / "out", models={"tiny": lm})
    rows = _csv(tmp_path / "out" / PER_ITEM_NAME)
    task = get_task("tinyset", config.custom_datasets)
    prompts = task.split_prompts()["test"]
    with ResultStore(path) as store:
        base = next(r for r in store.rows(split="test", method="unsteered", metric=task.effect_metric))
        from steerscope.evaluate.store import cell_of

        steered = [r for r in store.rows(split="test", method="mean_diff", metric=task.effect_metric)]
        assert steered
        for cell_row in steered:
            texts = store.texts(cell_of(cell_row))
            base_texts = store.texts(cell_of(base))
            mine = sorted((r for r in rows if float(r["coefficient"]) == cell_row["coefficient"]
                           and (r["site"], r["method"]) == (cell_row["site"], "mean_diff")),
                          key=lambda r: int(r["item"]))  # fmt: skip
            assert [r["text"] for r in mine] == prompts
            for r, text, base_text in zip(mine, texts, base_texts, strict=True):
                # slow: each completion scored on its own
                one = task.score([text])[task.effect_metric][0] - task.score([base_text])[task.effect_metric][0]
                assert float(r["effect"]) == pytest.approx(one)
    report = sweep_report(tmp_path / "out")
    assert "who the vector fails" in (report / "index.html").read_text()


def test_a_binary_score_gets_its_continuous_companion():
    from steerscope.sweep.per_item import anti_steerable_table, generation_item_effects

    def row(method, metric, items, coefficient=0.0, site="-"):
        return {"model": "m", "dataset": "d", "method": method, "n_pairs": 4, "site": site, "coefficient": coefficient,
                "seed": 0, "split": "test", "metric": metric, "items": items}  # fmt: skip

    rows = [row("unsteered", "positive", [1.0, 0.0, 1.0]), row("unsteered", "sentiment", [0.5, -0.2, 0.9]),
            row("mean_diff", "positive", [1.0, 1.0, 0.0], 4.0, "s"),
            row("mean_diff", "sentiment", [0.7, 0.4, -0.1], 4.0, "s")]  # fmt: skip
    items = generation_item_effects(rows, {"d": ["a", "b", "c"]}, {"d": "positive"})
    assert [r["effect"] for r in items] == [0.0, 1.0, -1.0]
    assert [r["effect_score"] for r in items] == pytest.approx([0.2, 0.6, -1.0])
    table = anti_steerable_table(items, n_boot=50)[0]
    assert table["anti_steerable"] == pytest.approx(1 / 3) and table["tied"] == pytest.approx(1 / 3)
    assert table["score_wrong_way"] == pytest.approx(1 / 3)
