"""`steerscope sae train / features / steer` end to end on a tiny saved model and a word corpus."""

import json

import numpy as np
import pytest
from tiny_models import save_tiny
from typer.testing import CliRunner

from steerscope.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sae_commands_end_to_end(tmp_path):
    save_tiny(tmp_path / "model")
    rng = np.random.default_rng(0)
    corpus = tmp_path / "words.txt"
    corpus.write_text("\n\n".join(" ".join(f"w{int(i)}" for i in rng.integers(0, 60, 20)) for _ in range(200)))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"positive": f"w90 w{i}", "negative": f"w91 w{i}"}) for i in range(6)))
    model, out = str(tmp_path / "model"), tmp_path / "sae"
    args = [
        "sae",
        "train",
        model,
        "--site",
        "resid_pre.1",
        "--out",
        str(out),
        "--tokens",
        "1500",
        "--seq-len",
        "16",
        "--batch-size",
        "64",
        "--text",
        str(corpus),
        "--n-eval",
        "4",
        "--expansion",
        "2",
        "--k",
        "4",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "FVE" in result.output and (out / "cfg.json").is_file() and (out / "train.json").is_file()

    report = tmp_path / "features.json"
    result = CliRunner().invoke(
        app,
        [
            "sae",
            "features",
            str(out),
            "--model",
            model,
            "--pairs",
            str(pairs),
            "--split",
            "all",
            "--text",
            str(corpus),
            "--n-sequences",
            "8",
            "--seq-len",
            "16",
            "--top",
            "2",
            "--out",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert len(data["ranking"]["positive"]) == 2 and data["site"] == "resid_pre.1"

    latent = str(data["ranking"]["positive"][0]["latent"])
    for mode in ("clamp", "add"):
        result = CliRunner().invoke(
            app,
            [
                "sae",
                "steer",
                str(out),
                "--latent",
                latent,
                "--model",
                model,
                "--mode",
                mode,
                "--value",
                "5",
                "--prompt",
                "w1 w2",
                "--max-new-tokens",
                "3",
            ],
        )
        assert result.exit_code == 0, result.output
        assert "unsteered" in result.output

    missing = CliRunner().invoke(app, ["sae", "features", str(tmp_path / "nowhere"), "--model", model])
    assert missing.exit_code == 2 and "cfg.json" in missing.output
