"""Direction-finding methods against direct computations; the vector file; contrast data."""

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from tiny_models import tiny_model

from steerscope import capture
from steerscope.core.extract import text_vectors
from steerscope.methods import fit
from steerscope.steering.pairs import BUILTIN, ContrastPair, PairDataError, load_pairs, read_pairs
from steerscope.steering.vector import SteeringVector, VectorFileError, VectorMismatchError

SITES = ["resid_pre.1", "resid_post.2"]


def _pairs(n=6, seed=0):
    rng = np.random.default_rng(seed)
    words = lambda k: " ".join(f"w{int(i)}" for i in rng.integers(0, 40, size=k))  # noqa: E731
    return [ContrastPair(f"w90 {words(rng.integers(2, 6))}", f"w91 {words(rng.integers(2, 6))}") for _ in range(n)]


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama", tokenizer=True)


def _per_text(lm, texts, site, read):
    """Independent: capture each text alone (no padding) and take its last token or its token mean."""
    out = []
    for t in texts:
        ids = torch.tensor([lm.tokenizer(t)["input_ids"]])
        act = capture(lm, ids, [site])[site][0]
        out.append(act[-1] if read == "last" else act.mean(0))
    return torch.stack(out).double().numpy()


@pytest.mark.parametrize("read", ["last", "mean"])
def test_mean_diff_equals_numpy_on_captured_activations(lm, read):
    pairs = _pairs()
    vec = fit("mean_diff", lm, pairs, SITES, read=read, batch_size=4)
    for site in SITES:
        pos = _per_text(lm, [p.positive for p in pairs], site, read)
        neg = _per_text(lm, [p.negative for p in pairs], site, read)
        np.testing.assert_allclose(vec.vectors[site].numpy(), (pos - neg).mean(0), atol=1e-5)
    assert vec.meta["n_pairs"] == 6 and vec.meta["method"] == "mean_diff"


def test_probe_equals_sklearn_fitted_directly(lm):
    pairs = _pairs(8)
    vec = fit("probe", lm, pairs, ["resid_pre.2"], C=0.5, scale="unit")
    pos = _per_text(lm, [p.positive for p in pairs], "resid_pre.2", "last")
    neg = _per_text(lm, [p.negative for p in pairs], "resid_pre.2", "last")
    clf = LogisticRegression(C=0.5, max_iter=5000).fit(np.r_[pos, neg], np.r_[np.ones(8), np.zeros(8)])
    w = clf.coef_[0] / np.linalg.norm(clf.coef_[0])
    np.testing.assert_allclose(vec.vectors["resid_pre.2"].numpy(), w, atol=1e-4)


@pytest.mark.parametrize("variant", ["diff", "center"])
def test_pca_equals_numpy_svd(lm, variant):
    pairs = _pairs(7)
    vec = fit("pca", lm, pairs, ["resid_post.1"], variant=variant)
    pos = _per_text(lm, [p.positive for p in pairs], "resid_post.1", "last")
    neg = _per_text(lm, [p.negative for p in pairs], "resid_post.1", "last")
    if variant == "diff":
        data = (pos - neg) - (pos - neg).mean(0)
    else:
        mid = (pos + neg) / 2
        data = np.r_[pos - mid, neg - mid]
    pc = np.linalg.svd(data)[2][0]
    got = vec.vectors["resid_post.1"].numpy()
    mean_norm = np.linalg.norm((pos - neg).mean(0))
    assert abs(np.linalg.norm(got) - mean_norm) < 1e-4 * mean_norm
    np.testing.assert_allclose(np.abs(got / np.linalg.norm(got) @ pc), 1.0, atol=1e-5)
    assert ((pos - neg) @ got).mean() > 0, "positives must project higher"


def test_actadd_equals_hand_computation(lm):
    pair = ContrastPair("w5 w6 w7 w8", "w9 w10")
    vec = fit("actadd", lm, [pair], ["resid_pre.1"], pad_token="w3", bos="tokenizer")  # the pair as tokenized
    a = capture(lm, torch.tensor([[7, 8, 9, 10]]), ["resid_pre.1"])["resid_pre.1"][0]
    b = capture(lm, torch.tensor([[11, 12, 5, 5]]), ["resid_pre.1"])["resid_pre.1"][0]
    torch.testing.assert_close(vec.vectors["resid_pre.1"], a - b, atol=1e-6, rtol=0)
    prompt = torch.tensor([[20, 21, 22, 23, 24, 25]])
    clean = capture(lm, prompt, ["resid_pre.1"])["resid_pre.1"][0]
    with vec.apply(lm, coefficient=2.0):
        steered = capture(lm, prompt, ["resid_pre.1"])["resid_pre.1"][0]
    torch.testing.assert_close(steered[:4], clean[:4] + 2 * (a - b), atol=1e-5, rtol=0)
    torch.testing.assert_close(steered[4:], clean[4:], atol=0, rtol=0)
    with pytest.raises(ValueError, match="exactly one contrast pair"):
        fit("actadd", lm, _pairs(2), ["resid_pre.1"])


