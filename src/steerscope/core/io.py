"""Atomic file writes and output folders that never hold a half-written result."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def sha256_file(path: str | Path) -> str:
    """The sha256 of a whole file, as hex, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def atomic_folder(target: str | Path, replace: bool = False) -> Iterator[Path]:
    """`with atomic_folder(out) as tmp:` fill `tmp` (a new folder beside `out`); when the block ends without an
    error it becomes `out` in one rename, replacing an existing `out` only when `replace` is true (otherwise an
    existing one is refused before any work, and one that appears meanwhile makes the rename fail). On an error the
    temporary folder is removed and `out` is untouched."""
    target = Path(target)
    if target.exists() and not replace:
        raise FileExistsError(f"{target} exists; pass overwrite=True (CLI: --overwrite) or choose another folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        yield tmp
        if replace and target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def write_csv(path: str | Path, rows: list[dict]) -> None:
    """Rows of dicts (same keys) as CSV; list values are joined with ';'."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ";".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def save_train_state(
    path: str | Path,
    module: torch.nn.Module,
    opt: torch.optim.Optimizer,
    step: int,
    extra: dict,
    tensors: dict[str, torch.Tensor] | None = None,
) -> None:
    """Weights, optimizer moments, step and `extra` (JSON) in one safetensors file, written atomically.

    `tensors`: further named tensors to keep (e.g. running counters), restored by `load_train_state`.
    """
    out = {f"model.{k}": v.detach().contiguous() for k, v in module.state_dict().items()}
    state = opt.state_dict()
    for idx, slots in state["state"].items():
        for key, value in slots.items():
            out[f"optim.{idx}.{key}"] = torch.as_tensor(value).contiguous()
    out.update({f"extra.{k}": v.detach().contiguous() for k, v in (tensors or {}).items()})
    header = {"step": step, "param_groups": state["param_groups"], **extra}
    atomic_write_bytes(path, save(out, metadata={"steerscope": json.dumps(header)}))


def load_train_state(
    path: str | Path, module: torch.nn.Module, opt: torch.optim.Optimizer
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Restore what `save_train_state` wrote into `module` and `opt`; returns the header and the extra tensors."""
    with safe_open(str(path), "pt") as fh:
        header = json.loads(fh.metadata()["steerscope"])
    stored = load_file(path)
    module.load_state_dict({k[6:]: v for k, v in stored.items() if k.startswith("model.")})
    slots: dict[int, dict] = {}
    for key, value in stored.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            slots.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": slots, "param_groups": header["param_groups"]})
    return header, {k[6:]: v for k, v in stored.items() if k.startswith("extra.")}
