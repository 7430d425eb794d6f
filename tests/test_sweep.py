"""Sweeps on a tiny random model: the full set of cells, resume after a crash, the protocol's split."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sweep_fixtures import one_thread, tiny_config  # noqa: F401  (fixture)
from tiny_models import tiny_model

import steerscope.sweep.runner as runner_mod
from steerscope.evaluate.store import ResultStore, SettingsMismatchError, cell_of
from steerscope.methods import COST_METRICS
from steerscope.steering.tasks import get_task
from steerscope.sweep.engines import LocalEngine
from steerscope.sweep.protocol import paired_difference, select
from steerscope.sweep.runner import STORE_NAME, SweepRunner, pair_subset, run_sweep, vector_specs


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama", tokenizer=True)


class Crash(Exception):
    pass


def _cells(path):
    with ResultStore(path) as store:
        return [cell_of(r) for r in store.rows()], store.rows()


def test_tiny_sweep_measures_every_planned_cell(tmp_path, lm):
    config = tiny_config(tmp_path)
    path = run_sweep(config, tmp_path / "out", models={"tiny": lm})
    cells, rows = _cells(path)
    keys = {c.key for c in cells}
    specs = vector_specs(config)
    # actadd only at n=1, probe only at n>=2, random at the largest n; two seeds each
    assert {(s.method, s.n_pairs) for s in specs} == {
        ("mean_diff", 1),
        ("mean_diff", 2),
        ("mean_diff", 4),
        ("probe", 2),
        ("probe", 4),
        ("actadd", 1),
        ("random", 4),
    }
    validation = {k for k, c in zip(keys, keys, strict=True) if '"validation"' in k}
    assert len(validation) == 2 + len(specs) * 2 * 2  # baselines + specs x sites x coefficients
    test_cells = [c for c in {c.key: c for c in cells}.values() if c.split == "test" and c.method != "unsteered"]
    assert all(c.coefficient in (1.0, 4.0) for c in test_cells if c.method != "prompting")
    metrics = {r["metric"] for r in rows if r["split"] == "test" and r["method"] == "mean_diff"}
    assert metrics == {"keyword_rate", "fluency_ce", "fluency_cost", "delta_ce", "kl", *COST_METRICS}
    # cost: the pairs' tokens counted one by one, nothing for an SAE, totals add up
    pairs = get_task("tinyset", config.custom_datasets).train_pairs()
    for r in (r for r in rows if r["split"] == "test" and r["metric"] == "cost_pair_tokens"):
        subset = pair_subset(pairs, r["n_pairs"], r["seed"])
        assert r["value"] == sum(len(lm.tokenizer(t)["input_ids"]) for p in subset for t in (p.positive, p.negative))
    by_cell = {}
    for r in rows:
        by_cell.setdefault(r["cell"], {})[r["metric"]] = r["value"]
    costed = [m for m in by_cell.values() if "cost_total_flops" in m]
    assert costed and all(m["cost_sae_flops"] == 0 and m["cost_total_flops"] == m["cost_fit_flops"] > 0 for m in costed)
    unsteered = [r for r in rows if r["method"] == "unsteered" and r["metric"] == "fluency_cost"]
    assert all(r["value"] == 0 for r in unsteered)
    # the prompting baseline shows the instruction "w90 w90 w90": its completions are scored, not its prompt
    prompting = [r for r in rows if r["method"] == "prompting" and r["metric"] == "keyword_rate"]
    assert len(prompting) == 2 and all(0 <= r["value"] <= 1 for r in prompting)
    assert (tmp_path / "out" / "selection.json").is_file() and (tmp_path / "out" / "config.json").is_file()


HARD_KILL = """
import os, sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from pathlib import Path
from sweep_fixtures import tiny_config
from tiny_models import tiny_model
from steerscope.sweep.runner import run_sweep
config = tiny_config(Path({data!r}), methods=["mean_diff"], sites=["resid_pre.1"], n_pairs=[1, 4])
count = []
def on_cell(cell):
    count.append(cell)
    if len(count) == {k}:
        os._exit(9)  # a hard kill: no exception handling, no clean-up, no close
