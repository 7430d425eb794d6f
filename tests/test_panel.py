"""The side-effect panel of an A/B sweep: the entanglement matrix's diagonal equals each behaviour's main effect, an
off-diagonal entry equals a hand-made vector measured one item at a time on the other behaviour, a user's A/B file
is measured too, and the report draws the matrix."""

import json
from dataclasses import replace

import numpy as np
import pytest
from sweep_fixtures import one_thread  # noqa: F401  (fixture)
from test_sweep_ab import _config, _hand_vector, _items, letter_tokenizer
from tiny_models import tiny_model

from steerscope.evaluate.behaviour import behaviour_probability, read_ab_items
from steerscope.steering.tasks import get_task
from steerscope.steering.vector import SteeringVector
from steerscope.sweep.config import PanelSpec
from steerscope.sweep.report import sweep_report
from steerscope.sweep.runner import run_sweep


def test_entanglement_diagonal_is_the_main_effect(tmp_path):
    lm = tiny_model("llama")
    lm.tokenizer = letter_tokenizer()
    extra = _items(tmp_path / "mine.json", 7, n=12)
    config = _config(tmp_path, n_pairs=[3], seeds=[0], sites=["resid_pre.1", "resid_pre.2"], baselines=["unsteered"])
    config = replace(config, panel=PanelSpec(ab_files=[extra], n_items=6))
    run_sweep(config, tmp_path / "out", models={"tiny": lm})
    assert (tmp_path / "out" / "panel.sqlite").is_file()
    report = sweep_report(tmp_path / "out")
    data = json.loads((report / "report.json").read_text())
    matrix = {(r["steered"], r["measured"]): r for r in data["entanglement"]}
    main = {r["dataset"]: r for r in data["caa_effects"] if r["method"] == "mean_diff"}
    assert set(main) == {"ab1", "ab2"}
    for name, effect in main.items():
        assert matrix[(name, name)]["effect"] == pytest.approx(effect["effect"], abs=1e-9)
        assert matrix[(name, name)]["site"] == effect["site"]
    assert set(matrix) == {(x, y) for x in ("ab1", "ab2") for y in ("ab1", "ab2", "file:mine.json")}
    # steer ab1, measure ab2: a hand-made vector, one item at a time
    site = main["ab1"]["site"]
    hand = SteeringVector({site: _hand_vector(lm, get_task("ab1", config.custom_datasets), 3, 0, site)})
    items = get_task("ab2", config.custom_datasets).split_items()["test"]
    p = {m: np.array([behaviour_probability(lm, [it], vector=hand, coefficient=m)[0] for it in items]) for m in (-1, 1)}
    assert matrix[("ab1", "ab2")]["effect"] == pytest.approx(float(np.mean(p[1] - p[-1])), abs=1e-5)
    assert matrix[("ab2", "file:mine.json")]["n_items"] == 6 == len(read_ab_items(extra)[:6])
    page = (report / "index.html").read_text()
    assert "side-effect panel" in page and list(report.glob("*entanglement_mean_diff_n3.png"))
