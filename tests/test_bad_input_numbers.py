"""Non-finite and out-of-range numbers are refused with one clear error, in the API and on the command line;
"unsteered" (coefficient 0) installs no hook at all."""

import json
import math

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import VOCAB, save_tiny, tiny_model
from typer.testing import CliRunner

from steerscope import add
from steerscope.cli import app
from steerscope.core.validate import BadNumberError, finite, whole
from steerscope.depth.horizon import HorizonVariant, check_ks
from steerscope.depth.run import DepthRun, TextSpec
from steerscope.sae.model import SAEConfig, SparseAutoencoder
from steerscope.sae.steer import sae_clamp
from steerscope.steering.vector import SteeringVector, VectorFileError
from steerscope.sweep.config import ConfigError, parse_config

pytestmark = pytest.mark.usefixtures("one_thread")
NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama")


# --- the checks themselves ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [NAN, INF, -INF, True, "3", None, [1.0]])
def test_finite_refuses_what_is_not_a_finite_real(value):
    with pytest.raises(BadNumberError, match="the thing"):
        finite(value, "the thing")


@pytest.mark.parametrize(("value", "low", "high"), [(-0.1, 0.0, 1.0), (1.5, 0.0, 1.0), (2, 3, None)])
def test_finite_refuses_out_of_range_and_names_the_range(value, low, high):
    with pytest.raises(BadNumberError, match=r"must be in \["):
        finite(value, "x", low, high)


@pytest.mark.parametrize(("value", "needle"), [(0, ">= 1"), (9, "<= 4"), (True, "whole number"), (1.5, "whole")])
def test_whole_names_its_bounds(value, needle):
    with pytest.raises(BadNumberError, match=needle):
        whole(value, "k", 1, 4)


def test_the_checks_pass_good_values_through():
    assert finite(3, "c") == 3.0 and finite(-2.5, "c") == -2.5 and whole(4, "k", 1, 4) == 4


# --- coefficients and vectors --------------------------------------------------------------------


@pytest.mark.parametrize("coefficient", [NAN, INF, -INF, True])
def test_add_refuses_a_non_finite_coefficient(lm, coefficient):
    with pytest.raises(BadNumberError, match="coefficient"), add(lm, {"resid_pre.1": torch.ones(32)}, coefficient):
        pass


@pytest.mark.parametrize("bad", [NAN, INF])
def test_add_refuses_a_vector_holding_nan_or_inf(lm, bad):
    vec = torch.ones(32)
    vec[3] = bad
    with pytest.raises(BadNumberError, match="NaN or infinite"), add(lm, {"resid_pre.1": vec}):
        pass


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_a_steering_vector_cannot_hold_nan_or_inf(bad):
    vec = torch.zeros(32)
    vec[0] = bad
    with pytest.raises(BadNumberError, match="resid_pre.1"):
        SteeringVector({"resid_pre.1": vec})


@pytest.mark.parametrize("bad", [NAN, INF])
def test_a_vector_file_holding_nan_is_refused_on_load(tmp_path, bad):
    data = torch.ones(32)
    data[5] = bad
    path = tmp_path / "v.safetensors"
    save_file({"resid_pre.1": data}, str(path), metadata={"steerscope": json.dumps({"method": "mean_diff"})})
    with pytest.raises(VectorFileError, match="NaN or infinite"):
        SteeringVector.load(path)


@pytest.mark.parametrize("coefficient", [NAN, INF])
def test_apply_refuses_a_non_finite_coefficient(lm, coefficient):
    vec = SteeringVector({"resid_pre.1": torch.ones(32)})
    with pytest.raises(BadNumberError, match="coefficient"), vec.apply(lm, coefficient):
        pass


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_coefficient_zero_installs_no_hook_and_leaves_the_logits_bit_exact(lm):
    vec = SteeringVector({"resid_pre.1": torch.full((32,), 5.0)})
    ids = torch.randint(2, VOCAB, (2, 6), generator=torch.Generator().manual_seed(0))
    before = _hook_count(lm.model)
    with torch.no_grad():
        clean = lm.model(ids).logits
        with vec.apply(lm, 0.0):
            inside = _hook_count(lm.model)
            unsteered = lm.model(ids).logits
        with vec.apply(lm, 1.0):
            steered_hooks = _hook_count(lm.model)
    assert inside == before and steered_hooks > before
    assert torch.equal(clean, unsteered)


@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_the_sae_clamp_value_must_be_finite(lm, value):
    sae = SparseAutoencoder(SAEConfig(d_in=32, d_sae=64, architecture="topk", k=4, site="resid_pre.1"))
    with pytest.raises(BadNumberError, match="clamp value"), sae_clamp(lm, sae, 0, value):
        pass


# --- depth ranges --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ks", "needle"),
    [([1, 99], "<= 4"), ([0], ">= 1"), ([1, 1], "twice"), ([], "at least one"), ([True], "whole"), ([1.5], "whole")],
)
def test_horizons_outside_one_to_L_are_refused(ks, needle):
    with pytest.raises(BadNumberError, match=needle):
        check_ks(ks, 4)