run_sweep(config, Path({out!r}), models={{"tiny": tiny_model("llama", tokenizer=True)}}, on_cell=on_cell)
"""


def test_crash_mid_sweep_then_rerun_gives_each_row_exactly_once(tmp_path, lm):
    config = tiny_config(tmp_path, methods=["mean_diff"], sites=["resid_pre.1"], n_pairs=[1, 4])
    full = run_sweep(config, tmp_path / "full", models={"tiny": lm})
    expected = sorted((r["cell"], r["metric"]) for r in _cells(full)[1])
    n_cells = len({c for c, _ in expected})
    seen = []

    def crash_after_third(cell):
        seen.append(cell)
        if len(seen) == 3:
            raise Crash

    with pytest.raises(Crash):  # an exception after 3 cells
        SweepRunner(config, tmp_path / "crashy", on_cell=crash_after_third, models={"tiny": lm}).run()
    script = HARD_KILL.format(tests=str(Path(__file__).parent), data=str(tmp_path), out=str(tmp_path / "crashy"), k=5)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert killed.returncode == 9, killed.stderr[-2000:]
    assert len(_cells(tmp_path / "crashy.partial" / STORE_NAME)[0]) > 0  # unfinished: in the partial folder
    resumed_cells = []
    run_sweep(config, tmp_path / "crashy", models={"tiny": lm}, on_cell=resumed_cells.append)
    got = sorted((r["cell"], r["metric"]) for r in _cells(tmp_path / "crashy" / STORE_NAME)[1])
    assert got == expected, "the resumed store must hold exactly the rows of an uninterrupted run"
    assert len(set(got)) == len(got)
    assert len(resumed_cells) == n_cells - 3 - 5, "finished cells are not measured again"
    # identical values: greedy generation is deterministic, so the resumed run equals the clean one
    # (all but the measured wall times of fitting)
    a = {(r["cell"], r["metric"]): r["value"] for r in _cells(full)[1] if "seconds" not in r["metric"]}
    b = {(r["cell"], r["metric"]): r["value"] for r in _cells(tmp_path / "crashy" / STORE_NAME)[1]}
    assert all(np.isclose(a[k], b[k], equal_nan=True) for k in a)


def test_resume_with_other_settings_is_refused(tmp_path, lm):
    config = tiny_config(tmp_path, methods=["mean_diff"], sites=["resid_pre.1"], n_pairs=[1], seeds=[0])
    run_sweep(config, tmp_path / "out", models={"tiny": lm})
    other = tiny_config(
        tmp_path,
        methods=["mean_diff"],
        sites=["resid_pre.1"],
        n_pairs=[1],
        seeds=[0],
        generation={"max_new_tokens": 5, "batch_size": 3},
    )
    with pytest.raises(SettingsMismatchError, match="generation"):
        run_sweep(other, tmp_path / "out", models={"tiny": lm})


def test_selection_never_sees_a_test_item(tmp_path, lm):
    """Instrument the scorer: until selection has happened, it only ever scores validation completions."""
    config = tiny_config(tmp_path, methods=["mean_diff"], sites=["resid_pre.1"], n_pairs=[2])
    engine = LocalEngine({"tiny": lm})
    runner = SweepRunner(config, tmp_path / "out", engine=engine)
    events = []
    real_select = runner_mod.select

    def recording_select(rows, *args):
        rows = list(rows)
        events.append(("select", {r["split"] for r in rows}))
        return real_select(rows, *args)

    measurer = engine.measurer_for(config)
    real_measure, real_generate = measurer.measure, measurer.generate
    split: list[str] = []

    def recording_measure(job):
        split[:] = [job.cell.split]
        return real_measure(job)

    def recording_generate(lm_, prompts):
        events.append(("measure", split[0], tuple(prompts)))
        return real_generate(lm_, prompts)

    measurer.measure, measurer.generate = recording_measure, recording_generate
    runner_mod.select = recording_select
    try:
        runner.run()
    finally:
        runner_mod.select = real_select
    split_prompts = get_task("tinyset", config.custom_datasets).split_prompts()
    assert not set(split_prompts["validation"]) & set(split_prompts["test"])
    selections = [i for i, e in enumerate(events) if e[0] == "select"]
    assert selections and all(events[i][1] == {"validation"} for i in selections), "selection reads validation only"
    for e in events:  # what was generated from: the split's prompts (after the instruction, for prompting)
        if e[0] == "measure":
            assert all(any(shown == p or shown.endswith("\n" + p) for p in split_prompts[e[1]]) for shown in e[2]), e
    steered_tests = [i for i, e in enumerate(events) if e[0] == "measure" and e[1] == "test"][2:]  # after baselines
    assert steered_tests and all(any(j < i for j in selections) for i in steered_tests)


def test_select_refuses_test_rows_and_applies_the_fluency_limit():
    def row(coef, metric, value, split="validation", seed=0):
        return dict(
            model="m",
            dataset="d",
            method="x",
            n_pairs=4,
            site="s",
            coefficient=coef,
            seed=seed,
            split=split,
            metric=metric,
            value=value,
        )

    rows = [
        row(1, "eff", 0.2),
        row(1, "fluency_cost", 0.1),
        row(2, "eff", 0.5),
        row(2, "fluency_cost", 0.4),
        row(4, "eff", 0.9),
        row(4, "fluency_cost", 3.0),
        row(2, "eff", 0.7, seed=1),
        row(2, "fluency_cost", 0.6, seed=1),
    ]
    best = select(rows, "eff", 1.0)["best"][("m", "d", "x", 4)]
    assert best.coefficient == 2 and best.effect == pytest.approx(0.6) and best.fluency_cost == pytest.approx(0.5)
    assert select(rows, "eff", 10.0)["best"][("m", "d", "x", 4)].coefficient == 4
    fallback = select(rows, "eff", 0.01)["best"][("m", "d", "x", 4)]
    assert fallback.coefficient == 1 and not fallback.qualified
    with pytest.raises(ValueError, match="validation"):
        select([*rows, row(4, "eff", 1.0, split="test")], "eff", 1.0)


def test_paired_difference_lines_up_seeds_and_items():
    def rows(*per_seed):
        return [{"seed": s, "items": list(items)} for s, items in enumerate(per_seed)]

    a = rows([1, 1, 0, 0], [1, 0, 1, 0])
    b = rows([0, 0, 0, 0], [1, 0, 1, 0])
    delta = paired_difference(a[::-1], b, n_boot=200)  # order of rows does not matter: seeds are matched
    assert delta["value"] == pytest.approx(0.25) and delta["ci"][0] <= 0.25 <= delta["ci"][1]
    assert paired_difference(a, rows([0, 0, 0]), n_boot=10) is None, "unequal shapes cannot be paired"


def test_pair_subsets_are_seeded_and_nested():
    pairs = list(range(50))
    a, b = pair_subset(pairs, 8, seed=3), pair_subset(pairs, 16, seed=3)
    assert b[:8] == a and len(set(b)) == 16 and pair_subset(pairs, 8, seed=4) != a
    with pytest.raises(ValueError, match="lower n_pairs"):
        pair_subset(pairs, 51, 0)
