"""The steerability pre-check: the cosines against explicit loops over pairs, the values every pair-fitting method
stores per site against a direct one-text-at-a-time computation on a tiny model, `vectors inspect`, and the sweep
report's pre-check-against-effect section (points from fits.json and the layer sweep, Spearman's rho)."""

import json
import math

import numpy as np
import pytest
import torch
from sweep_fixtures import one_thread, write_tiny_dataset  # noqa: F401  (fixture)
from test_sweep_ab import _config, letter_tokenizer
from tiny_models import tiny_model

import steerscope as ss
from steerscope.core.hooks import capture
from steerscope.steering.alignment import PAIRWISE, TO_MEAN, AlignmentSums, diff_alignment
from steerscope.sweep.report import sweep_report
from steerscope.sweep.runner import run_sweep

SITES = ["resid_pre.1", "resid_post.2"]


def _loops(diffs: torch.Tensor) -> tuple[float, float]:
    """Mean pairwise cosine over i < j and mean cosine to the mean, by explicit loops."""
    d = diffs.double()
    cos = lambda a, b: float(a @ b / (a.norm() * b.norm()))  # noqa: E731
    n = len(d)
    pairwise = [cos(d[i], d[j]) for i in range(n) for j in range(i + 1, n)]
    mean = d.mean(0)
    return float(np.mean(pairwise)), float(np.mean([cos(x, mean) for x in d]))


def test_cosines_equal_explicit_loops():
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(9, 16, generator=g).double(), torch.randn(9, 16, generator=g).double()
    pos[:, 0] += 3.0  # a shared direction, so the values are far from zero
    want = _loops(pos - neg)
    got = diff_alignment(pos, neg)
    assert got[PAIRWISE] == pytest.approx(want[0], abs=1e-12) and got[TO_MEAN] == pytest.approx(want[1], abs=1e-12)
    sums = AlignmentSums()  # streamed in uneven chunks: the same numbers
    for a, b in ((0, 2), (2, 7), (7, 9)):
        sums.add(pos[a:b] - neg[a:b])
    assert sums.result()[PAIRWISE] == pytest.approx(want[0], abs=1e-12)
    one = diff_alignment(pos[:1], neg[:1])
    assert one[PAIRWISE] is None and one[TO_MEAN] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama", tokenizer=True)


@pytest.mark.parametrize("method", ["mean_diff", "pca", "probe", "random"])
def test_every_pair_method_stores_the_precheck_per_site(tmp_path, lm, method):
    pairs = ss.load_pairs(write_tiny_dataset(tmp_path)["pairs"])[:7]
    vec = ss.fit(method, lm, pairs, SITES, batch_size=3)
    for site in SITES:
        diffs = []
        for pair in pairs:  # one text at a time, the last token, through capture
            acts = [capture(lm, torch.tensor([lm.tokenizer(t)["input_ids"]]), [site])[site][0, -1] for t in
                    (pair.positive, pair.negative)]  # fmt: skip
            diffs.append(acts[0].double() - acts[1].double())
        pairwise, to_mean = _loops(torch.stack(diffs))
        assert vec.meta[PAIRWISE][site] == pytest.approx(pairwise, abs=1e-5)
        assert vec.meta[TO_MEAN][site] == pytest.approx(to_mean, abs=1e-5)
    vec.save(tmp_path / "v.safetensors")
    text = ss.SteeringVector.load(tmp_path / "v.safetensors").describe()  # what `vectors inspect` prints
    assert "pre-check" in text and f"{vec.meta[TO_MEAN][SITES[0]]:.3f}" in text


def test_vectors_inspect_prints_the_precheck(tmp_path, lm):
    from typer.testing import CliRunner

    from steerscope.cli import app

    pairs = ss.load_pairs(write_tiny_dataset(tmp_path)["pairs"])[:4]
    path = ss.fit("mean_diff", lm, pairs, SITES).save(tmp_path / "v.safetensors")
    result = CliRunner().invoke(app, ["vectors", "inspect", str(path)])
    assert result.exit_code == 0 and "mean pairwise cosine" in result.output and "resid_post.2" in result.output


def test_sweep_report_plots_the_precheck_against_the_effect(tmp_path):
    ab_lm = tiny_model("llama")
    ab_lm.tokenizer = letter_tokenizer()
    config = _config(tmp_path, n_pairs=[3, 6], seeds=[0, 1], baselines=["unsteered", "random"])
    run_sweep(config, tmp_path / "out", models={"tiny": ab_lm})
    fits = json.loads((tmp_path / "out" / "fits.json").read_text())
    selection = json.loads((tmp_path / "out" / "selection.json").read_text())
    report = sweep_report(tmp_path / "out")
    data = json.loads((report / "report.json").read_text())
    points = data["precheck_points"]
    assert {p["method"] for p in points} == {"mean_diff"}  # the random control is left out
    assert len(points) == 2 * 2 * 2  # n_pairs x datasets x sites
    for p in points:
        seeds = [f for k, f in fits.items() if k.startswith(f"tiny / {p['dataset']} / mean_diff n={p['n_pairs']} ")]
        assert len(seeds) == 2
        assert p[TO_MEAN] == pytest.approx(np.mean([f[TO_MEAN][p["site"]] for f in seeds]))
        sweep = selection[f"tiny / mean_diff / n={p['n_pairs']}"][1]["layer_sweep"]
        assert p["effect"] == pytest.approx(sweep[p["site"]][p["dataset"]])
    from scipy.stats import spearmanr

    pooled = next(r for r in data["precheck_correlation"] if r["n_pairs"] == "all")
    rho = spearmanr([p[TO_MEAN] for p in points], [p["effect"] for p in points])[0]
    assert pooled[f"rho_{TO_MEAN}"] == pytest.approx(rho) and pooled["points"] == 8
    assert math.isfinite(pooled[f"rho_{TO_MEAN}"]) and pooled["verdict"]
    page = (report / "index.html").read_text()
    assert "steerability pre-check against the effect" in page and list(report.glob("*precheck_effect.png"))
