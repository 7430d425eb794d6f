"""`steerscope lens` / `steerscope depth`: the folder, the page, resume, the CLI, bad input and Ray."""

import json

import pytest
from cli_checks import bad
from test_depth_runner import _Sections
from tiny_models import save_tiny, tiny_text_file
from typer.testing import CliRunner

from steerscope.cli import app
from steerscope.core.cluster import RaySpec
from steerscope.depth import instruments as instruments_mod
from steerscope.depth.instruments import InstrumentPlan, parse_instruments, run_instruments
from steerscope.depth.run import DepthRun, TextSpec


@pytest.fixture
def setup(tmp_path):
    save_tiny(tmp_path / "tiny", "llama")
    text = TextSpec(source=tiny_text_file(tmp_path), n=4, seq_len=8, batch_size=2)
    return tmp_path, text


def test_every_instrument_on_one_page(setup):
    tmp, text = setup
    run = DepthRun(models=[str(tmp / "tiny")], out=tmp / "out", text=text, n_boot=50)
    plan = InstrumentPlan(instruments=parse_instruments("all"), tuned_steps=3, tuned_n=4)
    folder, rows = run_instruments(run, plan)
    model = folder / "tiny"
    for name in ("depth.json", "lens.csv", "tuned-lens.csv", "tuned-lens.safetensors", "contributions.csv",
                 "skip.csv", "swap.csv", "lens.png", "contributions.png", "skipping.png", "norms.png"):  # fmt: skip
        assert (model / name).is_file(), name
    result = json.loads((model / "depth.json").read_text())
    last = result["lens"]["per_layer"][-1]
    assert last["kl"] < 1e-5 and last["top1"] == 1.0 and last["top5"] == 1.0
    assert abs(last["ce"] - result["lens"]["model_ce"]) < 1e-5
    assert result["tuned_lens"]["cost"]["steps"] == 3 and result["tuned_lens"]["cost"]["tokens"] == 3 * 2 * 7
    assert len(result["skipping"]["swap"]) == 2 and len(result["contributions"]) == 3
    assert result["horizon"]["per_k"][-1]["kl"] < 1e-5
    row = rows[0]
    assert row["layers"] == 3 and "effective_depth_kl_over_layers" in row and "k_star_delta_ce_over_layers" in row
    assert "growth_raw" in row and row["skip_later_change_first_half"] is not None
    eff = (folder / "effective-depth.csv").read_text()
    assert "Qwen2.5-1.5B-Instruct" in eff
    parser = _Sections()
    parser.feed((folder / "index.html").read_text())
    assert {"Summary", "Effective depth", "Text", "What these models can support"} <= set(parser.h2)
    assert parser.images >= 4
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_instruments(run, plan)


def test_interrupted_run_resumes_instrument_by_instrument(setup, monkeypatch):
    tmp, text = setup
    run = DepthRun(models=[str(tmp / "tiny")], out=tmp / "out", text=text, n_boot=50)
    plan = InstrumentPlan(instruments=("lens", "skipping"))
    lens_calls = []
    real_lens, real_skip = instruments_mod.lens, instruments_mod.skipping_batch
    monkeypatch.setattr(instruments_mod, "lens", lambda *a, **k: lens_calls.append(1) or real_lens(*a, **k))

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(instruments_mod, "skipping_batch", broken)
    with pytest.raises(KeyboardInterrupt):
        run_instruments(run, plan)
    assert lens_calls == [1] and (tmp / "out.partial" / "tiny" / "lens.json").is_file()
    monkeypatch.setattr(instruments_mod, "skipping_batch", real_skip)
    _, rows = run_instruments(run, plan)
    assert lens_calls == [1], "the finished lens is read back, not recomputed"
    fresh = DepthRun(models=[str(tmp / "tiny")], out=tmp / "fresh", text=text, n_boot=50)
    assert run_instruments(fresh, plan)[1] == rows


def test_lens_and_depth_commands_and_bad_input(setup):
    tmp, text = setup
    runner = CliRunner()
    base = [str(tmp / "tiny"), "--text", text.source, "--n", "4", "--seq-len", "8", "--n-boot", "20"]
    result = runner.invoke(app, ["lens", *base, "--out", str(tmp / "l")])
    assert result.exit_code == 0, result.output
    assert "eff. depth KL" in result.output
    assert (tmp / "l" / "tiny" / "lens.png").is_file() and not (tmp / "l" / "tiny" / "skip.csv").exists()
    result = runner.invoke(
        app, ["depth", *base, "--instruments", "lens,skipping", "--no-swaps", "--out", str(tmp / "d")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp / "d" / "tiny" / "depth.json").read_text())["skipping"]["swap"] == []
    bad(["depth", *base, "--instruments", "lens,xray", "--out", tmp / "b"], "unknown depth instrument 'xray'")
    nope = tmp / "nope.safetensors"
    bad(["lens", *base, "--tuned-lens", nope, "--out", tmp / "m"], "cannot read the tuned lens", str(nope))
    assert not (tmp / "m.partial").exists(), "a missing lens file is refused before any work"
    bad(["lens", *base, "--tuned", "--tuned-steps", "0", "--out", tmp / "s"], "--tuned-steps")
    bad(["depth", *base, "--ks", "0,1", "--out", tmp / "k"], "horizon k")
    bad(["lens", *base, "--out", tmp / "l"], "--overwrite")


def test_two_models_on_ray_equal_the_run_in_one_process(tmp_path, ray_instance):
    save_tiny(tmp_path / "llama", "llama")
    save_tiny(tmp_path / "gpt_neox", "gpt_neox")
    text = TextSpec(source=tiny_text_file(tmp_path), n=4, seq_len=8, batch_size=2)
    plan = InstrumentPlan(instruments=("lens", "contributions", "skipping"))

    def run(out):
        return DepthRun(models=[str(tmp_path / "llama"), str(tmp_path / "gpt_neox")], out=tmp_path / out, text=text,
                        n_boot=50)  # fmt: skip

    here, rows_here = run_instruments(run("here"), plan)
    there, rows_there = run_instruments(run("there"), plan, cluster=RaySpec(cpus_per_worker=1))
    assert rows_there == rows_here
    files = lambda root: sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())  # noqa: E731
    assert files(there) == files(here)
