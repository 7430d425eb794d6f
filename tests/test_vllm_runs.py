"""Commands and sweeps on `engine="vllm"` (each starts its own vLLM engine, so they run after
test_vllm_engine.py has closed its one), against the same runs on the Hugging Face engine."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed here; `make test` runs this file in .venv-vllm")

import steerscope as ss  # noqa: E402

pytestmark = pytest.mark.embedded

PROMPTS = ["The capital of France is", "I went to the park today and"]


@pytest.fixture(scope="module")
def lm():
    torch.set_num_threads(1)
    return ss.load_model("default")


def _direction(seed: int, norm: float) -> torch.Tensor:
    v = torch.randn(576, generator=torch.Generator().manual_seed(seed))
    return v / v.norm() * norm


def test_cli_generate_json_same_on_both_engines(tmp_path):
    """`steerscope generate --json` on --engine vllm and hf: the same JSON lines, engine and model named."""
    import json

    from typer.testing import CliRunner

    from steerscope.cli import app

    vec = ss.SteeringVector({"resid_pre.8": _direction(11, 30.0)})
    path = vec.save(tmp_path / "v.safetensors")
    rows = {}
    for engine_name in ("vllm", "hf"):
        args = ["generate", "default", "--vector", str(path), "--coefficient", "1", "--coefficient", "-1"]
        args += ["--prompt", PROMPTS[0], "--prompt", PROMPTS[1], "--max-new-tokens", "8", "--engine", engine_name]
        result = CliRunner().invoke(app, [*args, "--json"])
        assert result.exit_code == 0, result.output
        rows[engine_name] = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows["hf"]) == 6
    for a, b in zip(rows["vllm"], rows["hf"], strict=True):
        assert (a["engine"], b["engine"]) == ("vllm", "hf")
        assert {k: a[k] for k in ("prompt", "coefficient", "text", "model")} == {
            k: b[k] for k in ("prompt", "coefficient", "text", "model")
        }
    assert len({r["text"] for r in rows["hf"] if r["prompt"] == PROMPTS[0]}) >= 2  # the vector changes the text


def test_sweep_engine_vllm_gives_the_hf_completions(lm, tmp_path):
    """`engine = "vllm"` in a sweep config: the same completions in the store as the HF engine (greedy), and the
    engine is a recorded setting (a rerun with the other engine is refused)."""
    from sweep_fixtures import write_tiny_dataset

    from steerscope.evaluate.store import ResultStore
    from steerscope.sweep.config import parse_config
    from steerscope.sweep.runner import run_sweep

    data = {
        "models": ["default"],
        "methods": ["mean_diff"],
        "sites": ["resid_pre.9"],
        "coefficients": [40.0],
        "n_pairs": [4],
        "baselines": ["unsteered"],
        "datasets": {"tinyset": write_tiny_dataset(tmp_path)},
        "generation": {"max_new_tokens": 6, "batch_size": 8},
        "side_effects": {"enabled": False},
        "n_boot": 50,
    }
    texts = {}
    for engine_name in ("hf", "vllm"):
        config = parse_config({**data, "engine": engine_name}, "test config")
        path = run_sweep(config, tmp_path / engine_name, models={"default": lm})
        with ResultStore(path) as store:
            texts[engine_name] = store.conn.execute("SELECT cell, texts FROM samples ORDER BY cell").fetchall()
    assert texts["vllm"] == texts["hf"] and len(texts["hf"]) >= 4
    with pytest.raises((ss.SettingsMismatchError, ss.RunSettingsError)):
        run_sweep(parse_config({**data, "engine": "hf"}, "test config"), tmp_path / "vllm", models={"default": lm})