def test_random_control_has_matched_norm_and_is_seeded(lm):
    pairs = _pairs()
    ref = fit("mean_diff", lm, pairs, SITES)
    r1 = fit("random", lm, pairs, SITES, seed=3, like=ref)
    r2 = fit("random", lm, pairs, SITES, seed=3, like=ref)
    for s in SITES:
        assert abs(r1.meta["norms"][s] - ref.meta["norms"][s]) < 1e-4
        torch.testing.assert_close(r1.vectors[s], r2.vectors[s])
        cos = torch.nn.functional.cosine_similarity(r1.vectors[s], ref.vectors[s], dim=0)
        assert abs(cos) < 0.9


def test_file_round_trip_and_refusals(lm, tmp_path):
    vec = fit("mean_diff", lm, _pairs(), SITES)
    path = vec.save(tmp_path / "v.safetensors")
    back = SteeringVector.load(path)
    for s in SITES:
        assert torch.equal(back.vectors[s], vec.vectors[s])
    assert back.meta == vec.meta
    back.check(lm)
    other = tiny_model("llama", seed=5, tokenizer=True)
    with pytest.raises(VectorMismatchError, match="allow_other_model"):
        back.check(other)
    back.check(other, allow_other_model=True)
    wide = SteeringVector({"resid_pre.1": torch.zeros(64)}, {"model": "x"})
    with pytest.raises(VectorMismatchError, match="width 64 but tiny-llama has d_model 32"), wide.apply(lm):
        pass
    far = SteeringVector({"resid_pre.9": torch.zeros(32)}, {})
    with pytest.raises(ValueError, match="out of range"):
        far.check(lm)
    corrupt = tmp_path / "bad.safetensors"
    corrupt.write_bytes(path.read_bytes()[:50])
    with pytest.raises(VectorFileError, match="corrupt or truncated"):
        SteeringVector.load(corrupt)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(3)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(VectorFileError, match="not a steerscope vector"):
        SteeringVector.load(tmp_path / "plain.safetensors")


def test_vector_arithmetic(lm):
    a = fit("mean_diff", lm, _pairs(seed=1), SITES)
    b = fit("mean_diff", lm, _pairs(seed=2), SITES)
    total = a + 2 * b
    for s in SITES:
        torch.testing.assert_close(total.vectors[s], a.vectors[s] + 2 * b.vectors[s])
    matched = b.with_norm(a)
    assert all(abs(matched.meta["norms"][s] - a.meta["norms"][s]) < 1e-4 for s in SITES)
    assert "norm matched" in matched.meta["derived"]
    with pytest.raises(ValueError, match="different sites"):
        a + SteeringVector({"resid_pre.1": torch.ones(32)})


def test_text_vectors_refuse_bad_input(lm):
    with pytest.raises(ValueError, match="read must be one of"):
        text_vectors(lm, ["w1"], ["resid_pre.1"], read="first")
    with pytest.raises(ValueError, match="no texts"):
        text_vectors(lm, [], ["resid_pre.1"])
    with pytest.raises(ValueError, match="unknown method"):
        fit("magic", lm, _pairs(), SITES)


def test_contrast_data_formats_and_errors(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"positive": "a", "negative": "b"}\n\n{"positive": "c", "negative": "d"}\n')
    assert read_pairs(tmp_path / "p.jsonl") == [ContrastPair("a", "b"), ContrastPair("c", "d")]
    (tmp_path / "p.csv").write_text("positive,negative\nx,y\n")
    assert read_pairs(tmp_path / "p.csv") == [ContrastPair("x", "y")]
    caa = [
        {"question": "Q?\n(A) yes\n(B) no", "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(B)"}
    ]
    (tmp_path / "ab.json").write_text(json.dumps(caa))
    pair = read_pairs(tmp_path / "ab.json")[0]
    assert pair.positive.endswith("Answer: (A") and pair.negative.endswith("Answer: (B")
    (tmp_path / "bad.jsonl").write_text('{"positive": "a", "negative": "b"}\n{"positive": "a"}\n')
    with pytest.raises(PairDataError, match="bad.jsonl:2"):
        read_pairs(tmp_path / "bad.jsonl")
    (tmp_path / "same.csv").write_text("positive,negative\nx,y\nz,z\n")
    with pytest.raises(PairDataError, match="same.csv:3: positive and negative are identical"):
        read_pairs(tmp_path / "same.csv")
    (tmp_path / "broken.jsonl").write_text("{oops\n")
    with pytest.raises(PairDataError, match="broken.jsonl:1: not valid JSON"):
        read_pairs(tmp_path / "broken.jsonl")


