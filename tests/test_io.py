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
