"""Files served from the folders the server was given, and nothing outside them."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from .errors import NotFound


def inside(root: Path | None, name: str) -> Path:
    """The existing file `root/name`; NotFound for an absolute name, a '..' part, a backslash, or a path (a link
    too) that resolves outside `root`, so a request can only reach files in the folder."""
    if root is None:
        raise NotFound("this server was started without that folder")
    parts = PurePosixPath(name).parts
    if not name or "\\" in name or "\x00" in name or PurePosixPath(name).is_absolute() or ".." in parts:
        raise NotFound(f"no file {name!r}")
    base = root.resolve()
    target = base.joinpath(*parts).resolve()
    if not target.is_relative_to(base) or not target.is_file():
        raise NotFound(f"no file {name!r}")
    return target
