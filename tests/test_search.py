"""`steerscope search`: the Pareto front against brute force, a search on a tiny model whose front holds no dominated
point, a search killed mid-way that resumes to the same trials and front as an uninterrupted one, the grid compared
on equal budget, the chosen point confirmed on test, an A/B search, and configs a search refuses."""

import json

import numpy as np
import pytest
from sweep_fixtures import one_thread, tiny_config  # noqa: F401  (fixture)
from test_sweep_ab import _config as ab_config
from test_sweep_ab import letter_tokenizer
from tiny_models import tiny_model

from steerscope.sweep.config import ConfigError, SearchSpec
from steerscope.sweep.search import SEARCH_DB, dominates, hypervolume, pareto_front, run_search


def test_front_and_hypervolume_by_brute_force():
    rng = np.random.default_rng(0)
    pts = [tuple(p) for p in rng.normal(size=(40, 2)).round(1)]  # ties and duplicates included
    front = pareto_front(pts)
    for i, p in enumerate(pts):
        beaten = any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in pts)
        assert (i in front) == (not beaten and pts.index(p) == i)
    # hypervolume of a staircase by counting grid cells
    stair = [(1.0, 0.0), (2.0, 1.0), (3.0, 2.5)]
    ref = (0.0, 3.0)
    xs, ys = np.meshgrid(np.linspace(0, 3, 601)[:-1] + 0.0025, np.linspace(0, 3, 601)[:-1] + 0.0025)
    covered = np.zeros_like(xs, dtype=bool)
    for e, s in stair:
        covered |= (ys <= e) & (xs >= s)  # x: side effect, y: effect
    assert hypervolume(stair, ref) == pytest.approx(covered.mean() * 9, abs=0.02)
    assert hypervolume(stair, ref) == pytest.approx(3 * 1 + 2 * 1 + 0.5 * 1)


def _search_config(tmp_path, **search):
    spec = {"trials": 6, "objective": "kl", "coefficient_min": 0.5, "coefficient_max": 8.0, "log": True, **search}
    return tiny_config(tmp_path, methods=["mean_diff"], n_pairs=[2, 4], seeds=[0], coefficients=[1.0, 4.0, 8.0],
                       sites=["resid_pre.1", "resid_pre.2"], search=spec)  # fmt: skip


class Crash(Exception):
    pass


def test_a_killed_search_resumes_to_the_same_front(tmp_path):
    lm = tiny_model("llama", tokenizer=True)
    config = _search_config(tmp_path, grid=False)
    whole = run_search(config, tmp_path / "whole", lm=lm)
    calls = []

    def crash(setting):
        calls.append(setting)
        if len(calls) == 4:
            raise Crash

    with pytest.raises(Crash):
        run_search(config, tmp_path / "killed", lm=lm, on_trial=crash)
    assert (tmp_path / "killed.partial" / SEARCH_DB).is_file()
    again = []
    resumed = run_search(config, tmp_path / "killed", lm=lm, on_trial=again.append)
    assert len(again) == 6 - 3  # the three finished trials are kept; the crashed one is proposed again
    a = json.loads((whole / "search.json").read_text())["datasets"]["tinyset"]
    b = json.loads((resumed / "search.json").read_text())["datasets"]["tinyset"]
    assert a["search"]["front"] == b["search"]["front"] and a["search"]["chosen"] == b["search"]["chosen"]
    assert (whole / "trials.csv").read_text() == (resumed / "trials.csv").read_text()


