"""The results browser: the finished run folders under --runs, what kind of run each is, and its files."""

from __future__ import annotations

import json
from pathlib import Path

#: marker file -> kind of run, first match wins (a depth run's summary.json names its kind itself)
MARKERS = (
    ("demo.json", "demo"),
    ("report.json", "sweep report"),
    ("results.sqlite", "sweep"),
    ("direction.safetensors", "refusal"),
    ("sae_weights.safetensors", "sae"),
    ("p_cheese.csv", "maze cheese vector"),
    ("policy.json", "maze policy"),
)
SETTINGS = "run_settings.json"
MAX_DEPTH = 3
MAX_RUNS = 500


def kind_of(folder: Path) -> str | None:
    """The kind of run a folder holds, or None when it holds no run."""
    for marker, kind in MARKERS:
        if (folder / marker).is_file():
            return kind
    summary = folder / "summary.json"
    if summary.is_file():
        try:
            named = json.loads(summary.read_text(encoding="utf-8")).get("kind")
        except (ValueError, AttributeError, OSError):
            named = None
        return str(named) if named else "run"
    return "run" if (folder / SETTINGS).is_file() or (folder / "index.html").is_file() else None


def list_runs(root: Path | None) -> list[dict]:
    """Finished runs under `root` (unfinished `.partial` folders and hidden ones left out), nested ones too."""
    if root is None or not root.is_dir():
        return []
    found: list[dict] = []

    def walk(folder: Path, depth: int) -> None:
        for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()):
            if child.name.startswith(".") or child.name.endswith((".partial", ".old")) or len(found) >= MAX_RUNS:
                continue
            kind = kind_of(child)
            if kind:
                files = sorted(p.name for p in child.iterdir() if p.is_file())
                name = child.relative_to(root).as_posix()
                found.append({"name": name, "kind": kind, "report": "index.html" in files, "files": files})
            if depth < MAX_DEPTH:
                walk(child, depth + 1)

    walk(root, 1)
    return found
