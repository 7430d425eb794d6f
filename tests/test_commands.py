"""The command lines steerscope prints to redo a result (core.commands) are quoted right and parse with the CLI."""

from __future__ import annotations

import shlex

import pytest
import typer.main

from steerscope.cli import app
from steerscope.core.commands import command, command_args


def parse_with_cli(line: str) -> list[str]:
    """Parse one `steerscope ...` line with the real CLI, without running it: the command path it reaches (an
    unknown command or option, or a bad value, raises click's usage error)."""
    args = shlex.split(line, comments=True)
    assert args[0] == "steerscope", line
    cmd, rest, path = typer.main.get_command(app), args[1:], []
    while hasattr(cmd, "commands"):
        name, rest = rest[0], rest[1:]
        assert name in cmd.commands, f"{line}: no command {name!r}"
        cmd, path = cmd.commands[name], [*path, name]
    cmd.make_context(" ".join(["steerscope", *path]), list(rest), resilient_parsing=False)
    return path


def test_options_lists_flags_and_quoting():
    line = command("generate", "my model", vector="v.safetensors", coefficient=[4.0, -4], sample=True, seed=None)
    assert line == "steerscope generate 'my model' --vector v.safetensors --coefficient 4 --coefficient -4 --sample"
    assert command_args("vectors inspect", "v.safetensors") == ["steerscope", "vectors", "inspect", "v.safetensors"]


@pytest.mark.parametrize(
    "line",
    [
        command("extract", "default", method="mean_diff", pairs="sentiment", n_pairs=64, site="resid_pre.10",
                out="sent.safetensors"),
        command("generate", "default", vector="v.safetensors", coefficient=[4.0, -4.0], prompt=["It's \"fine\""],
                max_new_tokens=40, seed=0, repetition_penalty=1.3, sample=True, positions="all"),
        command("horizon", "default", n=16, seq_len=64, ks="1,15,30", out="runs/horizon"),
        command("refusal", "default", n_val=8, n_fit=16, layer_step=3, last_positions=1, induce_min="baseline",
                n_test=8, max_new_tokens=24, no_export=True),
        command("vectors inspect", "v.safetensors"),
    ],
)  # fmt: skip
def test_built_commands_parse_with_the_cli(line):
    assert parse_with_cli(line)


def test_a_wrong_option_does_not_parse():
    with pytest.raises(Exception, match="no-such-option"):  # typer's own click raises its NoSuchOption
        parse_with_cli("steerscope extract default --no-such-option 3")