@pytest.mark.parametrize("enforce_from", [4, 99])
def test_an_enforce_from_the_model_lacks_is_refused(enforce_from):
    with pytest.raises(BadNumberError, match="enforce_from"):
        HorizonVariant(enforce_from=enforce_from).check(4)


def test_an_enforce_from_inside_the_model_passes():
    HorizonVariant(enforce_from=3).check(4)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [("n", 0, "--n"), ("seq_len", 1, "--seq-len"), ("batch_size", 0, "--batch-size"), ("seed", -1, "--seed"),
     ("n", True, "--n"), ("source", "  ", "--text")],
)  # fmt: skip
def test_text_specs_out_of_range_are_refused(field, value, needle):
    with pytest.raises(BadNumberError, match=needle):
        TextSpec(**{field: value})


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"n_boot": 0}, "--n-boot"), ({"fit_range": (0.8, 0.2)}, "lo < hi"), ({"fit_range": (0.0, 2.0)}, "fit range"),
     ({"fit_range": (NAN, 0.5)}, "finite"), ({"models": []}, "at least one model")],
)  # fmt: skip
def test_depth_runs_out_of_range_are_refused(tmp_path, kwargs, needle):
    with pytest.raises(BadNumberError, match=needle):
        DepthRun(**{"models": ["default"], "out": tmp_path / "o", **kwargs})


# --- sweep configs -------------------------------------------------------------------------------

BASE = {"models": ["m"], "sites": ["resid_pre.1"], "coefficients": [2.0], "n_pairs": [4], "datasets": ["sentiment"]}


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [("coefficients", [True], "coefficients"), ("coefficients", [NAN], "coefficients"),
     ("coefficients", [INF], "coefficients"), ("coefficients", [0], "coefficients"),
     ("coefficients", [-1], "coefficients"), ("coefficients", ["4"], "coefficients"),
     ("n_pairs", [True], "n_pairs"), ("n_pairs", [0], "n_pairs"), ("n_pairs", [2.5], "n_pairs"),
     ("seeds", [-1], "seeds"), ("seeds", [False], "seeds"), ("n_boot", 0, "n_boot"), ("n_boot", True, "n_boot")],
)  # fmt: skip
def test_sweep_configs_refuse_bad_numbers(key, value, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_config({**BASE, key: value})


# --- the command line ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_numbers")
    save_tiny(root / "tiny", "llama")
    (root / "docs.txt").write_text("\n\n".join(" ".join(f"w{i + j}" for i in range(12)) for j in range(10)))
    SteeringVector({"resid_pre.1": torch.ones(32)}, {"method": "mean_diff"}).save(root / "v.safetensors")
    (root / "true.toml").write_text(
        'models = ["x"]\nsites = ["resid_pre.1"]\ncoefficients = [true]\nn_pairs = [4]\ndatasets = ["sentiment"]\n'
    )
    return root


def bad(args, *needles):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


HORIZON = ["horizon", "{tiny}", "--text", "{docs}", "--n", "4", "--seq-len", "8", "--out", "{out}"]
NORMS = ["norms", "{tiny}", "--text", "{docs}", "--n", "4", "--seq-len", "8", "--out", "{out}"]
CLI_CASES = [
    (["generate", "{tiny}", "--vector", "{vec}", "--coefficient", "nan", "--max-new-tokens", "2"], ["coefficient"]),
    (["generate", "{tiny}", "--vector", "{vec}", "--coefficient", "inf", "--max-new-tokens", "2"], ["coefficient"]),
    (["steer", "{tiny}", "--site", "resid_pre.1", "--coefficient", "nan", "--max-new-tokens", "2"], ["coefficient"]),
    ([*HORIZON, "--ks", "1,99"], ["horizon k", "<= 3"]),  # the tiny model has 3 layers
    ([*HORIZON, "--ks", "2,2"], ["twice"]),
    ([*HORIZON, "--enforce-from", "99"], ["enforce_from", "<= 2"]),
    ([*HORIZON[:-2], "--out", "{out}", "--batch-size", "0"], ["--batch-size"]),
    ([*HORIZON, "--n-boot", "0"], ["--n-boot"]),
    (["horizon", "{tiny}", "--text", "{docs}", "--n", "0", "--out", "{out}"], ["--n"]),
    (["horizon", "{tiny}", "--text", "{docs}", "--seq-len", "1", "--out", "{out}"], ["--seq-len"]),
    ([*NORMS, "--fit-range", "0.8,0.2"], ["lo < hi"]),
    ([*NORMS, "--fit-range", "0,nan"], ["finite"]),
    ([*NORMS, "--n-boot", "-5"], ["--n-boot"]),
    (["sweep", "{toml}", "--out", "{out}"], ["coefficients"]),
]


@pytest.mark.parametrize(("args", "needles"), CLI_CASES)
def test_the_cli_refuses_bad_numbers_in_one_line(files, tmp_path, args, needles):
    fill = {"tiny": files / "tiny", "docs": files / "docs.txt", "vec": files / "v.safetensors"}
    fill |= {"out": tmp_path / "out", "toml": files / "true.toml"}
    bad([a.format(**fill) for a in args], *needles)
    assert not (tmp_path / "out").exists()


def test_nan_is_nan():
    assert math.isnan(NAN)  # the module's NaN constant is a real NaN (the cases above depend on it)