def test_builtin_sets_have_train_and_held_out_splits():
    sizes = {name: (len(load_pairs(name, "train")), len(load_pairs(name, "test"))) for name in BUILTIN}
    assert sizes["sentiment"][0] >= 256
    for name, (train, test) in sizes.items():
        assert train >= 256 and test >= 16, name
        assert not set(load_pairs(name, "train")) & set(load_pairs(name, "test")), name


def test_sentiment_scorer_on_known_texts():
    from steerscope.evaluate.scorers import sentiment_compound, share_positive

    good, bad, flat = sentiment_compound(
        ["I love this, it is wonderful!", "This is awful and I hate it.", "It is 3pm."]
    )
    assert good > 0.5 and bad < -0.5 and flat == 0
    assert share_positive(["great day", "terrible day", "a day", "lovely"]) == 0.5


def test_extract_generate_inspect_cli(tmp_path):
    from tiny_models import save_tiny
    from typer.testing import CliRunner

    from steerscope.cli import app

    save_tiny(tmp_path / "tiny", "llama")
    (tmp_path / "pairs.jsonl").write_text(
        "".join(
            json.dumps({"positive": f"w90 w{i} w{i + 1}", "negative": f"w91 w{i} w{i + 2}"}) + "\n" for i in range(8)
        )
    )
    runner = CliRunner()
    vec = tmp_path / "v.safetensors"
    args = [
        "extract",
        str(tmp_path / "tiny"),
        "--pairs",
        str(tmp_path / "pairs.jsonl"),
        "--method",
        "probe",
        "--site",
        "resid_pre.1",
        "--site",
        "resid_pre.2",
        "--option",
        "C=0.5",
        "--out",
        str(vec),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    loaded = SteeringVector.load(vec)
    assert loaded.sites == ["resid_pre.1", "resid_pre.2"] and loaded.meta["options"]["C"] == 0.5
    shown = runner.invoke(app, ["vectors", "inspect", str(vec)])
    assert shown.exit_code == 0 and "probe" in shown.output and "resid_pre.2" in shown.output
    gen = runner.invoke(
        app,
        [
            "generate",
            str(tmp_path / "tiny"),
            "--vector",
            str(vec),
            "--coefficient",
            "3",
            "--prompt",
            "w1 w2",
            "--max-new-tokens",
            "3",
        ],
    )
    assert gen.exit_code == 0, gen.output
    assert "unsteered" in gen.output and "+3 x vector" in gen.output
    bad = runner.invoke(
        app,
        [
            "extract",
            str(tmp_path / "tiny"),
            "--pairs",
            str(tmp_path / "pairs.jsonl"),
            "--n-pairs",
            "50",
            "--out",
            str(tmp_path / "x.safetensors"),
        ],
    )
    assert bad.exit_code == 2 and "has 8" in bad.output
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 10)
    junk = runner.invoke(app, ["vectors", "inspect", str(tmp_path / "junk.safetensors")])
    assert junk.exit_code == 2 and "corrupt" in " ".join(junk.output.split())


def test_written_pairs_read_back_equal(tmp_path):
    from steerscope.steering.pairs import ContrastPair, read_pairs, write_pairs

    pairs = [ContrastPair("I love it «ok»", "I hate it"), ContrastPair('Say "yes"\nplease', "Say no")]
    path = write_pairs(tmp_path / "p.jsonl", pairs, concept="sentiment")
    assert read_pairs(path) == pairs
    assert all('"concept": "sentiment"' in line for line in path.read_text(encoding="utf-8").splitlines())


def test_records_print_one_line_not_their_tensors():
    """A vector, a clamp and a model print a summary a reader can use, not 576 numbers or a module tree."""
    import torch
    from tiny_models import CONFIGS
    from transformers import AutoModelForCausalLM

    from steerscope import LoadedModel, SAEClamp, SparseAutoencoder, SteeringVector
    from steerscope.sae.model import SAEConfig

    meta = {"method": "mean_diff", "n_pairs": 8, "model": "tiny", "fingerprint": "abc"}
    vector = SteeringVector({"resid_pre.3": torch.ones(576)}, meta)
    assert repr(vector) == "SteeringVector(mean_diff at resid_pre.3 576 norm 24; pairs 8; model tiny abc)"
    lm = LoadedModel.from_hf(AutoModelForCausalLM.from_config(CONFIGS["llama"]()), name="tiny")
    size = f"{lm.n_layers} layers, d_model {lm.d_model}"
    assert repr(lm) == f"LoadedModel(tiny: llama (sequential), {size}, from in-memory)"
    clamp = SAEClamp(SparseAutoencoder(SAEConfig(d_in=32, d_sae=64)), 5, "resid_pre.1", 2.0)
    assert repr(clamp) == "SAEClamp(latent 5 at resid_pre.1, scale 2, d_sae 64)"
