"""A model split by accelerate (device_map, with weights offloaded to disk) behaves as the same model in one piece:
reads, additions, replacements, projection and steered generation give the same numbers."""

import pytest
import torch
from tiny_models import save_tiny

import steerscope as ss
from steerscope.core.loading import parse_device_map, parse_max_memory

SITES = ["embed", "resid_pre.1", "attn_out.1", "mlp_in.2", "resid_post.2", "final"]
# the embedding, two of the three blocks and the unembedding are offloaded to disk: their weights sit on the meta
# device between calls and accelerate's hooks load them for each forward pass
DEVICE_MAP = {
    "model.embed_tokens": "disk",
    "model.layers.0": "cpu",
    "model.layers.1": "disk",
    "model.layers.2": "disk",
    "model.norm": "cpu",
    "model.rotary_emb": "cpu",
    "lm_head": "disk",
}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    save_tiny(folder, "llama")
    whole = ss.load_model(str(folder))
    split = ss.load_model(str(folder), device_map=DEVICE_MAP, offload_folder=folder / "offload")
    return whole, split


def _prompts(lm):
    return lm.tokenize(["w5 w6 w7 w8 w9", "w10 w11"])


def _logits(lm, batch):
    with torch.no_grad():
        return lm.model(**batch).logits


def test_the_split_model_is_really_offloaded_and_has_the_same_fingerprint(pair):
    whole, split = pair
    assert {p.device.type for p in split.model.parameters()} == {"cpu", "meta"}
    assert split.device == torch.device("cpu") and split.dtype == torch.float32
    assert split.fingerprint() == whole.fingerprint()


def test_reads_equal_the_undispatched_model(pair):
    whole, split = pair
    a, b = ss.capture(whole, _prompts(whole), SITES), ss.capture(split, _prompts(split), SITES)
    for site in SITES:
        assert b[site].device == split.device
        assert torch.equal(a[site], b[site]), site


def test_additions_replacements_and_projection_equal_the_undispatched_model(pair):
    whole, split = pair
    v = torch.randn(whole.d_model, generator=torch.Generator().manual_seed(3))
    front = torch.randn(2, whole.d_model, generator=torch.Generator().manual_seed(4))
    cases = [
        lambda lm: ss.add(lm, {"resid_pre.1": v, "mlp_out.2": -v}, coefficient=2.0),
        lambda lm: ss.add(lm, {"resid_mid.1": v}, coefficient=3.0, positions="last_prompt"),
        lambda lm: ss.add(lm, {"resid_pre.2": front}, positions="front"),
        lambda lm: ss.replace(lm, {"mlp_in.1": lambda h: h * 0.5, "attn_in.2": torch.zeros(2, 5, whole.d_model)}),
        lambda lm: ss.project_out(lm, v),
    ]
    for i, case in enumerate(cases):
        with case(whole):
            expected = _logits(whole, _prompts(whole))
        with case(split):
            got = _logits(split, _prompts(split))
        assert not torch.equal(expected, _logits(whole, _prompts(whole))), f"case {i} changed nothing"
        assert torch.equal(expected, got), f"case {i}: max abs diff {(expected - got).abs().max():.3g}"


def test_steered_generation_equals_the_undispatched_model(pair):
    whole, split = pair
    pairs = [ss.ContrastPair("w90 w5 w6", "w91 w5 w6"), ss.ContrastPair("w90 w7", "w91 w7")]
    vector = ss.fit("mean_diff", whole, pairs, ["resid_pre.1"])
    assert torch.equal(vector.vectors["resid_pre.1"], ss.fit("mean_diff", split, pairs, ["resid_pre.1"]).vectors[
        "resid_pre.1"])  # fmt: skip
    out = {}
    for name, lm in (("whole", whole), ("split", split)):
        with vector.apply(lm, coefficient=6.0, positions="generated"), ss.read(lm, ["resid_post.2"]) as cache:
            ids = lm.model.generate(**_prompts(lm), max_new_tokens=5, do_sample=False, pad_token_id=0)
        out[name] = ids, cache.sequence("resid_post.2")
    assert torch.equal(out["whole"][0], out["split"][0])
    assert torch.equal(out["whole"][1], out["split"][1])


def test_device_map_and_max_memory_strings_parse_or_are_refused(tmp_path):
    assert parse_device_map("auto") == "auto" and parse_device_map("") is None
    assert parse_device_map('{"model.layers.0": 0, "lm_head": "cpu"}') == {"model.layers.0": 0, "lm_head": "cpu"}
    file = tmp_path / "map.json"
    file.write_text('{"model": "disk"}')
    assert parse_device_map(str(file)) == {"model": "disk"}
    assert parse_max_memory("0=20GiB,cpu=64GiB") == {0: "20GiB", "cpu": "64GiB"}
    for bad, needle in (("everywhere", "is not one of auto"), ('{"a": "gpu7"}', "is not a device"), ("{x", "JSON")):
        with pytest.raises(ValueError, match=needle):
            parse_device_map(bad)
    with pytest.raises(ValueError, match="DEVICE=SIZE"):
        parse_max_memory("20GiB")
    with pytest.raises(ValueError, match="needs a device map"):
        ss.load_model(str(tmp_path), max_memory="cpu=1GiB")
