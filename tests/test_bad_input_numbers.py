"""Non-finite and out-of-range numbers are refused with one clear error, in the API and on the command line;
"unsteered" (coefficient 0) installs no hook at all."""

import contextlib
import json
import math

import pytest
import torch
from cli_checks import bad
from safetensors.torch import save_file
from tiny_models import VOCAB, save_tiny, tiny_model

from steerscope import add
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


# --- unsteered is the model as it is -------------------------------------------------------------


def test_steered_completions_run_coefficient_zero_with_no_hook(lm, monkeypatch):
    """The unsteered column is generated with no forward hook on any module, the steered one with some."""
    from steerscope.steering import generate as gen

    seen: list[int] = []
    monkeypatch.setattr(gen, "generate_text", lambda lm_, prompts, **kw: seen.append(_hook_count(lm_.model)) or [""])
    vec = SteeringVector({"resid_pre.1": torch.ones(32)})
    before = _hook_count(lm.model)
    texts = gen.steered_completions(lm, vec, ["a"], [0.0, 2.0], max_new_tokens=2)
    assert list(texts) == ["unsteered", "+2 x vector"]
    assert seen[0] == before and seen[1] > before and _hook_count(lm.model) == before


@pytest.mark.parametrize("coefficients", [[0.0, NAN], [INF], [True], [-INF, 1.0]])
def test_steered_completions_refuse_bad_coefficients_before_generating(lm, monkeypatch, coefficients):
    from steerscope.steering import generate as gen

    calls: list[int] = []
    monkeypatch.setattr(gen, "generate_text", lambda *a, **k: calls.append(1) or [""])
    with pytest.raises(BadNumberError, match="coefficient"):
        gen.steered_completions(lm, SteeringVector({"resid_pre.1": torch.ones(32)}), ["a"], coefficients)
    assert not calls  # not even the unsteered column was generated


def test_steered_completions_refuse_zero_new_tokens(lm):
    from steerscope.steering.generate import steered_completions

    with pytest.raises(BadNumberError, match="max_new_tokens"):
        steered_completions(lm, SteeringVector({"resid_pre.1": torch.ones(32)}), ["a"], [1.0], max_new_tokens=0)


# --- read(..., stop_after_deepest=True) ends its block at the first forward call ---------------------


def test_stop_after_deepest_reads_one_forward_call(lm):
    from steerscope.core.hooks import read

    ids = torch.randint(2, VOCAB, (1, 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), read(lm, ["resid_pre.1"], stop_after_deepest=True) as cache:
        lm.model(ids)
    assert cache["resid_pre.1"].shape == (1, 5, 32)
    assert "ENDS AT ITS FIRST FORWARD CALL" in read.__doc__


def test_stop_after_deepest_refuses_a_second_forward_call(lm):
    from steerscope.core.hooks import read

    ids = torch.randint(2, VOCAB, (1, 5), generator=torch.Generator().manual_seed(1))
    with (
        pytest.raises(RuntimeError, match="already stopped after the deepest site"),
        torch.no_grad(),
        read(lm, ["resid_pre.1"], stop_after_deepest=True),
    ):
        with contextlib.suppress(Exception):  # the misuse: swallowing the stop and going on
            lm.model(ids)
        lm.model(ids)


def test_stop_after_deepest_refuses_a_caught_stop(lm):
    from steerscope.core.hooks import read

    ids = torch.randint(2, VOCAB, (1, 5), generator=torch.Generator().manual_seed(1))
    with (
        pytest.raises(RuntimeError, match="caught the stop"),
        torch.no_grad(),
        read(lm, ["resid_pre.1"], stop_after_deepest=True),
        contextlib.suppress(Exception),
    ):
        lm.model(ids)


# --- SAE cfg.json fields ----------------------------------------------------------------------------

SAE_CFG = {
    "architecture": "topk",
    "d_in": 32,
    "d_sae": 64,
    "k": 4,
    "metadata": {"hook_name": "blocks.1.hook_resid_pre"},
}


@pytest.mark.parametrize(
    ("change", "needle"),
    [({"d_in": "abc"}, "d_in"), ({"d_in": 0}, "d_in"), ({"d_in": True}, "d_in"), ({"d_in": 3.5}, "d_in"),
     ({"d_sae": -1}, "d_sae"), ({"d_sae": None}, "d_sae"), ({"k": 0}, "k must"), ({"k": 65}, "k must be in 1..d_sae"),
     ({"k": "4"}, "k must"), ({"k": None}, "needs k"), ({"architecture": "gated"}, "architecture"),
     ({"architecture": 3}, "architecture"), ({"apply_b_dec_to_input": "yes"}, "apply_b_dec_to_input"),
     ({"metadata": {"hook_name": "blocks.1.hook_z"}}, "hook_name"), ({"metadata": {"hook_name": 7}}, "hook_name"),
     ({"metadata": {"steerscope_site": "resid_middle.1"}}, "steerscope_site"), ({"metadata": "x"}, "metadata"),
     ({"activation_fn_kwargs": [1]}, "activation_fn_kwargs")],
)  # fmt: skip
def test_sae_config_fields_of_the_wrong_type_are_one_error_naming_them(change, needle):
    from steerscope.sae.saelens import SAEFileError, config_from_saelens

    with pytest.raises(SAEFileError, match=needle):
        config_from_saelens({**SAE_CFG, **change})


def test_a_good_sae_config_still_reads():
    from steerscope.sae.saelens import config_from_saelens

    cfg = config_from_saelens({**SAE_CFG, "d_in": 32.0})
    assert (cfg.d_in, cfg.d_sae, cfg.k, cfg.site) == (32, 64, 4, "resid_pre.1")


# --- records of the trainers and runners -------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [("steps", 0, "--steps"), ("steps", -1, "--steps"), ("batch_size", 0, "--batch-size"), ("n_mazes", 0, "--n-mazes"),
     ("eval_mazes", 0, "--eval-mazes"), ("lr", NAN, "--lr"), ("lr", 0.0, "--lr"), ("steps", True, "--steps"),
     ("sizes", (4,), "odd"), ("seed", -1, "--seed")],
)  # fmt: skip
def test_maze_train_configs_refuse_bad_numbers(field, value, needle):
    from steerscope.maze.train import PolicyTrainConfig

    with pytest.raises(BadNumberError, match=needle):
        PolicyTrainConfig(**{field: value})


