"""SAE methods inside a sweep: only at the SAE's site, clamping for real, with the SAE's cost added."""

import pytest
from sweep_fixtures import one_thread, tiny_config  # noqa: F401  (fixture)
from tiny_models import tiny_model

from steerscope.core.generate import generate_text
from steerscope.evaluate.store import ResultStore
from steerscope.sae.methods import fit_sae_clamp
from steerscope.sae.model import SAEConfig, SparseAutoencoder
from steerscope.sae.saelens import save_saelens
from steerscope.steering.tasks import get_task
from steerscope.sweep.config import ConfigError
from steerscope.sweep.runner import pair_subset, run_sweep

SAE_SITE = "resid_pre.2"


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama", tokenizer=True)


def _sae(lm, folder):
    sae = SparseAutoencoder(SAEConfig(d_in=lm.d_model, d_sae=64, architecture="topk", k=8, site=SAE_SITE), seed=0)
    sae.cfg.meta = {"train_tokens": 4000, "train_model_tokens": 5000, "train_seconds": 7.5, "train_flops": 4e9}
    save_saelens(sae, folder)
    return folder


def test_sae_methods_in_a_sweep(tmp_path, lm):
    folder = str(_sae(lm, tmp_path / "sae"))
    options = {"sae_clamp": {"sae": folder}, "sae_add": {"sae": folder}}
    config = tiny_config(
        tmp_path, methods=["mean_diff", "sae_clamp", "sae_add"], n_pairs=[2, 4], seeds=[0], method_options=options
    )
    path = run_sweep(config, tmp_path / "out", models={"tiny": lm})
    with ResultStore(path) as store:
        rows = store.rows()
        by_cell: dict = {}
        for r in rows:
            by_cell.setdefault(r["cell"], {"row": r})[r["metric"]] = r["value"]
        # SAE methods are fitted and measured at the SAE's own site only; mean_diff at every site
        for method in ("sae_clamp", "sae_add"):
            assert {r["site"] for r in rows if r["method"] == method} == {SAE_SITE}
        assert {r["site"] for r in rows if r["method"] == "mean_diff"} == {"resid_pre.1", SAE_SITE}
        # cost: the SAE's training cost from its cfg.json is added; FLOPs of reading the pairs by hand
        pairs = get_task("tinyset", config.custom_datasets).train_pairs()
        params = sum(p.numel() for block in list(lm.blocks)[:2] for p in block.parameters())  # resid_pre.2
        costed = [c for c in by_cell.values() if "cost_total_flops" in c and c["row"]["method"] != "random"]
        assert {c["row"]["method"] for c in costed} == {"mean_diff", "sae_clamp", "sae_add"}
        for c in costed:
            r = c["row"]
            subset = pair_subset(pairs, r["n_pairs"], r["seed"])
            tokens = sum(len(lm.tokenizer(t)["input_ids"]) for p in subset for t in (p.positive, p.negative))
            assert c["cost_pair_tokens"] == tokens
            if r["site"] == SAE_SITE:
                assert c["cost_fit_flops"] == pytest.approx(2 * params * tokens)
            sae_part = (5000, 7.5, 4e9) if r["method"].startswith("sae") else (0, 0, 0)
            assert (c["cost_sae_tokens"], c["cost_sae_seconds"], c["cost_sae_flops"]) == sae_part
            assert c["cost_total_tokens"] == tokens + sae_part[0]
            assert c["cost_total_flops"] == pytest.approx(c["cost_fit_flops"] + sae_part[2])
        # the stored sae_clamp completions are those of the clamp itself (not an additive stand-in)
        test = next(c["row"] for c in costed if c["row"]["method"] == "sae_clamp")
        from steerscope.evaluate.store import cell_of

        stored = store.texts(cell_of(test))
    clamp = fit_sae_clamp(lm, pair_subset(pairs, test["n_pairs"], test["seed"]), [SAE_SITE], batch_size=16, sae=folder)
    g = config.generation
    prompts = get_task("tinyset", config.custom_datasets).split_prompts()["test"]
    with clamp.apply(lm, test["coefficient"]):
        texts = []
        for start in range(0, len(prompts), g.batch_size):
            texts += generate_text(
                lm,
                prompts[start : start + g.batch_size],
                max_new_tokens=g.max_new_tokens,
                repetition_penalty=g.repetition_penalty,
            )
    assert stored == texts
    # fits.json records the latent each SAE method chose
    import json

    fits = json.loads((tmp_path / "out" / "fits.json").read_text())
    entry = fits[f"tiny / tinyset / sae_clamp n={test['n_pairs']} seed={test['seed']}"]
    assert entry["latent"] == clamp.latent and entry["scale"] == pytest.approx(clamp.scale)
    # the report shows each method's cost and the amortized-cost figure
    import csv

    from steerscope.sweep.report import sweep_report

    report = sweep_report(tmp_path / "out")
    assert (report / "amortized_cost.png").stat().st_size > 0
    summary = list(csv.DictReader((report / "summary.csv").open()))
    sae_rows = [r for r in summary if r["method"] in ("sae_clamp", "sae_add")]
    assert sae_rows and all(float(r["sae_tokens"]) == 5000 for r in sae_rows)
    assert all(float(r["total_tokens"]) == float(r["pair_tokens"]) + 5000 for r in sae_rows)
    assert all(float(r["sae_tokens"]) == 0 for r in summary if r["method"] == "mean_diff")
    assert "what was fitted" in (report / "index.html").read_text()


def test_sweep_config_checks_the_sae_methods(tmp_path, lm):
    folder = str(_sae(lm, tmp_path / "sae"))
    with pytest.raises(ConfigError, match=r"sae_clamp.*need the option sae"):
        tiny_config(tmp_path, methods=["mean_diff", "sae_clamp"])
    with pytest.raises(ConfigError, match=r"reads resid_pre.2; add it to sites"):
        tiny_config(
            tmp_path,
            methods=["mean_diff", "sae_add"],
            sites=["resid_pre.1"],
            method_options={"sae_add": {"sae": folder}},
        )
    with pytest.raises(ConfigError, match="no_such_sae"):
        tiny_config(tmp_path, methods=["mean_diff", "sae_add"], method_options={"sae_add": {"sae": "no_such_sae"}})
