"""The CLI's one error boundary: every bad input of every command family ends in one `error: ...` line on stderr
naming the problem, exit code 2 and no traceback; Ctrl-C exits 130; an unexpected exception is not swallowed."""

import pytest
import torch
from cli_checks import bad
from tiny_models import save_tiny
from typer.testing import CliRunner

from steerscope.cli import app
from steerscope.core.errors import SteerscopeError
from steerscope.maze.policy import MazePolicy, PolicyConfig, save_policy
from steerscope.steering.vector import SteeringVector

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny saved model, a text file, a vector for it, one of the wrong width, a junk file, a policy, a config."""
    root = tmp_path_factory.mktemp("cli_errors")
    save_tiny(root / "tiny", "llama")
    (root / "docs.txt").write_text("\n\n".join(" ".join(f"w{i + j}" for i in range(12)) for j in range(10)))
    SteeringVector({"resid_pre.1": torch.ones(32), "resid_pre.2": torch.ones(32)}, {"method": "mean_diff"}).save(
        root / "two_sites.safetensors"
    )
    SteeringVector({"resid_pre.1": torch.ones(64)}, {"method": "mean_diff"}).save(root / "wide.safetensors")
    (root / "junk.safetensors").write_bytes(b"not a safetensors file")
    (root / "exists").mkdir()
    (root / "exists.txt").write_text("keep me\n")
    torch.manual_seed(0)
    save_policy(MazePolicy(PolicyConfig(channels=(4, 8, 8), hidden=16)), root / "policy")
    (root / "unknown_key.toml").write_text(
        'models = ["x"]\nsites = ["resid_pre.1"]\ncoefficients = [1]\nn_pairs = [4]\ndatasets = ["sentiment"]\n'
        "[generation]\nmax_new_tokenz = 3\n"
    )
    (root / "broken.toml").write_text("models = [\n")
    return root


# (family, args as a function of the fixture folder, words the one line must contain)
CASES = [
    # info
    ("info", lambda r: ["info", r / "no_such_model"], ["no_such_model"]),
    ("info", lambda r: ["info", r / "docs.txt"], ["docs.txt"]),
    ("info", lambda r: ["info", r / "tiny", "--dtype", "float7"], ["float7"]),
    ("info", lambda r: ["info", r / "exists"], ["exists"]),
    # steer
    ("steer", lambda r: ["steer", r / "tiny", "--site", "resid_pre.9", "--max-new-tokens", "2"], ["resid_pre.9"]),
    ("steer", lambda r: ["steer", r / "tiny", "--site", "resid_middle.1"], ["resid_middle.1"]),
    ("steer", lambda r: ["steer", r / "tiny", "--pairs", "no_such_set"], ["no_such_set"]),
    ("steer", lambda r: ["steer", r / "no_such_model"], ["no_such_model"]),
    # extract
    ("extract", lambda r: ["extract", r / "tiny", "--pairs", r / "missing.jsonl"], ["missing.jsonl"]),
    ("extract", lambda r: ["extract", r / "tiny", "--site", "resid_pre.9", "--out", r / "v.st"], ["resid_pre.9"]),
    ("extract", lambda r: ["extract", r / "tiny", "--out", r / "exists.txt"], ["exists.txt", "--overwrite"]),
    ("extract", lambda r: ["extract", r / "tiny", "--n-pairs", "-3", "--out", r / "v.st"], ["--n-pairs", "-3"]),
    ("extract", lambda r: ["extract", r / "tiny", "--n-pairs", "100000", "--out", r / "v.st"], ["100000"]),
    ("extract", lambda r: ["extract", r / "tiny", "--option", "C", "--out", r / "v.st"], ["name=value"]),
    ("extract", lambda r: ["extract", r / "tiny", "--method", "no_such_method", "--out", r / "v.st"], ["no_such"]),
    ("extract", lambda r: ["extract", r / "tiny", "--split", "sideways", "--out", r / "v.st"], ["sideways"]),
    # generate / vectors inspect
    ("generate", lambda r: ["generate", r / "tiny", "--vector", r / "missing.safetensors"], ["missing.safetensors"]),
    ("generate", lambda r: ["generate", r / "tiny", "--vector", r / "junk.safetensors"], ["junk.safetensors"]),
    ("generate", lambda r: ["generate", r / "tiny", "--vector", r / "wide.safetensors"], ["64"]),
    (
        "generate",
        lambda r: ["generate", r / "tiny", "--vector", r / "two_sites.safetensors", "--positions", "middle"],
        ["middle"],
    ),
    ("vectors", lambda r: ["vectors", "inspect", r / "missing.safetensors"], ["missing.safetensors"]),
    ("vectors", lambda r: ["vectors", "inspect", r / "junk.safetensors"], ["junk.safetensors"]),
    ("vectors", lambda r: ["vectors", "inspect", r / "exists"], ["exists"]),
    # pairs generate
    ("pairs", lambda r: ["pairs", "generate", "--concept", "joy", "--writer", "oracle"], ["oracle"]),
    ("pairs", lambda r: ["pairs", "generate", "--concept", "joy", "--out", r / "exists.txt"], ["--overwrite"]),
    ("pairs", lambda r: ["pairs", "generate", "--concept", "joy", "--model", r / "no_such_model"], ["no_such_model"]),
    # orthogonalize
    (
        "orthogonalize",
        lambda r: ["orthogonalize", r / "tiny", "--direction", r / "missing.safetensors", "--out", r / "o"],
        ["missing.safetensors"],
    ),
    (
        "orthogonalize",
        lambda r: ["orthogonalize", r / "tiny", "--direction", r / "two_sites.safetensors", "--out", r / "o"],
        ["--site"],
    ),
    (
        "orthogonalize",
        lambda r: (
            ["orthogonalize", r / "tiny", "--direction", r / "two_sites.safetensors", "--site", "resid_pre.0"]
            + ["--out", r / "o"]
        ),
        ["resid_pre.0"],
    ),
    (
        "orthogonalize",
        lambda r: (
            ["orthogonalize", r / "tiny", "--direction", r / "two_sites.safetensors", "--site", "resid_pre.1"]
            + ["--out", r / "exists"]
        ),
        ["--overwrite"],
    ),
    (
        "orthogonalize",
        lambda r: ["orthogonalize", r / "tiny", "--direction", r / "wide.safetensors", "--out", r / "o"],
        ["64"],
    ),
    # norms / horizon
    ("norms", lambda r: ["norms", r / "tiny", "--out", r / "exists"], ["already exists", "--overwrite"]),
    ("norms", lambda r: ["norms", r / "tiny", "--text", r / "missing.txt", "--out", r / "n"], ["missing.txt"]),
    ("norms", lambda r: ["norms", r / "tiny", "--fit-range", "0.2", "--out", r / "n"], ["--fit-range", "0.2"]),
    ("norms", lambda r: ["norms", r / "no_such_model", "--text", r / "docs.txt", "--out", r / "n"], ["no_such"]),
    ("horizon", lambda r: ["horizon", r / "tiny", "--fill", "median", "--out", r / "h"], ["fill must be one of"]),
    ("horizon", lambda r: ["horizon", r / "tiny", "--ks", "1,two", "--out", r / "h"], ["--ks", "1,two"]),
    ("horizon", lambda r: ["horizon", r / "tiny", "--source", "dirty", "--out", r / "h"], ["dirty"]),
    ("horizon", lambda r: ["horizon", r / "tiny", "--out", r / "exists"], ["--overwrite"]),
    # refusal
    ("refusal", lambda r: ["refusal", r / "tiny", "--induce-min", "high", "--out", r / "r"], ["--induce-min"]),
    ("refusal", lambda r: ["refusal", r / "tiny", "--out", r / "exists"], ["--overwrite"]),
    ("refusal", lambda r: ["refusal", r / "no_such_model", "--out", r / "r"], ["no_such_model"]),
    # sweep / report
    ("sweep", lambda r: ["sweep", r / "missing.toml"], ["missing.toml"]),
    ("sweep", lambda r: ["sweep", r / "unknown_key.toml", "--out", r / "s"], ["max_new_tokenz", "[generation]"]),
    ("sweep", lambda r: ["sweep", r / "broken.toml", "--out", r / "s"], ["broken.toml"]),
    ("sweep", lambda r: ["sweep", r / "docs.txt", "--out", r / "s"], ["docs.txt"]),
    ("report", lambda r: ["report", r / "nothing"], ["no sweep results"]),
    ("report", lambda r: ["report", r / "exists"], ["exists"]),
    # sae
    ("sae", lambda r: ["sae", "features", r / "nowhere", "--model", r / "tiny"], ["cfg.json"]),
    ("sae", lambda r: ["sae", "steer", r / "nowhere", "--latent", "0", "--mode", "swap"], ["--mode", "swap"]),
    ("sae", lambda r: ["sae", "steer", r / "nowhere", "--latent", "0"], ["nowhere"]),
    ("sae", lambda r: ["sae", "train", r / "no_such_model"], ["no_such_model"]),
    (
        "sae",
        lambda r: ["sae", "features", r / "nowhere", "--out", r / "exists.txt", "--model", r / "tiny"],
        ["--overwrite"],
    ),
    # maze
    ("maze", lambda r: ["maze", "cheese-vector", r / "nowhere", "--out", r / "c"], ["steerscope maze train"]),
    (
        "maze",
        lambda r: ["maze", "cheese-vector", r / "policy", "--site", "embedder.block9", "--out", r / "c"],
        ["embedder.block9"],
    ),
    ("maze", lambda r: ["maze", "cheese-vector", r / "policy", "--out", r / "exists"], ["--overwrite"]),
    (
        "maze",
        lambda r: ["maze", "cheese-vector", r / "policy", "--vector-mouse", "anywhere", "--out", r / "c"],
        ["anywhere"],
    ),
    # demo
    ("demo", lambda r: ["demo", r / "tiny", "--out", r / "exists"], ["already exists", "--overwrite"]),
]


@pytest.mark.parametrize("family,make_args,needles", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_clear_line(files, family, make_args, needles):
    bad(make_args(files), *needles)


def test_every_command_family_has_three_bad_inputs():
    counts = {}
    for family, _, _ in CASES:
        counts[family] = counts.get(family, 0) + 1
    families = {"info", "steer", "extract", "generate", "vectors", "pairs", "orthogonalize", "norms", "horizon"}
    families |= {"refusal", "sweep", "report", "sae", "maze", "demo"}
    assert set(counts) == families
    assert all(counts[f] >= 3 for f in families - {"report", "demo"}), counts


def test_existing_output_is_left_alone(files):
    bad(["extract", files / "tiny", "--out", files / "exists.txt"], "--overwrite")
    assert (files / "exists.txt").read_text() == "keep me\n"


def test_bracketed_message_survives(files, monkeypatch):
    from steerscope.depth import run as depth_run

    def refuse(*args, **kwargs):
        raise SteerscopeError("x is not an option of [method_options.mean_diff]; define [generation] first")

    monkeypatch.setattr(depth_run, "run_norms", refuse)
    line = bad(["norms", files / "tiny", "--out", files / "n"])
    assert line == "error: x is not an option of [method_options.mean_diff]; define [generation] first"


def test_multiline_message_is_one_line(files, monkeypatch):
    from steerscope.depth import run as depth_run

    def refuse(*args, **kwargs):
        raise ValueError("first part\n  second part")

    monkeypatch.setattr(depth_run, "run_norms", refuse)
    assert bad(["norms", files / "tiny", "--out", files / "n"]) == "error: first part second part"


def test_unexpected_exception_is_not_swallowed(files, monkeypatch):
    from steerscope.depth import run as depth_run

    def crash(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(depth_run, "run_norms", crash)
    result = CliRunner().invoke(app, ["norms", str(files / "tiny"), "--out", str(files / "n")])
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError) and str(result.exception) == "a bug"
    assert "error:" not in result.stderr


def test_interrupt_exits_130_with_one_line(files, monkeypatch):
    from steerscope.maze import run as maze_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(maze_run, "run_cheese", interrupted)
    result = CliRunner().invoke(app, ["maze", "cheese-vector", str(files / "policy"), "--out", str(files / "c")])
    assert result.exit_code == 130
    assert result.stderr.splitlines() == [result.stderr.strip()] and result.stderr.startswith("interrupted;")
    assert "finished work is kept" in result.stderr


def _commands(command, path):
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _commands(sub, [*path, name])
    else:
        yield path, command


def test_every_help_page_is_readable_in_80_columns():
    """No line wider than the terminal, and every option's full name shown (none cut short with an ellipsis)."""
    import typer.main

    from steerscope.cli import app as cli_app

    runner = CliRunner()
    for path, command in _commands(typer.main.get_command(cli_app), []):
        result = runner.invoke(cli_app, [*path, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0, (path, result.output)
        assert max(len(line) for line in result.output.splitlines()) <= 80, path
        names = [o for p in command.params if p.param_type_name == "option" for o in p.opts if o.startswith("--")]
        assert all(name in result.output for name in names), path
        assert "…" not in result.output, path