def test_maze_training_refuses_a_batch_larger_than_the_data(tmp_path):
    from steerscope.maze.train import PolicyTrainConfig, train

    with pytest.raises(BadNumberError, match="exceeds"):
        train(tmp_path / "p", PolicyTrainConfig(n_mazes=1, steps=1, batch_size=10_000, sizes=(5,)), show_progress=False)
    assert not (tmp_path / "p.partial").exists()


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [("coefficient", NAN, "coefficient"), ("coefficient", INF, "coefficient"), ("n_mazes", 0, "--n-mazes"),
     ("figures", -1, "--figures"), ("vector_mouse", "corner", "--vector-mouse")],
)  # fmt: skip
def test_cheese_runs_refuse_bad_numbers(tmp_path, field, value, needle):
    from steerscope.maze.run import CheeseRun

    with pytest.raises(ValueError, match=needle):
        CheeseRun(policy=tmp_path / "policy", out=tmp_path / "out", **{field: value})


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [("batch_size", 0, "--batch-size"), ("tokens", 0, "--tokens"), ("seq_len", 1, "--seq-len"), ("k", 0, "--k"),
     ("expansion", -2, "--expansion"), ("lr", INF, "--lr"), ("lr", -1e-3, "--lr"), ("l1_coefficient", NAN, "l1")],
)  # fmt: skip
def test_sae_train_configs_refuse_bad_numbers(field, value, needle):
    from steerscope.sae.train import SAETrainConfig

    with pytest.raises(BadNumberError, match=needle):
        SAETrainConfig(site="resid_pre.1", **{field: value})


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [("batch_size", 0, "--batch-size"), ("max_new_tokens", 0, "--max-new-tokens"), ("n_val", 0, "--n-val"),
     ("n_test", -1, "--n-test"), ("kl_max", NAN, "--kl-max"), ("max_layer_frac", 1.5, "--max-layer-frac"),
     ("max_layer_frac", 0.0, "--max-layer-frac"), ("induce_min", NAN, "--induce-min"),
     ("layer_step", 0, "--layer-step")],
)  # fmt: skip
def test_refusal_runs_refuse_bad_numbers(tmp_path, field, value, needle):
    from steerscope.refusal.run import RefusalRun

    with pytest.raises(BadNumberError, match=needle):
        RefusalRun(model="default", out=tmp_path / "out", **{field: value})


@pytest.mark.parametrize("batch_size", [0, -4])
def test_activation_reads_refuse_a_batch_size_below_one(lm, batch_size):
    from steerscope.core.extract import mean_activations, text_vectors

    with pytest.raises(BadNumberError, match="--batch-size"):
        text_vectors(lm, ["a b"], ["resid_pre.1"], batch_size=batch_size)
    with pytest.raises(BadNumberError, match="--batch-size"):
        mean_activations(lm, ["a b"], ["resid_pre.1"], batch_size=batch_size)


@pytest.mark.parametrize(
    ("kwargs", "needle"), [({"n": 0}, "--n"), ({"batch_size": 0}, "--batch-size"), ({"max_requests": -1}, "--max-req")]
)
def test_pair_generation_refuses_bad_sizes(kwargs, needle):
    from steerscope.steering.synth import generate_pairs

    with pytest.raises(BadNumberError, match=needle):
        generate_pairs(lambda prompts, seed: [], "joy", **{"n": 4, **kwargs})


@pytest.mark.parametrize("value", [NAN, INF])
def test_latent_completions_refuse_a_non_finite_value(lm, value):
    from steerscope.sae.steer import latent_completions

    sae = SparseAutoencoder(SAEConfig(d_in=32, d_sae=64, architecture="topk", k=4, site="resid_pre.1"))
    with pytest.raises(BadNumberError, match="--value"):
        latent_completions(lm, sae, 0, [1.0, value], ["a"], max_new_tokens=1)


