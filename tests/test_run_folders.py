"""Every runner that writes a folder follows one rule (core.runs.RunFolder), checked runner by runner:
an existing output is refused without overwrite; overwrite replaces it only once the new run is complete
(a run that fails midway leaves the old folder intact); an unfinished run resumes with equal settings,
is refused naming the setting that differs otherwise, and restart starts it over."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
from tiny_models import save_tiny, tiny_model

import steerscope.core.training as training_mod
from steerscope.core.runs import OutputExistsError, RunFolder, RunSettingsError, settings_diff

pytestmark = pytest.mark.usefixtures("one_thread")


class Midway(Exception):
    """The failure a test injects halfway through a run."""


@dataclass
class Case:
    """One runner under the rule: `run(out, changed, overwrite, restart)`; `break_midway(mp)` makes the next
    run fail after it wrote part of its results; `work()` counts the units of work done since the last call
    (to tell a resumed run from a fresh one); `setting` is the name the refusal must mention."""

    run: Callable[..., object]
    break_midway: Callable[[pytest.MonkeyPatch], None]
    work: Callable[[], int]
    setting: str
    caches: bool = True  # whether a resumed run has finished work to reuse


def _counter(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)

    def work():
        n = len(calls)
        calls.clear()
        return n

    return work


def _fail(monkeypatch, module, name):
    """`module.name` raises Midway once, then works again."""
    real = getattr(module, name)
    state = {"armed": True}

    def boom(*args, **kwargs):
        if state.pop("armed", False):
            raise Midway
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, boom)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    save_tiny(root / "tiny", "llama")
    g = torch.Generator().manual_seed(0)
    docs = [" ".join(f"w{int(i)}" for i in torch.randint(0, 90, (24,), generator=g)) for _ in range(200)]
    (root / "docs.txt").write_text("\n\n".join(docs))
    return root


def _depth_case(kind, tiny_folder, monkeypatch):
    from steerscope.depth import run as depth_mod
    from steerscope.depth.run import DepthRun, TextSpec

    text = TextSpec(source=str(tiny_folder / "docs.txt"), n=4, seq_len=8, batch_size=2)
    counted = "measure_norms" if kind == "norms" else "horizon_batch"
    work = _counter(monkeypatch, depth_mod, counted)

    def run(out, changed=False, overwrite=False, restart=False):
        spec = DepthRun(models=[str(tiny_folder / "tiny")], out=out, text=text, n_boot=20, overwrite=overwrite)
        spec = replace(spec, restart=restart, n_boot=30 if changed else 20)
        if kind == "norms":
            return depth_mod.run_norms(spec)
        return depth_mod.run_horizon(spec, ks=[1, 3])

    return Case(run, lambda mp: _fail(mp, depth_mod, "write_summary"), work, "n_boot")


def _sweep_case(tmp_path, monkeypatch):
    from sweep_fixtures import tiny_config

    from steerscope.sweep.runner import run_sweep

    lm = tiny_model("llama", tokenizer=True)
    cells = []
    state = {"crash_at": None}

    def on_cell(cell):
        cells.append(cell)
        if state["crash_at"] is not None and len(cells) >= state["crash_at"]:
            state["crash_at"] = None
            raise Midway

    def run(out, changed=False, overwrite=False, restart=False):
        gen = {"max_new_tokens": 5 if changed else 4, "batch_size": 3}
        config = tiny_config(
            tmp_path, methods=["mean_diff"], sites=["resid_pre.1"], n_pairs=[1], seeds=[0], generation=gen
        )
        return run_sweep(config, out, lm=lm, on_cell=on_cell, overwrite=overwrite, restart=restart)

    def work():
        n = len(cells)
        cells.clear()
        return n

    return Case(run, lambda mp: state.update(crash_at=len(cells) + 2), work, "generation.max_new_tokens")


def _sae_case(tiny_folder, monkeypatch):
    from steerscope.sae.train import SAETrainConfig, train_sae

    lm = tiny_model("llama", tokenizer=True)
    starts = []
    real = training_mod.TrainingLoop.run

    def recording(self, *args, **kwargs):
        starts.append(self.state.step)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(training_mod.TrainingLoop, "run", recording)
    state = {"pause": False}

    def run(out, changed=False, overwrite=False, restart=False):
        cfg = SAETrainConfig(site="resid_pre.1", expansion=2, k=3 if changed else 4, tokens=700, seq_len=8,
                          batch_size=64, chunk_sequences=40, n_eval=4, source=str(tiny_folder / "docs.txt"),
                          checkpoint_every=2)  # fmt: skip
        stop = 3 if state.pop("pause", False) else None
        result = train_sae(lm, out, cfg, show_progress=False, stop_after=stop, overwrite=overwrite, restart=restart)
        if stop is not None:
            raise Midway(result)
        return result

    def work():  # steps done by the last run = total - the step it started from (counted in starts)
        n = sum(1 for s in starts if s == 0)
        starts.clear()
        return n

    return Case(run, lambda mp: state.update(pause=True), work, "train.k")


def _maze_train_case(monkeypatch):
    from steerscope.maze.policy import PolicyConfig
    from steerscope.maze.train import PolicyTrainConfig, train

    starts = []
    real = training_mod.TrainingLoop.run

    def recording(self, *args, **kwargs):
        starts.append(self.state.step)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(training_mod.TrainingLoop, "run", recording)
    state = {"pause": False}

    def run(out, changed=False, overwrite=False, restart=False):
        cfg = PolicyTrainConfig(n_mazes=9 if changed else 8, steps=4, batch_size=16, checkpoint_every=2, eval_mazes=2,
                          sizes=(5, 7))  # fmt: skip
        stop = 2 if state.pop("pause", False) else None
        result = train(out, cfg, PolicyConfig(channels=(4, 8, 8), hidden=16), show_progress=False, stop_after=stop,
                       overwrite=overwrite, restart=restart)  # fmt: skip
        if stop is not None:
            raise Midway(result)
        return result

    def work():
        n = sum(1 for s in starts if s == 0)
        starts.clear()
        return n

    return Case(run, lambda mp: state.update(pause=True), work, "train.n_mazes")


def _cheese_case(tmp_path, monkeypatch):
    from steerscope.maze import run as maze_run
    from steerscope.maze.policy import MazePolicy, PolicyConfig, save_policy

    torch.manual_seed(0)
    save_policy(MazePolicy(PolicyConfig(channels=(4, 8, 8), hidden=16)), tmp_path / "policy")
    work = _counter(monkeypatch, maze_run, "cheese_experiment")

    def run(out, changed=False, overwrite=False, restart=False):
        coefficient = -2.0 if changed else -1.0
        spec = maze_run.CheeseRun(policy=tmp_path / "policy", out=out, n_mazes=3, figures=1, coefficient=coefficient,
                                  overwrite=overwrite, restart=restart)  # fmt: skip
        return maze_run.run_cheese(spec)

    return Case(run, lambda mp: _fail(mp, maze_run, "histogram_figure"), work, "coefficient", caches=False)


def _demo_case(monkeypatch):
    """The demo's own folder rule, with its four parts replaced by stand-ins (the real quick demo runs in
    test_demo.py): finished parts are kept in the partial folder and skipped on resume."""
    from steerscope import demo as demo_mod

    lm = tiny_model("llama", tokenizer=True)
    monkeypatch.setattr(demo_mod, "load_model", lambda spec: lm)
    done = []
    state = {"fail": False}

    def stand_in(name):
        def part(demo, lm_, folder, *rest):
            assert lm_ is lm, "every part gets the one loaded model"
            if state["fail"] and name == "comparison":
                state["fail"] = False
                raise Midway
            done.append(name)
            (folder.path(name, "result.txt")).write_text(name)
            return f"<p>{name}</p>", {"part": name}

        return part

    for name in ("depth", "steering", "comparison", "refusal"):
        monkeypatch.setattr(demo_mod, f"_{name}_part", stand_in(name))

    def run(out, changed=False, overwrite=False, restart=False):
        return demo_mod.run_demo(demo_mod.Demo(out=out, quick=True, coefficient=5.0 if changed else 4.0,
                                               overwrite=overwrite, restart=restart))  # fmt: skip

    def work():
        n = len(done)
        done.clear()
        return n

    return Case(run, lambda mp: state.update(fail=True), work, "coefficient")


def _refusal_case(tmp_path, monkeypatch):
    from test_refusal_direction import _tiny_with_real_tokenizer

    from steerscope.refusal import run as refusal_run

    _tiny_with_real_tokenizer(tmp_path / "chat")
    lm = refusal_run.load_model(str(tmp_path / "chat"))
    work = _counter(monkeypatch, refusal_run, "candidate_directions")

    def run(out, changed=False, overwrite=False, restart=False):
        spec = refusal_run.RefusalRun(model=str(tmp_path / "chat"), out=out, n_val=7 if changed else 8, n_fit=16,
                                      kl_max=math.inf, induce_min=-math.inf, max_new_tokens=1,
                                      n_test=1, text_n=2, text_len=16, export_model=False, overwrite=overwrite,
                                      restart=restart)  # fmt: skip
        return refusal_run.run_refusal(spec, lm=lm)

    return Case(run, lambda mp: _fail(mp, refusal_run, "_write_page"), work, "n_val")


RUNNERS = [
    "norms",
    "horizon",
    pytest.param("refusal", marks=pytest.mark.embedded),
    "sweep",
    "demo",
    "sae_train",
    "maze_train",
    "maze_cheese",
]


@pytest.fixture
def case(request, tiny_folder, tmp_path, monkeypatch):
    name = request.param
    if name in ("norms", "horizon"):
        return _depth_case(name, tiny_folder, monkeypatch)
    return {
        "refusal": lambda: _refusal_case(tmp_path, monkeypatch),
        "sweep": lambda: _sweep_case(tmp_path, monkeypatch),
        "demo": lambda: _demo_case(monkeypatch),
        "sae_train": lambda: _sae_case(tiny_folder, monkeypatch),
        "maze_train": lambda: _maze_train_case(monkeypatch),
        "maze_cheese": lambda: _cheese_case(tmp_path, monkeypatch),
    }[name]()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", RUNNERS, indirect=True)
def test_existing_output_and_overwrite(case, tmp_path, monkeypatch):
    out = tmp_path / "out"
    case.run(out)
    assert out.is_dir() and not out.with_name("out.partial").exists()
    before = _snapshot(out)
    with pytest.raises(FileExistsError, match="--overwrite"):
        case.run(out)
    with pytest.raises(FileExistsError, match="--overwrite"):  # other settings: named too
        case.run(out, changed=True)
    with pytest.raises(RunSettingsError, match=case.setting.split(".")[-1]):
        case.run(out, changed=True)
    case.break_midway(monkeypatch)
    with pytest.raises(Midway):
        case.run(out, overwrite=True, changed=True)
    assert _snapshot(out) == before, "a run that fails midway leaves the old folder intact"
    case.run(out, overwrite=True, changed=True, restart=True)
    assert not out.with_name("out.partial").exists() and (out / "run_settings.json").is_file()


@pytest.mark.parametrize("case", RUNNERS, indirect=True)
def test_resume_refuse_and_restart(case, tmp_path, monkeypatch):
    out = tmp_path / "out"
    case.break_midway(monkeypatch)
    with pytest.raises(Midway):
        case.run(out)
    partial = out.with_name("out.partial")
    assert partial.is_dir() and not out.exists() and (partial / "run_settings.json").is_file()
    case.work()
    with pytest.raises(RunSettingsError, match=rf"{case.setting}: .* -> .*pass --restart to start over"):
        case.run(out, changed=True)
    assert partial.is_dir() and case.work() == 0, "a refused run changes nothing"
    case.break_midway(monkeypatch)
    with pytest.raises(Midway):
        case.run(out)
    case.work()
    case.run(out)  # same settings: resumes
    resumed_work = case.work()
    assert out.is_dir() and not partial.exists()
    case.break_midway(monkeypatch)
    with pytest.raises(Midway):
        case.run(tmp_path / "other")
    case.work()
    case.run(tmp_path / "other", changed=True, restart=True)  # other settings, restart: starts over
    fresh_work = case.work()
    assert not (tmp_path / "other.partial").exists()
    if case.caches:  # (the cheese run has nothing to reuse: it is one computation)
        assert resumed_work < fresh_work, "the resumed run reuses finished work; the restarted one redoes it"


def test_settings_diff_names_nested_settings_old_to_new():
    assert settings_diff({"a": 1, "t": {"k": 4, "n": 2}}, {"a": 1, "t": {"k": 3, "n": 2}, "b": [1]}) == [
        "b: (unset) -> [1]",
        "t.k: 4 -> 3",
    ]


def test_run_folder_rule(tmp_path):
    out = tmp_path / "r"
    folder = RunFolder(out, {"n": 1, "path": Path("x"), "t": (1, 2)})
    assert not folder.resumed and not folder.work.exists()  # nothing is written before the first file
    folder.path("a.txt").write_text("a")
    again = RunFolder(out, {"n": 1, "path": "x", "t": [1, 2]})  # JSON-equal settings resume
    assert again.resumed and (again.work / "a.txt").is_file()
    with pytest.raises(RunSettingsError, match=r"^.* \(n: 1 -> 2\); pass --restart to start over"):
        RunFolder(out, {"n": 2, "path": "x", "t": [1, 2]})
    fresh = RunFolder(out, {"n": 2}, restart=True)
    assert not fresh.resumed and not fresh.work.exists()
    fresh.path("b.txt").write_text("b")
    assert fresh.commit() == out and sorted(p.name for p in out.iterdir()) == ["b.txt", "run_settings.json"]
    with pytest.raises(OutputExistsError, match="already exists; pass --overwrite"):
        RunFolder(out, {"n": 2})
    with pytest.raises(RunSettingsError, match=r"n: 2 -> 3\); pass --overwrite"):
        RunFolder(out, {"n": 3})
    assert isinstance(OutputExistsError("x"), ValueError)
