"""Reading files a user gives (pairs, texts, configs, prompt lists, A/B items): one helper, one message shape.

Every failure is a `UserFileError` whose one line says the file, what is wrong, what was expected and how to fix
it: "data.jsonl:3: not valid JSON (Expecting value, column 1); expected one JSON object per line; <fix>".
A file that is not UTF-8 text (binary, another encoding), broken JSON or a missing file never surfaces as the
decoder's own message without the file's name.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import SteerscopeError

__all__ = ["UserFileError", "file_error", "read_json", "read_jsonl", "read_text"]


class UserFileError(SteerscopeError, ValueError):
    """A file given by the user that cannot be read as what it should hold."""


def file_error(where: str | Path, problem: str, expected: str, fix: str, error: type = UserFileError) -> Exception:
    """The one message shape: where (file, or file:line), the problem, what was expected, the fix. `error`: the
    reader's own subclass of SteerscopeError (e.g. PairDataError), UserFileError by default."""
    return error(f"{where}: {problem}; expected {expected}; {fix}")


def read_text(path: str | Path, expected: str, fix: str, error: type = UserFileError) -> str:
    """The file's text (UTF-8, a leading BOM dropped), refused when missing, a folder, binary or not UTF-8."""
    path = Path(path)
    if path.is_dir():
        raise file_error(path, "is a folder, not a file", expected, fix, error)
    if not path.is_file():
        raise file_error(path, "no such file", expected, fix, error)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise file_error(path, f"cannot be read ({exc.strerror or exc})", expected, fix, error) from None
    if b"\x00" in data:
        raise file_error(path, "is a binary file (it holds NUL bytes), not text", expected, fix, error)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise file_error(
            path, f"is not UTF-8 text (byte {exc.start} cannot be decoded); save it as UTF-8", expected, fix, error
        ) from None


def _json(text: str, where: str, expected: str, fix: str, first_line: int = 1, error: type = UserFileError) -> object:
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        line = first_line + exc.lineno - 1
        raise file_error(
            f"{where}:{line}", f"not valid JSON ({exc.msg}, column {exc.colno})", expected, fix, error
        ) from None
    except ValueError as exc:  # NaN / Infinity, or a number too deep to parse
        raise file_error(f"{where}:{first_line}", f"not valid JSON ({exc})", expected, fix, error) from None
    except RecursionError:
        raise file_error(where, "not valid JSON (nested too deeply)", expected, fix, error) from None


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def read_json(path: str | Path, expected: str, fix: str, error: type = UserFileError) -> object:
    """The file's one JSON value."""
    return _json(read_text(path, expected, fix, error), str(path), expected, fix, 1, error)


def read_jsonl(path: str | Path, expected: str, fix: str, error: type = UserFileError) -> list[tuple[object, int]]:
    """(value, line number) of every non-blank line of a JSON-lines file."""
    text = read_text(path, expected, fix, error)
    return [
        (_json(line, str(path), expected, fix, n, error), n)
        for n, line in enumerate(text.splitlines(), 1)
        if line.strip()
    ]