# --- the command line, more commands ----------------------------------------------------------------


@pytest.fixture(scope="module")
def more_files(files):
    from steerscope.maze.policy import MazePolicy, PolicyConfig, save_policy
    from steerscope.sae.saelens import save_saelens

    torch.manual_seed(0)
    save_policy(MazePolicy(PolicyConfig(channels=(4, 8, 8), hidden=16)), files / "policy")
    sae = SparseAutoencoder(SAEConfig(d_in=32, d_sae=64, architecture="topk", k=4, site="resid_pre.1"))
    save_saelens(sae, files / "sae")
    bad_sae = files / "bad_sae"
    save_saelens(sae, bad_sae)
    cfg = json.loads((bad_sae / "cfg.json").read_text())
    (bad_sae / "cfg.json").write_text(json.dumps({**cfg, "d_in": "abc"}))
    return files


MORE_CLI_CASES = [
    (["maze", "train", "--out", "{out}", "--steps", "0"], ["--steps", ">= 1"]),
    (["maze", "train", "--out", "{out}", "--batch-size", "0"], ["--batch-size", ">= 1"]),
    (["maze", "train", "--out", "{out}", "--n-mazes", "-2"], ["--n-mazes"]),
    (["maze", "train", "--out", "{out}", "--lr", "nan"], ["--lr", "finite"]),
    (["maze", "train", "--out", "{out}", "--threads", "-1"], ["--threads"]),
    (["maze", "cheese-vector", "{policy}", "--out", "{out}", "--coefficient", "nan"], ["coefficient", "finite"]),
    (["maze", "cheese-vector", "{policy}", "--out", "{out}", "--coefficient", "-inf"], ["coefficient", "finite"]),
    (["maze", "cheese-vector", "{policy}", "--out", "{out}", "--n-mazes", "0"], ["--n-mazes"]),
    (["sae", "steer", "{sae}", "--latent", "0", "--model", "{tiny}", "--value", "nan"], ["--value", "finite"]),
    (["sae", "steer", "{sae}", "--latent", "0", "--model", "{tiny}", "--max-new-tokens", "0"], ["--max-new-tokens"]),
    (["sae", "steer", "{bad_sae}", "--latent", "0", "--model", "{tiny}"], ["d_in", "abc"]),
    (["sae", "train", "{tiny}", "--site", "resid_pre.1", "--out", "{out}", "--batch-size", "0"], ["--batch-size"]),
    (["sae", "train", "{tiny}", "--site", "resid_pre.1", "--out", "{out}", "--seq-len", "1"], ["--seq-len", ">= 2"]),
    (["sae", "train", "{tiny}", "--site", "resid_pre.1", "--out", "{out}", "--k", "0"], ["--k"]),
    (["extract", "{tiny}", "--site", "resid_pre.1", "--batch-size", "0", "--out", "{out}"], ["--batch-size"]),
    (["extract", "{tiny}", "--site", "resid_pre.1", "--n-pairs", "-3", "--out", "{out}"], ["--n-pairs", "-3"]),
    (["generate", "{tiny}", "--vector", "{vec}", "--max-new-tokens", "0"], ["--max-new-tokens"]),
    (["generate", "{tiny}", "--vector", "{vec}", "--coefficient", "-inf", "--max-new-tokens", "2"], ["coefficient"]),
    (["steer", "{tiny}", "--site", "resid_pre.1", "--max-new-tokens", "0"], ["--max-new-tokens"]),
    (["steer", "{tiny}", "--site", "resid_pre.1", "--coefficient", "inf", "--max-new-tokens", "2"], ["coefficient"]),
    (["refusal", "{tiny}", "--out", "{out}", "--batch-size", "0"], ["--batch-size"]),
    (["refusal", "{tiny}", "--out", "{out}", "--max-layer-frac", "2"], ["--max-layer-frac"]),
    (["refusal", "{tiny}", "--out", "{out}", "--induce-min", "nan"], ["--induce-min"]),
    (["pairs", "generate", "--concept", "joy", "--writer", "endpoint", "--n", "0", "--out", "{out}"], ["--n"]),
    (
        ["pairs", "generate", "--concept", "joy", "--writer", "endpoint", "--batch-size", "0", "--out", "{out}"],
        ["--batch"],
    ),
    (
        ["pairs", "generate", "--concept", "joy", "--writer", "endpoint", "--max-requests", "-1", "--out", "{out}"],
        ["--max"],
    ),
]


@pytest.mark.parametrize(("args", "needles"), MORE_CLI_CASES)
def test_more_commands_refuse_bad_numbers_in_one_line(more_files, tmp_path, args, needles):
    fill = {"tiny": more_files / "tiny", "vec": more_files / "v.safetensors", "policy": more_files / "policy"}
    fill |= {"sae": more_files / "sae", "bad_sae": more_files / "bad_sae", "out": tmp_path / "out"}
    bad([a.format(**fill) for a in args], *needles)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
