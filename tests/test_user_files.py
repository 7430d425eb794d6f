"""Files a user gives, read through the one helper (core.reading): binary, wrong-encoding and broken-JSON files are
refused in every reader with one message shape (the file, the problem, what was expected, how to fix it); a sweep
config's every value is checked before any work; a .pth holding something else than a state dict is refused."""

from __future__ import annotations

import pickle

import pytest
import torch

from steerscope.core.corpus import load_documents
from steerscope.core.errors import SteerscopeError
from steerscope.core.reading import UserFileError, read_json, read_jsonl, read_text
from steerscope.evaluate.behaviour import read_ab_items
from steerscope.maze.impala import load_procgen_policy
from steerscope.steering.pairs import read_pairs
from steerscope.sweep.config import ConfigError, load_config, parse_config

BROKEN = {
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00",
    "latin-1": "caf\xe9 na\xefve".encode("latin-1"),
    "broken JSON": b'{"positive": "a", "negative": ',
}
NEEDLES = {"binary": "binary file", "latin-1": "not UTF-8 text", "broken JSON": "not valid JSON"}
READERS = {
    "pairs.jsonl": read_pairs,
    "pairs.json": read_pairs,
    "pairs.csv": read_pairs,
    "texts.jsonl": lambda p: load_documents(str(p)),
    "texts.json": lambda p: load_documents(str(p)),
    "texts.txt": lambda p: load_documents(str(p)),
    "items.json": read_ab_items,
    "items.jsonl": read_ab_items,
    "config.toml": load_config,
    "config.yaml": load_config,
}


@pytest.mark.parametrize("kind", list(BROKEN))
@pytest.mark.parametrize("name", list(READERS))
def test_every_reader_names_the_file_and_what_it_expected(tmp_path, name, kind):
    path = tmp_path / name
    path.write_bytes(BROKEN[kind])
    if kind == "broken JSON" and path.suffix in (".txt", ".csv", ".toml", ".yaml"):
        pytest.skip("not a JSON file")
    with pytest.raises(SteerscopeError) as err:
        READERS[name](path)
    message = str(err.value)
    assert message.startswith(str(path)) and NEEDLES[kind] in message and "expected" in message, message
    assert "\n" not in message


def test_the_helper_s_message_shape(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text('{"a": 1}\n\n{"b": \n')
    with pytest.raises(UserFileError) as err:
        read_jsonl(path, "one object per line", "fix line 3")
    assert str(err.value).startswith(f"{path}:3: not valid JSON (") and str(err.value).endswith(
        "; expected one object per line; fix line 3"
    )
    path.write_text('\ufeff{"a": NaN}')
    with pytest.raises(UserFileError, match="NaN is not a JSON number"):
        read_json(path, "x", "y")
    with pytest.raises(UserFileError, match="no such file"):
        read_text(tmp_path / "nothing", "x", "y")
    with pytest.raises(UserFileError, match="is a folder"):
        read_text(tmp_path, "x", "y")
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}')
    assert read_json(path, "x", "y") == {"a": 1}  # a BOM is dropped


CONFIG = {"models": ["x"], "sites": ["resid_pre.1"], "coefficients": [4.0], "n_pairs": [4], "datasets": ["sentiment"]}


@pytest.mark.parametrize(
    ("table", "value", "needle"),
    [
        ({"generation": {"max_new_tokens": 0}}, None, "[generation] max_new_tokens must be >= 1"),
        ({"generation": {"temperature": float("nan")}}, None, "[generation] temperature must be a finite"),
        ({"generation": {"do_sample": 3}}, None, "[generation] do_sample must be true or false"),
        ({"generation": {"repetition_penalty": 0}}, None, "[generation] repetition_penalty must be in [0.01, 100]"),
        ({"generation": {"batch_size": "8"}}, None, "[generation] batch_size must be a whole number"),
        ({"side_effects": {"n": 0}}, None, "[side_effects] n must be >= 1"),
        ({"selection": {"max_fluency_cost": float("inf")}}, None, "[selection] max_fluency_cost must be a finite"),
        ({"random_n_pairs": -2}, None, "random_n_pairs must be >= 0"),
        ({"generation": 3}, None, "[generation] must be a table"),
        ({"sites": [1]}, None, "sites must be names"),
    ],
)
def test_every_config_value_is_checked_before_any_work(table, value, needle):
    with pytest.raises(ConfigError) as err:
        parse_config({**CONFIG, **table}, "my.toml")
    assert str(err.value).startswith("my.toml: ") and needle in str(err.value), str(err.value)


class NotWeights:
    pass


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (lambda p: torch.save([torch.ones(2)], p), "holds a list, not a state dict"),
        (lambda p: torch.save({"a": 1}, p), "not a state dict of tensors"),
        (lambda p: p.write_bytes(pickle.dumps(NotWeights())), "never unpickled"),
        (lambda p: p.write_bytes(b"garbage"), "cannot be read as weights"),
    ],
)
def test_a_pth_that_holds_no_state_dict_is_refused(tmp_path, payload, needle):
    path = tmp_path / "weights.pth"
    payload(path)
    with pytest.raises(SteerscopeError) as err:
        load_procgen_policy(path)
    assert str(path) in str(err.value) and needle in str(err.value), str(err.value)


