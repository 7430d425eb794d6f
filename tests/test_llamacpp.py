"""llama.cpp control vectors: the GGUF layout read back with the gguf package itself, the site-to-layer mapping,
imports that steer exactly like the vector they came from, and every refusal (CLI: one error line)."""

import re

import gguf
import numpy as np
import pytest
import torch
from cli_checks import bad
from tiny_models import random_ids, save_tiny, tiny_model
from typer.testing import CliRunner

from steerscope import SteeringVector, capture
from steerscope.cli import app
from steerscope.steering.llamacpp import (
    ControlVectorError,
    control_layer,
    export_control_vector,
    import_control_vector,
    read_control_vector,
)

pytestmark = pytest.mark.usefixtures("one_thread")
D, L = 32, 3  # the tiny models' width and depth


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama")


def _vec(lm, sites, seed=0):
    g = torch.Generator().manual_seed(seed)
    return SteeringVector({s: torch.randn(D, generator=g) for s in sites}, {"method": "mean_diff", "model": lm.name})


def _write_gguf(path, arch, tensors, kv=None):
    """A GGUF file written with the gguf package directly (independent of our writer)."""
    writer = gguf.GGUFWriter(path, arch)
    for key, value in (kv or {}).items():
        writer.add_string(key, value)
    for name, data in tensors.items():
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_site_to_llamacpp_layer_mapping():
    assert control_layer("resid_post.1", L) == 1 and control_layer("resid_pre.2", L) == 1
    assert control_layer("resid_post.2", L) == 2 and control_layer("final", L) == 2
    assert control_layer("blocks.2.hook_resid_pre", L) == 1  # TransformerLens names too
    for site, why in [
        ("embed", "not to the embedding"),
        ("resid_pre.0", "not to the embedding"),
        ("resid_pre.1", "no control vector for layer 0"),
        ("resid_post.0", "no control vector for layer 0"),
        ("attn_out.1", "not to attn_out"),
        ("mlp_in.2", "not to mlp_in"),
        ("resid_mid.1", "not to resid_mid"),
    ]:
        with pytest.raises(ControlVectorError, match=why):
            control_layer(site, L)


def test_export_layout_read_with_gguf_itself(lm, tmp_path):
    vec = _vec(lm, ["resid_pre.2", "resid_post.2"])
    path = export_control_vector(vec, tmp_path / "v.gguf", lm)
    reader = gguf.GGUFReader(path)
    assert reader.get_field("general.architecture").contents() == "controlvector"
    assert reader.get_field("controlvector.model_hint").contents() == "llama"
    assert reader.get_field("controlvector.layer_count").contents() == 2
    tensors = {t.name: t for t in reader.tensors}
    assert sorted(tensors) == ["direction.1", "direction.2"]
    for name, site in (("direction.1", "resid_pre.2"), ("direction.2", "resid_post.2")):
        assert tensors[name].tensor_type == gguf.GGMLQuantizationType.F32 and list(tensors[name].shape) == [D]
        np.testing.assert_array_equal(np.asarray(tensors[name].data), vec.vectors[site].numpy())
    with pytest.raises(FileExistsError, match="exists"):
        export_control_vector(vec, path, lm)


def test_same_layer_sites_are_summed_as_llamacpp_sums_them(lm, tmp_path):
    vec = _vec(lm, ["resid_pre.2", "resid_post.1"])
    cv = read_control_vector(export_control_vector(vec, tmp_path / "v.gguf", lm))
    assert list(cv.directions) == [1]
    np.testing.assert_allclose(cv.directions[1], (vec.vectors["resid_pre.2"] + vec.vectors["resid_post.1"]).numpy())


def test_import_steers_exactly_like_the_exported_vector(lm, tmp_path):
    vec = _vec(lm, ["resid_pre.2"], seed=3)
    vec.meta.update({"n_pairs": 64, "dataset": "sentiment:train"})
    path = export_control_vector(vec, tmp_path / "v.gguf", lm)
    back = import_control_vector(path, lm)
    assert back.sites == ["resid_post.1"] and back.meta["n_pairs"] == 64 and back.meta["method"] == "mean_diff"
    assert back.meta["imported_from"]["sites"] == {"resid_pre.2": 1} and len(back.meta["imported_from"]["sha256"]) == 64
    ids = random_ids()
    with vec.apply(lm, coefficient=3.0):
        want = capture(lm, ids, ["final"])["final"]
    with back.apply(lm, coefficient=3.0):
        got = capture(lm, ids, ["final"])["final"]
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_repeng_style_file_imports(lm, tmp_path):
    """repeng's export: controlvector arch, model_hint, uint32 layer_count, direction.{layer} (layer 0 allowed)."""
    dirs = {i: np.full(D, float(i + 1), dtype=np.float32) for i in (0, 2)}
    path = _write_gguf(
        tmp_path / "r.gguf",
        "controlvector",
        {f"direction.{i}": d for i, d in dirs.items()},
        {"controlvector.model_hint": "llama"},
    )
    back = import_control_vector(path, lm)
    assert back.sites == ["resid_post.0", "resid_post.2"]
    assert back.meta["method"] == "imported" and back.meta["imported_from"]["model_hint"] == "llama"
    torch.testing.assert_close(back.vectors["resid_post.2"], torch.full((D,), 3.0))


