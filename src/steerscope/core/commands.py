"""The `steerscope ...` command lines that redo a result (printed in reports, the playground's result files and the
demo), built in one place so that they are always quoted the same way and can be checked against the CLI.

`command("generate", "default", vector="v.safetensors", coefficient=[4, -4], sample=True)` gives
`steerscope generate default --vector v.safetensors --coefficient 4 --coefficient -4 --sample`: keywords become
`--kebab-case` options, a list repeats its option, True is a bare flag, False and None leave the option out, and
every value is shell-quoted.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

__all__ = ["command", "command_args"]


def _text(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def command_args(name: str, *positional: object, **options: object) -> list[str]:
    """The argument list (starting with 'steerscope') of `steerscope NAME POSITIONAL... --OPTION VALUE...`."""
    args = ["steerscope", *name.split(), *(_text(p) for p in positional)]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, Sequence) and not isinstance(value, str):
            for item in value:
                args += [flag, _text(item)]
        else:
            args += [flag, _text(value)]
    return args


def command(name: str, *positional: object, **options: object) -> str:
    """`command_args` as one shell-quoted line."""
    return shlex.join(command_args(name, *positional, **options))