def test_search_front_has_no_dominated_point_and_compares_with_the_grid(tmp_path):
    lm = tiny_model("llama", tokenizer=True)
    config = _search_config(tmp_path, trials=0)  # the grid's size: 2 n_pairs x 2 sites x 3 coefficients
    out = run_search(config, tmp_path / "out", lm=lm)
    summary = json.loads((out / "search.json").read_text())
    r = summary["datasets"]["tinyset"]
    assert summary["budget"] == summary["grid_size"] == 12
    assert r["search"]["evaluated"] == r["grid"]["evaluated"] == 12
    for kind in ("search", "grid"):
        front = [(p["effect"], p["side_effect"]) for p in r[kind]["front"]]
        every = [(p["effect"], p["side_effect"]) for p in r[kind]["front"]]
        rows = [ln.split(",") for ln in (out / "trials.csv").read_text().splitlines()]
        head = rows[0]
        every = [(float(x[head.index("effect")]), float(x[head.index("side_effect")])) for x in rows[1:]
                 if x[head.index("kind")] == kind]  # fmt: skip
        assert len(every) == 12 and front
        assert not any(dominates(q, p) for p in front for q in every)  # nothing dominates a front point
        assert all(any(dominates(f, q) or f == q for f in front) for q in every)  # and the front covers the rest
        coefs = {float(x[head.index("coefficient")]) for x in rows[1:] if x[head.index("kind")] == kind}
        assert coefs <= {1.0, 4.0, 8.0} if kind == "grid" else all(0.5 <= c <= 8.0 for c in coefs)
        test = r[kind]["test"]
        assert {"effect", "effect_lo", "effect_hi", "side_effect", "unsteered_effect"} <= set(test)
        assert test["effect_lo"] <= test["effect"] <= test["effect_hi"]
    assert r["search"]["hypervolume"] >= 0 and r["grid"]["hypervolume"] >= 0 and r["verdict"]
    assert (out / "front_tinyset.png").is_file() and "equal budget" in (out / "index.html").read_text()


def test_an_ab_search_and_what_a_search_refuses(tmp_path):
    lm = tiny_model("llama")
    lm.tokenizer = letter_tokenizer()
    spec = SearchSpec(trials=3, objective="kl", coefficient_min=0.5, coefficient_max=4.0, grid=False)
    one = {k: v for k, v in ab_config(tmp_path).custom_datasets.items() if k == "ab1"}
    config = ab_config(tmp_path, n_pairs=[3], seeds=[0], sites=["resid_pre.1", "resid_pre.2"], baselines=["unsteered"],
                       datasets=one)  # fmt: skip
    from dataclasses import replace

    out = run_search(replace(config, search=spec), tmp_path / "ab", lm=lm)
    r = json.loads((out / "search.json").read_text())["datasets"]["ab1"]
    assert r["search"]["evaluated"] == 3 and 0 <= r["search"]["test"]["effect"] <= 1
    with pytest.raises(ConfigError, match="A/B items, which generate no text"):
        run_search(replace(config, search=replace(spec, objective="fluency_cost")), tmp_path / "ab2", lm=lm)
    with pytest.raises(ConfigError, match=r"\[search\] objective must be one of"):
        _search_config(tmp_path, objective="accuracy")
    with pytest.raises(ConfigError, match="coefficient_min < coefficient_max"):
        _search_config(tmp_path, coefficient_min=5.0, coefficient_max=1.0)


def test_the_search_command_refuses_bad_search_tables(tmp_path):
    from cli_checks import bad

    cfg = tmp_path / "s.toml"
    cfg.write_text('sites = ["resid_pre.1"]\ncoefficients = [1, 4]\nn_pairs = [2]\n[search]\nobjective = "loss"\n')
    bad(["search", cfg, "--out", tmp_path / "x"], "[search] objective must be one of fluency_cost, kl, delta_ce")
    cfg.write_text('sites = ["resid_pre.1"]\ncoefficients = [4]\nn_pairs = [2]\n[search]\ntrials = 3\n')
    bad(["search", cfg, "--out", tmp_path / "x"], "coefficient_min < coefficient_max")
    cfg.write_text('sites = ["resid_pre.1"]\ncoefficients = [1, 4]\nn_pairs = [2]\n[search]\ntrails = 3\n')
    bad(["search", cfg, "--out", tmp_path / "x"], "unknown key(s) ['trails'] in [search]")
    bad(["search", cfg, "--out", tmp_path / "x", "--trials", "-1"], "--trials must be >= 0")