def test_bad_control_vector_files_are_named(lm, tmp_path):
    (tmp_path / "text.gguf").write_text("not a gguf file\n")
    model_like = _write_gguf(tmp_path / "model.gguf", "llama", {"token_embd.weight": np.zeros((4, D), np.float32)})
    wide = _write_gguf(tmp_path / "wide.gguf", "controlvector", {"direction.1": np.ones(64, np.float32)})
    deep = _write_gguf(tmp_path / "deep.gguf", "controlvector", {"direction.5": np.ones(D, np.float32)})
    empty = _write_gguf(tmp_path / "empty.gguf", "controlvector", {})
    f16 = _write_gguf(tmp_path / "f16.gguf", "controlvector", {"direction.1": np.ones(D, np.float16)})
    made_for = _write_gguf(
        tmp_path / "for30.gguf",
        "controlvector",
        {"direction.1": np.ones(D, np.float32)},
        {"steerscope.meta": '{"n_layers": 30}'},
    )
    cases = [
        (tmp_path / "text.gguf", "is not a GGUF file"),
        (model_like, "architecture 'llama' (a model?)"),
        (wide, "width 64, but tiny-llama has d_model 32"),
        (deep, "a direction.5, but tiny-llama has 3 layers"),
        (empty, "holds no direction tensors"),
        (f16, "F16"),
        (made_for, "30 layers, but tiny-llama has 3 layers"),
        (tmp_path / "missing.gguf", "no control-vector file"),
    ]
    for path, message in cases:
        with pytest.raises(ControlVectorError, match=re.escape(message)) as info:
            import_control_vector(path, lm)
        assert path.name in str(info.value)


def test_refused_vectors(lm, tmp_path):
    actadd = SteeringVector({"resid_pre.2": torch.ones(4, D)}, {"method": "actadd"})
    with pytest.raises(ControlVectorError, match="position-wise"):
        export_control_vector(actadd, tmp_path / "a.gguf", lm)
    with pytest.raises(ControlVectorError, match="embedding"):
        export_control_vector(_vec(lm, ["embed"]), tmp_path / "e.gguf", lm)
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cv_cli")
    save_tiny(root / "tiny", "llama")
    SteeringVector({"resid_pre.2": torch.ones(D)}, {"method": "mean_diff"}).save(root / "v.safetensors")
    SteeringVector({"attn_out.1": torch.ones(D)}, {"method": "mean_diff"}).save(root / "attn.safetensors")
    (root / "junk.gguf").write_bytes(b"junk")
    return root


def test_cli_export_then_import(folder):
    runner = CliRunner()
    out = folder / "exported.gguf"
    result = runner.invoke(
        app, ["vectors", "export", str(folder / "v.safetensors"), "--out", str(out), "--model", str(folder / "tiny")]
    )
    assert result.exit_code == 0, result.output
    assert "resid_pre.2 -> direction.1" in result.output
    result = runner.invoke(app, ["vectors", "import", str(out), "--model", str(folder / "tiny")])
    assert result.exit_code == 0, result.output
    imported = SteeringVector.load(folder / "exported.safetensors")
    assert imported.sites == ["resid_post.1"] and imported.meta["imported_from"]["file"] == str(out)


def test_cli_refusals(folder):
    tiny = str(folder / "tiny")
    bad(["vectors", "export", folder / "attn.safetensors", "--out", folder / "x.gguf", "--model", tiny], "attn_out")
    bad(["vectors", "export", folder / "v.safetensors", "--out", folder / "x.gguf", "--format", "ggml"], "gguf")
    bad(["vectors", "import", folder / "junk.gguf", "--model", tiny], "junk.gguf", "not a GGUF file")
    bad(["vectors", "import", folder / "v.safetensors", "--model", tiny, "--out", folder / "v.safetensors"], "--out")