# --- the Python API: each wrong argument is one clear error naming it ----------------------------------------


def test_python_api_misuse_names_the_argument():
    from tiny_models import tiny_model

    from steerscope import load_model
    from steerscope.methods import fit
    from steerscope.steering.methods import random_direction
    from steerscope.steering.pairs import ContrastPair
    from steerscope.steering.vector import SteeringVector

    for spec in (None, "", "   "):
        with pytest.raises(ValueError, match=r"load_model\(spec\) needs a model"):
            load_model(spec)  # type: ignore[arg-type]
    vec = SteeringVector({"resid_pre.1": torch.ones(32)})
    with pytest.raises(TypeError, match=r"scaled by a number \(vector \* 2.0\), got str"):
        vec * "abc"  # type: ignore[operator]
    assert torch.equal((vec * 2).vectors["resid_pre.1"], torch.full((32,), 2.0))
    lm = tiny_model("llama", tokenizer=True)
    with pytest.raises(TypeError, match="pairs must be ContrastPair objects, got a tuple"):
        fit("mean_diff", lm, [("w1 w2", "w3 w4")], ["resid_pre.1"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="like= takes a SteeringVector"):
        random_direction(lm, [ContrastPair("w1", "w2")], ["resid_pre.1"], like=torch.ones(32))  # type: ignore[arg-type]


def test_a_vector_stamped_with_an_older_fingerprint_says_so_and_how_to_go_on():
    from tiny_models import tiny_model

    from steerscope.steering.vector import SteeringVector, VectorMismatchError

    lm = tiny_model("llama", tokenizer=True)
    old = SteeringVector({"resid_pre.1": torch.ones(lm.d_model)}, {"model": lm.name, "fingerprint": "0123abcd"})
    old.meta["steerscope_version"] = "0.0.9"
    with pytest.raises(VectorMismatchError) as err:
        old.check(lm)
    message = str(err.value)
    assert message.count(lm.name) == 1 and "0123abcd" in message and "0.0.9" in message, message
    assert "fingerprint scheme changed" in message and "--allow-other-model" in message
    assert "steerscope vectors restamp" in message
    old.check(lm, allow_other_model=True)


def test_restamping_a_vector_checks_the_model_and_keeps_the_old_stamp(tmp_path):
    """`restamp` gives a copy that `check` accepts, refuses another model's name or width, and the CLI writes it
    only where asked (replacing the file needs --overwrite)."""
    from tiny_models import save_tiny, tiny_model
    from typer.testing import CliRunner

    from steerscope import load_model
    from steerscope.cli import app
    from steerscope.steering.vector import SteeringVector, VectorMismatchError

    lm = tiny_model("llama", tokenizer=True)
    old = SteeringVector({"resid_pre.1": torch.ones(lm.d_model)}, {"model": lm.name, "fingerprint": "0123abcd"})
    new = old.restamp(lm)
    new.check(lm)  # accepted now
    assert new.meta["restamped_from"] == "0123abcd"
    assert torch.equal(new.vectors["resid_pre.1"], old.vectors["resid_pre.1"])
    with pytest.raises(VectorMismatchError, match="nothing to re-stamp"):
        new.restamp(lm)
    with pytest.raises(VectorMismatchError, match="only for a file of the same model"):
        SteeringVector({"resid_pre.1": torch.ones(lm.d_model)}, {"model": "other", "fingerprint": "x"}).restamp(lm)
    with pytest.raises(VectorMismatchError, match="d_model"):
        SteeringVector({"resid_pre.1": torch.ones(lm.d_model + 1)}, {"model": lm.name, "fingerprint": "x"}).restamp(lm)

    folder = tmp_path / "model"
    save_tiny(folder, "llama")
    on_disk = load_model(str(folder))
    stale = SteeringVector({"resid_pre.1": torch.ones(on_disk.d_model)}, {"model": on_disk.name, "fingerprint": "ab"})
    path = stale.save(tmp_path / "v.safetensors")
    refused = CliRunner().invoke(app, ["vectors", "restamp", str(path), "--model", str(folder)])
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    done = CliRunner().invoke(app, ["vectors", "restamp", str(path), "--model", str(folder), "--overwrite"])
    assert done.exit_code == 0, done.output
    SteeringVector.load(path).check(on_disk)


# --- crashes that are now one line -------------------------------------------------------------------------


def test_devices_a_folder_without_weights_and_empty_prompts_are_one_error_line(tmp_path):
    import shutil

    from cli_checks import bad
    from tiny_models import save_tiny

    save_tiny(tmp_path / "tiny", "llama")
    folder = tmp_path / "tiny"
    if not torch.cuda.is_available():
        bad(["info", folder, "--device", "cuda"], "no usable CUDA", "--device cpu")
        bad(["info", folder, "--device-map", '{"model": 3}'], "cuda:3")
    bad(["info", folder, "--device", "bogus"], "not a device name")
    empty = tmp_path / "empty"
    empty.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        if (folder / name).exists():
            shutil.copy(folder / name, empty / name)
    bad(["info", empty], "holds no weights", "save_pretrained")
    bad(["steer", folder, "--prompt", "", "--max-new-tokens", "2"], "prompt 1 of 1 is empty")
