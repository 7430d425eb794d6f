"""The CLI end to end on a tiny model saved as a Hugging Face folder: config file -> sweep -> report."""

import csv
import json

import pytest
import yaml
from sweep_fixtures import one_thread, write_tiny_dataset  # noqa: F401  (fixture)
from tiny_models import save_tiny
from typer.testing import CliRunner

from steerscope.cli import app
from steerscope.sweep.config import ConfigError, load_config, parse_config


def _config(tmp_path, model: str) -> dict:
    return {
        "models": [model],
        "methods": ["mean_diff", "pca"],
        "sites": ["resid_pre.1", "resid_pre.2"],
        "coefficients": [1.0, 3.0],
        "n_pairs": [2, 4],
        "seeds": [0, 1],
        "random_n_pairs": 4,
        "datasets": {"tinyset": write_tiny_dataset(tmp_path)},
        "generation": {"max_new_tokens": 3, "batch_size": 4},
        "side_effects": {"source": str(tmp_path / "text.txt"), "n": 2, "seq_len": 12},
        "n_boot": 100,
    }


def test_sweep_and_report_from_a_yaml_config(tmp_path):
    save_tiny(tmp_path / "model", "llama")
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path, str(tmp_path / "model"))))
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["sweep", str(path), "--out", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = out / "report"
    for name in ("sample_complexity.png", "tradeoff.png", "layer_sweep.png", "index.html", "report.json"):
        assert (report / name).stat().st_size > 0, name
    summary = list(csv.DictReader((report / "summary.csv").open()))
    assert {(r["method"], r["n_pairs"]) for r in summary} == {
        ("mean_diff", "2"),
        ("mean_diff", "4"),
        ("pca", "2"),
        ("pca", "4"),
        ("random", "4"),
    }
    for r in summary:
        assert float(r["keyword_rate_lo"]) <= float(r["keyword_rate"]) <= float(r["keyword_rate_hi"])
        assert r["site"] in ("resid_pre.1", "resid_pre.2") and float(r["coefficient"]) in (1.0, 3.0)
        assert r["n_seeds"] == "2" and r["n_prompts"] == "4"
    baselines = {r["baseline"] for r in csv.DictReader((report / "baselines.csv").open())}
    assert baselines == {"unsteered", "prompting", "random"}
    comparison = list(csv.DictReader((report / "comparison.csv").open()))
    for n in ("2", "4"):  # every method at mean_diff's chosen coefficient and site for the same n
        at_n = [r for r in comparison if r["n_pairs"] == n]
        assert {r["method"] for r in at_n} >= {"mean_diff", "pca"} and len({r["coefficient"] for r in at_n}) == 1
        pca = next(r for r in at_n if r["method"] == "pca")
        low, high = float(pca["keyword_rate_minus_mean_diff_lo"]), float(pca["keyword_rate_minus_mean_diff_hi"])
        assert low <= float(pca["keyword_rate_minus_mean_diff"]) <= high
    html = (report / "index.html").read_text()
    assert "matched norm" in html and "example completions" in html
    again = CliRunner().invoke(app, ["report", str(out), "--n-boot", "50"])
    assert again.exit_code == 0, again.output
    assert json.loads((report / "report.json").read_text())["summary"]


def test_config_errors_name_the_key_and_the_fix(tmp_path):
    base = {"sites": ["resid_pre.1"], "coefficients": [1.0], "n_pairs": [2]}
    with pytest.raises(ConfigError, match="'sites' is required"):
        parse_config({"coefficients": [1], "n_pairs": [2]})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['coeficients'\]"):
        parse_config({**base, "coeficients": [1]})
    with pytest.raises(ConfigError, match="unknown method.*random is a baseline"):
        parse_config({**base, "methods": ["random"]})
    with pytest.raises(ConfigError, match=r"\[generation\].*allowed"):
        parse_config({**base, "generation": {"max_tokens": 3}})
    toml = tmp_path / "c.toml"
    toml.write_text('sites = "resid_pre.1"\ncoefficients = [2, 4]\nn_pairs = [8]\n[selection]\nmax_fluency_cost = 0.5')
    config = load_config(toml)
    assert config.sites == ["resid_pre.1"] and config.selection.max_fluency_cost == 0.5
    bad = tmp_path / "c.json"
    bad.write_text("{}")
    with pytest.raises(ConfigError, match="use .toml, .yaml or .yml"):
        load_config(bad)
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "no sweep results" in result.output
