"""A results store that survives a crash: SQLite, one transaction per measured cell.

A cell is one (model, method, site, coefficient, n_pairs, seed, dataset, split). Writing a cell stores
one row per metric (mean value, bootstrap interval over items, the per-item values as JSON) and the
cell's completions, all in one transaction: after a crash a cell is either fully there or absent, so
a rerun that skips finished cells loses nothing and duplicates nothing ((cell, metric) is the key).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np

from ..core.errors import SteerscopeError
from ..core.runs import RunSettingsError, check_settings
from .stats import bootstrap_mean_ci

CELL_FIELDS = ("model", "method", "site", "coefficient", "n_pairs", "seed", "dataset", "split")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    cell TEXT NOT NULL, model TEXT, method TEXT, site TEXT, coefficient REAL, n_pairs INTEGER, seed INTEGER,
    dataset TEXT, split TEXT, metric TEXT NOT NULL, value REAL, ci_low REAL, ci_high REAL, n_items INTEGER,
    items TEXT, PRIMARY KEY (cell, metric));
CREATE TABLE IF NOT EXISTS samples (cell TEXT PRIMARY KEY, texts TEXT);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT);
"""


SettingsMismatchError = RunSettingsError  # a store written with other settings than the sweep that resumes it

#: the tables (and the columns of each) a steerscope results store holds
TABLES = {
    "results": {"cell", *CELL_FIELDS, "metric", "value", "ci_low", "ci_high", "n_items", "items"},
    "samples": {"cell", "texts"},
    "settings": {"name", "value"},
}


class NotAResultStoreError(SteerscopeError, ValueError):
    """A file given as sweep results that is missing, not SQLite, or a SQLite file without a store's tables."""


def _expected(path: Path) -> str:
    return f"give the results.sqlite a sweep wrote (tables {', '.join(TABLES)}), or the sweep's folder"


def _open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection (sqlite `mode=ro`) to an existing steerscope store; nothing is created or changed."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise NotAResultStoreError(f"no sweep results at {path}: it {what}; {_expected(path)}")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        found = {
            name: {row[1] for row in conn.execute(f"PRAGMA table_info({name})")}
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            if name in TABLES
        }
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise NotAResultStoreError(f"{path} is not a steerscope results store: not a SQLite file ({exc}); "
                                   f"{_expected(path)}") from None  # fmt: skip
    missing = [f"{t} table" if t not in found else f"{t}.{c}" for t, cols in TABLES.items()
               for c in (sorted(cols - found[t]) if t in found else [t])]  # fmt: skip
    if missing:
        conn.close()
        raise NotAResultStoreError(
            f"{path} is not a steerscope results store: it lacks {', '.join(missing)}; {_expected(path)}"
        )
    return conn


@dataclass(frozen=True)
class Cell:
    """What one measurement is of."""

    model: str
    method: str
    site: str
    coefficient: float
    n_pairs: int
    seed: int
    dataset: str
    split: str

    @property
    def key(self) -> str:
        return json.dumps([*astuple(self)[:3], float(self.coefficient), *astuple(self)[4:]])


def _summary(values: np.ndarray, n_boot: int) -> tuple[float, float, float]:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return float("nan"), float("nan"), float("nan")
    lo, hi = bootstrap_mean_ci(finite, n_boot=n_boot) if len(finite) > 1 else (float(finite[0]),) * 2
    return float(finite.mean()), lo, hi


class ResultStore:
    """Open (or create) a store; use as a context manager or call close().

    `read_only`: open an existing store for reading only (what `steerscope report` does): the file is opened
    with sqlite's `mode=ro`, so neither tables nor the journal mode are changed, and a missing file, a file that
    is not SQLite or one without a store's tables is a NotAResultStoreError naming the file.
    """

    def __init__(self, path: str | Path, n_boot: int = 1000, read_only: bool = False):
        self.path = Path(path)
        self.n_boot = n_boot
        self.read_only = read_only
        if read_only:
            self.conn = _open_read_only(self.path)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(_SCHEMA)

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    # --- settings --------------------------------------------------------------------------------

    def check_settings(self, settings: Mapping) -> None:
        """Record the settings that shape every value; refuse to mix results made with other settings."""
        rows = dict(self.conn.execute("SELECT name, value FROM settings"))
        new = {k: json.dumps(v, sort_keys=True) for k, v in settings.items()}
        if not rows:
            with self.conn:
                self.conn.executemany("INSERT INTO settings VALUES (?, ?)", new.items())
            return
        stored = {k: json.loads(v) for k, v in rows.items()}
        check_settings(stored, dict(settings), self.path, "pass --restart to start over, or restore the old settings")

    def settings(self) -> dict:
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT name, value FROM settings")}

    # --- cells -----------------------------------------------------------------------------------

    def done(self) -> set[str]:
        """Keys of the cells already stored."""
        return {row[0] for row in self.conn.execute("SELECT DISTINCT cell FROM results")}

    def write(self, cell: Cell, metrics: Mapping[str, Sequence[float]], texts: Sequence[str] | None = None) -> None:
        """Store a cell's metrics (per-item values) and completions in one transaction."""
        if not metrics:
            raise ValueError(f"cell {cell.key} has no metrics to store")
        rows = []
        for name, values in metrics.items():
            arr = np.asarray(values, dtype=np.float64).reshape(-1)
            mean, lo, hi = _summary(arr, self.n_boot)
            items = json.dumps([None if not np.isfinite(v) else round(float(v), 6) for v in arr])
            rows.append((cell.key, *astuple(cell), name, mean, lo, hi, int(np.isfinite(arr).sum()), items))
        with self.conn:
            self.conn.executemany(f"INSERT INTO results VALUES ({', '.join('?' * 15)})", rows)
            if texts is not None:
                self.conn.execute("INSERT INTO samples VALUES (?, ?)", (cell.key, json.dumps(list(texts))))

    def rows(self, **where) -> list[dict]:
        """Result rows (dicts; `items` decoded), filtered by equality on any column."""
        unknown = set(where) - {*CELL_FIELDS, "metric", "cell"}
        if unknown:
            raise ValueError(f"cannot filter on {sorted(unknown)}; columns: {', '.join((*CELL_FIELDS, 'metric'))}")
        clause = " AND ".join(f"{k} = ?" for k in where)
        query = "SELECT * FROM results" + (f" WHERE {clause}" if clause else "") + " ORDER BY rowid"
        cur = self.conn.execute(query, tuple(where.values()))
        names = [d[0] for d in cur.description]
        out = []
        for values in cur:
            row = dict(zip(names, values, strict=True))
            row["items"] = [np.nan if v is None else v for v in json.loads(row["items"])]
            out.append(row)
        return out

    def texts(self, cell: Cell) -> list[str] | None:
        found = self.conn.execute("SELECT texts FROM samples WHERE cell = ?", (cell.key,)).fetchone()
        return None if found is None else json.loads(found[0])


def cell_of(row: Mapping) -> Cell:
    """The Cell a result row belongs to."""
    return Cell(**{k: row[k] for k in CELL_FIELDS})
