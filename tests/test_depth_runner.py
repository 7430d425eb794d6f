"""The norms / horizon runners: result folders, refusal to overwrite, resume, the CLI and the HTML page."""

import json
from html.parser import HTMLParser

import pytest
from tiny_models import save_tiny, tiny_text_file
from typer.testing import CliRunner

from steerscope.cli import app
from steerscope.depth import horizon as horizon_mod
from steerscope.depth import run as depth_mod
from steerscope.depth.run import DepthRun, TextSpec, run_horizon, run_norms


@pytest.fixture
def setup(tmp_path):
    save_tiny(tmp_path / "tiny", "llama")
    text = TextSpec(source=tiny_text_file(tmp_path), n=6, seq_len=8, batch_size=2)
    return tmp_path, text


class _Sections(HTMLParser):
    def __init__(self):
        super().__init__()
        self.h2, self.images, self._in_h2 = [], 0, False

    def handle_starttag(self, tag, attrs):
        self._in_h2 = tag == "h2"
        if tag == "img" and dict(attrs).get("src", "").startswith("data:image/png;base64,"):
            self.images += 1

    def handle_data(self, data):
        if self._in_h2:
            self.h2.append(data)
            self._in_h2 = False


def test_horizon_run_writes_everything_and_refuses_existing(setup):
    tmp, text = setup
    run = DepthRun(models=[str(tmp / "tiny")], out=tmp / "out", text=text, n_boot=50)
    folder, rows = run_horizon(run, ks=[1, 2, 3])
    model_dir = folder / "tiny"
    for name in ("horizon.json", "horizon.csv", "horizon.png", "norms.json", "norms.csv", "norms.png"):
        assert (model_dir / name).is_file(), name
    assert (folder / "summary.csv").is_file() and not (tmp / "out.partial").exists()
    per_k = json.loads((model_dir / "horizon.json").read_text())["per_k"]
    assert abs(per_k[-1]["kl"]) < 1e-5 and per_k[-1]["top1"] == 1  # k = L is the clean model
    assert rows[0]["k_star_kl"] == min(r["k"] for r in per_k if r["kl"] < 0.1)
    assert rows[0]["layers"] == 3
    parser = _Sections()
    parser.feed((folder / "index.html").read_text())
    assert {"Summary", "Text", "Variants", "k* by variant"} <= set(parser.h2) and parser.images == 2
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_horizon(run, ks=[1])


def test_interrupted_sweep_resumes_without_recomputing(setup, monkeypatch):
    tmp, text = setup
    run = DepthRun(models=[str(tmp / "tiny")], out=tmp / "out", text=text, n_boot=50)
    calls = []
    real = horizon_mod.horizon_batch

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(depth_mod, "horizon_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_horizon(run, ks=[1, 3])
    assert (tmp / "out.partial").is_dir() and not (tmp / "out").exists()
    monkeypatch.setattr(depth_mod, "horizon_batch", lambda *a, **k: calls.append(1) or real(*a, **k))
    _, resumed = run_horizon(run, ks=[1, 3])
    assert len(calls) == 2 + 2  # batch 0 kept, batches 1 and 2 run after the restart
    monkeypatch.setattr(depth_mod, "horizon_batch", real)
    _, fresh = run_horizon(DepthRun(models=[str(tmp / "tiny")], out=tmp / "fresh", text=text, n_boot=50), ks=[1, 3])
    assert resumed == fresh


def test_norms_cli_and_bad_input(setup):
    tmp, text = setup
    runner = CliRunner()
    args = ["norms", str(tmp / "tiny"), "--text", text.source, "--n", "4", "--seq-len", "8", "--n-boot", "20"]
    result = runner.invoke(app, [*args, "--out", str(tmp / "n")])
    assert result.exit_code == 0, result.output
    assert "growth" in result.output and (tmp / "n" / "tiny" / "norms.png").is_file()
    again = runner.invoke(app, [*args, "--out", str(tmp / "n")])
    assert again.exit_code == 2 and "already exists" in " ".join(again.output.split())
    short = runner.invoke(
        app, ["norms", str(tmp / "tiny"), "--text", text.source, "--seq-len", "50", "--out", str(tmp / "short")]
    )
    assert short.exit_code == 2 and "at least 50 tokens" in " ".join(short.output.split())
    bad = runner.invoke(app, ["horizon", str(tmp / "tiny"), "--fill", "median", "--out", str(tmp / "h")])
    assert bad.exit_code == 2 and "fill must be one of" in " ".join(bad.output.split())
    folder, rows = run_norms(DepthRun(models=[str(tmp / "tiny")], out=tmp / "n", text=text, n_boot=20, overwrite=True))
    assert rows[0]["growth_raw"] > 0 and folder == tmp / "n"


def test_two_models_get_the_cross_model_table_and_figures(setup):
    tmp, text = setup
    save_tiny(tmp / "tiny-gemma", "gemma2")
    run = DepthRun(models=[str(tmp / "tiny"), str(tmp / "tiny-gemma")], out=tmp / "two", text=text, n_boot=20)
    folder, rows = run_horizon(run, ks=[1, 2, 3])
    assert [r["model"].split("/")[-1] for r in rows] == ["tiny", "tiny-gemma"]
    assert "sandwich" in rows[1]["family"]
    for name in ("kstar_vs_depth.png", "kstar_vs_growth.png", "summary.csv"):
        assert (folder / name).is_file(), name
    parser = _Sections()
    parser.feed((folder / "index.html").read_text())
    assert parser.images == 2 + 2 * 2
