"""Atomic writes and result folders."""

import json
import os

import pytest

from steerscope.core.io import write_csv, write_json
from steerscope.core.runs import OutputFolder


def test_atomic_writes_leave_only_the_file(tmp_path):
    write_json(tmp_path / "a.json", {"x": [1, 2]})
    write_csv(tmp_path / "a.csv", [{"k": 1, "ci": [0.5, 1.5]}])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.json"]
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2]}
    assert (tmp_path / "a.csv").read_text().splitlines() == ["k,ci", "1,0.5;1.5"]
    assert oct(os.stat(tmp_path / "a.json").st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    current = os.umask(0)
    os.umask(current)
    return current


def test_output_folder_appears_only_when_complete(tmp_path):
    out = tmp_path / "res"
    folder = OutputFolder(out)
    write_json(folder.path("m", "r.json"), {"ok": True})
    assert not out.exists() and (tmp_path / "res.partial" / "m" / "r.json").is_file()
    folder.commit()
    assert (out / "m" / "r.json").is_file() and not (tmp_path / "res.partial").exists()
    with pytest.raises(FileExistsError, match="already exists"):
        OutputFolder(out)
    again = OutputFolder(out, overwrite=True)
    write_json(again.path("new.json"), {})
    assert (out / "m" / "r.json").is_file(), "the old results stay until the new ones are complete"
    again.commit()
    assert sorted(p.name for p in out.iterdir()) == ["new.json"]


def test_atomic_folder_is_all_or_nothing(tmp_path):
    """A finished block renames the folder into place; an error leaves nothing; an existing folder is kept unless
    replacing is asked for, and is replaced only once the new one is complete."""
    from steerscope.core.io import atomic_folder

    out = tmp_path / "model"
    with atomic_folder(out) as tmp:
        (tmp / "a.txt").write_text("first")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "first"
    with pytest.raises(FileExistsError, match="overwrite"), atomic_folder(out):
        pass
    with pytest.raises(RuntimeError), atomic_folder(out, replace=True) as tmp:
        (tmp / "a.txt").write_text("second")
        raise RuntimeError("crash while writing")
    assert (out / "a.txt").read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with atomic_folder(out, replace=True) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
