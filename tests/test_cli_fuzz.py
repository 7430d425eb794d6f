"""Every option of every command given a wrong-typed, empty, negative, zero, NaN and huge value: the command exits 2
with exactly one `error:` line and no traceback. The model named is a folder that is not there, so a value that is
accepted ends at the model ("no model folder") and nothing loads or runs; a value that is refused must be refused
first, naming its option: NaN and wrong types for every number, and 0 / negative for every count."""

from __future__ import annotations

import math
import typing

import pytest
import typer
from typer.testing import CliRunner

from steerscope.cli import app

VALUES = ["abc", "", "nan", "-inf", "-1", "0", "1e309", "99999999999999999999"]

# Numbers where 0 or a negative value means something (documented in each option's help): not counts.
ZERO_OR_NEGATIVE_OK = {
    "--coefficient", "--seed", "--threads", "--port", "--n-fit", "--n-test", "--n-pairs", "--last-positions",
    "--enforce-from", "--value", "--figures", "--max-requests", "--snippets", "--random-n-pairs", "--min-frac",
    "--max-frac", "--task-tolerance",
}  # fmt: skip
ZERO_OK = {
    "--latent", "--workers", "--gpus-per-worker", "--cpus-per-worker", "--induce-min", "--max-delta-ce", "--max-kl",
    "--kl-max", "--temperature", "--l1-coefficient", "--trials",
}  # fmt: skip


def commands() -> list[tuple[list[str], object]]:
    """(path, click command) of every leaf command."""
    out: list[tuple[list[str], object]] = []

    def walk(group, prefix):
        for name, cmd in group.commands.items():
            if getattr(cmd, "commands", None) is not None:
                walk(cmd, [*prefix, name])
            else:
                out.append(([*prefix, name], cmd))

    walk(typer.main.get_command(app), [])
    return out


def base_args(cmd, tmp) -> list[str]:
    """The command with its arguments and required options filled with paths that are not there."""
    args: list[str] = []
    for p in cmd.params:
        if type(p).__name__ == "TyperArgument":
            args.append(str(tmp / "missing-model") if p.name in ("model", "models", "policy") else str(tmp / "nope"))
        elif p.required:
            number = kind_of(cmd, p)
            args += [p.opts[0], "0" if number is not None else str(tmp / f"missing{p.opts[0]}")]
    if any("--out" in p.opts for p in cmd.params if type(p).__name__ == "TyperOption") and "--out" not in args:
        (tmp / "taken").mkdir(exist_ok=True)  # an --out that exists: refused unless --overwrite, so nothing runs
        args += ["--out", str(tmp / "taken")]
    return args


def kind_of(cmd, param) -> type | None:
    """The Python type an option's values have (float, int, ...), from the command function's annotations."""
    function = cmd.callback
    while hasattr(function, "__wrapped__"):
        function = function.__wrapped__
    hint = typing.get_type_hints(function, include_extras=False).get(param.name)
    for arg in [hint, *typing.get_args(hint)]:
        for inner in [arg, *typing.get_args(arg)]:
            if inner in (int, float):
                return inner
    return None


@pytest.fixture(scope="module")
def root():
    return typer.main.get_command(app)  # built once: each run below takes milliseconds


def run(root, args: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the command line, run in this process."""
    with CliRunner().isolation() as (out, err, _):
        try:
            root.main(args=args, prog_name="steerscope")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception as exc:  # a crash is what this test looks for: report it, do not stop
            code, err_text = -1, f"{type(exc).__name__}: {exc}"
            return code, out.getvalue().decode(), err_text
        return code, out.getvalue().decode(), err.getvalue().decode()


COMMANDS = [" ".join(p) for p, _ in commands()]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_with_a_bad_value_is_one_error_line(root, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STEERSCOPE_LLM_URL", raising=False)
    path = name.split()
    cmd = next(c for p, c in commands() if p == path)
    base = [*path, *base_args(cmd, tmp_path)]
    problems, tried = [], 0
    for param in cmd.params:
        if type(param).__name__ != "TyperOption" or param.is_flag or param.opts[0] == "--out":
            continue
        option, kind = param.opts[0], kind_of(cmd, param)
        for value in VALUES if kind is not None else ["", "abc"]:
            tried += 1
            args = [*base, option, value]
            code, stdout, stderr = run(root, args)
            lines = stderr.splitlines()
            if code != 2 or len(lines) != 1 or not lines[0].startswith("error: ") or "Traceback" in stdout + stderr:
                problems.append(f"{option}={value!r}: exit {code}, stderr {stderr[:300]!r}")
                continue
            if kind is not None and must_name(option, kind, value) and option not in lines[0]:
                problems.append(f"{option}={value!r}: the error does not name {option}: {lines[0]!r}")
    assert not problems, "\n".join(problems)


def must_name(option: str, kind: type, value: str) -> bool:
    """Whether the value must be refused before anything else, naming the option."""
    if value in ("abc", "", "nan", "-inf", "1e309"):
        return True
    if value == "99999999999999999999":
        return False  # huge but finite: refused by a bound or ending at the missing model
    if value == "0" and option in ZERO_OK:
        return False
    return option not in ZERO_OR_NEGATIVE_OK


def test_the_commands_are_all_here():
    assert {"horizon", "sae features", "generate", "serve", "maze train", "vectors inspect"} <= set(COMMANDS)
    assert math.isinf(float("1e309"))
