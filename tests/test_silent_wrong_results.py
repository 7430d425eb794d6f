"""No silent wrong number: absurd coefficients, tensors that are not steering vectors, NaN thresholds and counts of
0 or below are refused with one line naming the value, wherever they enter (library, files, configs, CLI)."""

from __future__ import annotations

import json

import pytest
import torch
from cli_checks import bad
from safetensors.torch import save
from tiny_models import save_tiny, tiny_model

from steerscope import add
from steerscope.core.validate import MAX_COEFFICIENT, BadNumberError, check_coefficient
from steerscope.steering.generate import steered_completions
from steerscope.steering.vector import SteeringVector, VectorFileError
from steerscope.sweep.config import ConfigError, parse_config

pytestmark = pytest.mark.usefixtures("one_thread")
BASE = {"models": ["x"], "sites": ["resid_pre.1"], "coefficients": [4.0], "n_pairs": [4], "datasets": ["sentiment"]}


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama", tokenizer=True)


# --- coefficients: one bound, checked everywhere one enters ---------------------------------------------------


def test_the_bound_is_stated_and_its_edges_pass():
    assert check_coefficient(MAX_COEFFICIENT) == MAX_COEFFICIENT and check_coefficient(-MAX_COEFFICIENT) == -1e4
    for value in (1e30, -1e30, MAX_COEFFICIENT * 1.001):
        with pytest.raises(BadNumberError, match=r"between -10000 and 10000.*multiplies the steering vector"):
            check_coefficient(value)


@pytest.mark.parametrize("coefficient", [1e30, -2e4])
def test_absurd_coefficients_are_refused_by_every_entry(lm, coefficient):
    vec = SteeringVector({"resid_pre.1": torch.randn(lm.d_model)})
    with pytest.raises(BadNumberError, match="between -10000 and 10000"), add(lm, vec.vectors, coefficient):
        pass
    with pytest.raises(BadNumberError, match="between -10000 and 10000"), vec.apply(lm, coefficient):
        pass
    with pytest.raises(BadNumberError, match="--coefficient"):
        steered_completions(lm, vec, ["w1 w2"], [1.0, coefficient], max_new_tokens=2)
    with pytest.raises(ConfigError, match="coefficients must be finite positive numbers up to 10000"):
        parse_config({**BASE, "coefficients": [4.0, abs(coefficient)]})


def test_the_cli_refuses_an_absurd_coefficient_before_the_model_loads(tmp_path):
    bad(["steer", tmp_path / "no-model", "--coefficient", "1e30"], "--coefficient", "between -10000 and 10000")
    bad(["sae", "steer", tmp_path / "no-sae", "--latent", "1", "--value", "1e30"], "--value", "10000")


def test_the_playground_refuses_an_absurd_coefficient(lm):
    from steerscope.serve.plan import Limits, SteerRequest, make_plan
    from steerscope.serve.vectors import VectorLibrary

    for body in ({"coefficients": [1e30]}, {"coefficients": [1.0], "second": {"vector": {"pairs": "sentiment"},
                                                                             "coefficient": -1e5}}):  # fmt: skip
        request = SteerRequest.model_validate({"prompt": "w1 w2", "vector": {"pairs": "sentiment"}, **body})
        with pytest.raises(BadNumberError, match="between -10000 and 10000"):
            make_plan(request, VectorLibrary(lm), Limits(), "tiny", "resid_pre.1", lambda text: 2)


# --- vector files: a 1-D float tensor of the model's width, or [T, d] -------------------------------------------


def _file(path, tensors: dict, meta: object = None) -> str:
    header = {"steerscope": json.dumps({"method": "x"} if meta is None else meta)}
    path.write_bytes(save(tensors, metadata=header))
    return str(path)


@pytest.mark.parametrize(
    ("tensors", "needle"),
    [
        ({"resid_pre.1": torch.ones(32, dtype=torch.int64)}, "must be a floating-point tensor, got torch.int64"),
        ({"resid_pre.1": torch.ones(32, dtype=torch.bool)}, "floating-point"),
        ({"resid_pre.1": torch.tensor(1.0)}, "resid_pre.1 has shape ()"),
        ({"resid_pre.1": torch.ones(2, 3, 32)}, "has shape (2, 3, 32)"),
        ({"resid_pre.1": torch.ones(0)}, "not empty"),
        ({"resid_pre.1": torch.ones(32), "resid_pre.2": torch.ones(16)}, "different widths [16, 32]"),
        ({}, "holds no tensors"),
    ],
)  # fmt: skip
def test_a_file_that_holds_no_steering_vector_is_refused_on_load_naming_the_tensor(tmp_path, tensors, needle):
    path = _file(tmp_path / "v.safetensors", tensors)
    with pytest.raises(VectorFileError) as err:
        SteeringVector.load(path)
    assert str(path) in str(err.value) and needle in str(err.value), str(err.value)


def test_a_header_that_is_not_an_object_is_refused(tmp_path):
    path = _file(tmp_path / "v.safetensors", {"resid_pre.1": torch.ones(32)}, meta=[1, 2])
    with pytest.raises(VectorFileError, match="must be a JSON object, got list"):
        SteeringVector.load(path)


def test_the_cli_refuses_an_integer_vector_file(tmp_path):
    save_tiny(tmp_path / "tiny", "llama")
    path = _file(tmp_path / "int.safetensors", {"resid_pre.1": torch.ones(32, dtype=torch.int32)})
    bad(["vectors", "inspect", path], "resid_pre.1", "floating-point")
    bad(["generate", tmp_path / "tiny", "--vector", path, "--max-new-tokens", "2"], "floating-point")


def test_a_vector_made_in_python_is_checked_the_same_way(lm):
    with pytest.raises(TypeError, match="floating-point"):
        SteeringVector({"resid_pre.1": torch.arange(32)})
    with pytest.raises(ValueError, match=r"shape \(\)"):
        SteeringVector({"resid_pre.1": torch.tensor(2.0)})
    with pytest.raises(TypeError, match="must be a torch tensor, got list"):
        SteeringVector({"resid_pre.1": [0.0] * 32})  # type: ignore[dict-item]
    positionwise = SteeringVector({"resid_pre.1": torch.randn(3, lm.d_model)})
    positionwise.check(lm)


# --- thresholds and counts, checked where they are parsed ----------------------------------------------------


def test_nan_thresholds_and_non_positive_counts_are_refused_before_any_work(tmp_path):
    missing = tmp_path / "no-model"
    bad(["horizon", missing, "--max-kl", "nan"], "--max-kl", "finite")
    bad(["horizon", missing, "--max-delta-ce", "-0.5"], "--max-delta-ce", "[0, inf]")
    bad(["sae", "features", tmp_path / "no-sae", "--top", "0"], "--top", ">= 1")
    bad(["generate", missing, "--vector", tmp_path / "v", "--max-new-tokens", "0"], "--max-new-tokens", ">= 1")
    bad(["report", tmp_path / "nothing", "--n-boot", "0"], "--n-boot", ">= 1")
    bad(["horizon", missing, "--workers", "-2"], "--workers", ">= 0")
    bad(["maze", "train", "--n-mazes", "99999999999999999999"], "--n-mazes", "<= 1000000")
