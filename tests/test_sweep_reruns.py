"""Issue 19, points 7 and 8: `steerscope report` only reads its results (a foreign file is a clear error and
keeps its bytes; the report folder is staged and swapped in), and a sweep rerun with another grid is refused
naming each setting that differs, never merged into the old results (unfinished `<out>.partial`, finished
folder, and the store itself)."""

import hashlib
import shutil
import sqlite3

import pytest
from sweep_fixtures import one_thread, tiny_config, write_tiny_dataset  # noqa: F401  (fixture)
from tiny_models import tiny_model
from typer.testing import CliRunner

from steerscope.cli import app
from steerscope.core.errors import SteerscopeError
from steerscope.core.runs import OutputExistsError, RunSettingsError
from steerscope.evaluate.store import NotAResultStoreError, ResultStore
from steerscope.sweep import report as report_mod
from steerscope.sweep.report import sweep_report
from steerscope.sweep.runner import STORE_NAME, SweepRunner, run_sweep

SMALL = {"methods": ["mean_diff"], "sites": ["resid_pre.1"], "n_pairs": [1], "seeds": [0], "coefficients": [1.0]}


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama", tokenizer=True)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, lm):
    """One finished tiny sweep (its folder) and its config."""
    folder = tmp_path_factory.mktemp("finished")
    config = tiny_config(folder, **SMALL)
    run_sweep(config, folder / "out", models={"tiny": lm})
    return folder, config


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def unfinished(tmp_path_factory, lm):
    """A sweep stopped after its first cell: its results are in `<out>.partial/`."""
    folder = tmp_path_factory.mktemp("unfinished")
    config = tiny_config(folder, **SMALL)

    def stop(cell):
        raise Stop

    runner = SweepRunner(config, folder / "out", on_cell=stop, models={"tiny": lm})
    with pytest.raises(Stop):
        runner.run()
    runner.store.close()  # as a process that died would have it: no connection left open
    assert (folder / "out.partial" / STORE_NAME).is_file() and not (folder / "out").exists()
    return folder, config


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(folder) -> dict:
    return {str(p.relative_to(folder)): _digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_error_line(result, *needles):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.output
    text = " ".join(lines)
    for needle in needles:
        assert needle in text, (needle, result.output)
    assert "Traceback" not in result.output


# --- point 7: the report reads, never writes, what it reports ------------------------------------------------


def _empty_sqlite(path):
    path.write_bytes(b"")


def _foreign_sqlite(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE people (name TEXT)")
    conn.execute("INSERT INTO people VALUES ('ada')")
    conn.commit()
    conn.close()


def _partial_store(path):  # a results table, but not the other two
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE results (cell TEXT, metric TEXT)")
    conn.commit()
    conn.close()


def _wrong_columns(path):  # every table, one without its columns
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE results (x TEXT); CREATE TABLE samples (cell TEXT, texts TEXT);"
        "CREATE TABLE settings (name TEXT, value TEXT);"
    )
    conn.close()


def _not_sqlite(path):
    path.write_bytes(b"this is a text file, not a database\n" * 200)


def _random_bytes(path):
    path.write_bytes(bytes(range(256)) * 64)


def _json_file(path):
    path.write_text('{"results": []}')


FOREIGN = {
    "empty file": (_empty_sqlite, "lacks results table"),
    "foreign sqlite": (_foreign_sqlite, "lacks results table"),
    "results table only": (_partial_store, "lacks results."),
    "wrong columns": (_wrong_columns, "results.coefficient"),
    "text file": (_not_sqlite, "not a SQLite file"),
    "random bytes": (_random_bytes, "not a SQLite file"),
    "json file": (_json_file, "not a SQLite file"),
}


@pytest.mark.parametrize("kind", FOREIGN)
@pytest.mark.parametrize("given", ["file", "folder"])
def test_report_on_a_foreign_file_is_refused_and_leaves_it_unchanged(tmp_path, kind, given):
    make, problem = FOREIGN[kind]
    folder = tmp_path / "results"
    folder.mkdir()
    store = folder / STORE_NAME
    make(store)
    before, files_before = _digest(store), sorted(p.name for p in folder.iterdir())
    target = store if given == "file" else folder
    with pytest.raises(NotAResultStoreError, match="not a steerscope results store") as err:
        sweep_report(target)
    assert str(store) in str(err.value) and problem in str(err.value)
    assert isinstance(err.value, SteerscopeError)
    result = CliRunner().invoke(app, ["report", str(target)])
    _one_error_line(result, "not a steerscope results store")
    assert _digest(store) == before, "the report must not change what it reads"
    assert sorted(p.name for p in folder.iterdir()) == files_before, "nothing written next to it (no report, no WAL)"


@pytest.mark.parametrize(
    "where",
    ["missing file", "missing folder", "folder without a store", "store is a folder"],
)
def test_report_on_missing_results_is_one_clear_error(tmp_path, where):
    target = {
        "missing file": tmp_path / "nothing.sqlite",
        "missing folder": tmp_path / "nowhere",
        "folder without a store": tmp_path,
        "store is a folder": tmp_path / "nested" / STORE_NAME,
    }[where]
    if where == "store is a folder":
        target.mkdir(parents=True)
    with pytest.raises(NotAResultStoreError, match="no sweep results"):
        sweep_report(target)
    _one_error_line(CliRunner().invoke(app, ["report", str(target)]), "no sweep results")
    assert not (tmp_path / "report").exists()


def test_read_only_store_refuses_missing_and_opens_a_real_store_without_changing_it(finished):
    folder, _ = finished
    store = folder / "out" / STORE_NAME
    before = _digest(store)
    with ResultStore(store, read_only=True) as s:
        assert s.rows() and s.settings()["methods"] == ["mean_diff"]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            s.conn.execute("DELETE FROM results")
    assert _digest(store) == before
    with pytest.raises(NotAResultStoreError, match="does not exist"):
        ResultStore(folder / "absent.sqlite", read_only=True)
    assert not (folder / "absent.sqlite").exists()


def test_report_is_staged_rerun_replaces_it_and_the_store_keeps_its_bytes(finished, monkeypatch):
    folder, _ = finished
    store = folder / "out" / STORE_NAME
    before = _digest(store)
    report = sweep_report(folder / "out", n_boot=20)
    assert report == folder / "out" / "report" and (report / "index.html").is_file()
    assert _digest(store) == before
    first = _tree(report)
    (report / "stale.txt").write_text("from an older report")
    # A report killed midway leaves the old report as it was, and nothing half-written in its place.
    monkeypatch.setattr(report_mod.html, "page", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        sweep_report(folder / "out", n_boot=20)
    assert _tree(report) == {**first, "stale.txt": _digest(report / "stale.txt")}
    monkeypatch.undo()
    again = CliRunner().invoke(app, ["report", str(folder / "out"), "--n-boot", "20"])  # a rerun replaces it whole
    assert again.exit_code == 0, again.output
    assert not (report / "stale.txt").exists() and (report / "index.html").is_file()
    assert not (folder / "out" / "report.partial").exists()
    assert _digest(store) == before


def test_report_refuses_an_out_that_is_not_a_report_unless_overwrite(finished, tmp_path):
    folder, _ = finished
    mine = tmp_path / "my_files"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="not a steerscope sweep report"):
        sweep_report(folder / "out", mine, n_boot=20)
    result = CliRunner().invoke(app, ["report", str(folder / "out"), "--out", str(mine), "--n-boot", "20"])
    _one_error_line(result, "not a steerscope sweep report", "--overwrite")
    assert (mine / "notes.txt").read_text() == "keep me"
    result = CliRunner().invoke(
        app, ["report", str(folder / "out"), "--out", str(mine), "--n-boot", "20", "--overwrite"]
    )
    assert result.exit_code == 0, result.output
    assert (mine / "index.html").is_file() and not (mine / "notes.txt").exists()


def test_report_never_replaces_the_folder_it_reads(finished, tmp_path):
    folder, _ = finished
    copy = tmp_path / "results"
    shutil.copytree(folder / "out", copy)
    before = _tree(copy)
    for extra in ([], ["--overwrite"]):
        result = CliRunner().invoke(app, ["report", str(copy), "--out", str(copy), "--n-boot", "20", *extra])
        _one_error_line(result, "holds the results it reports")
    assert _tree(copy) == before


# --- point 8: another grid is refused, never merged -------------------------------------------------------------


def _changed(folder):
    """Each setting a rerun may change: (the config override, the setting named in the refusal)."""
    other_dataset = {"otherset": write_tiny_dataset(folder)}
    return {
        "methods": ({"methods": ["mean_diff", "actadd"]}, 'methods: ["mean_diff"] -> ["mean_diff", "actadd"]'),
        "coefficients": ({"coefficients": [1.0, 2.0]}, "coefficients: [1.0] -> [1.0, 2.0]"),
        "sites": ({"sites": ["resid_pre.2"]}, 'sites: ["resid_pre.1"] -> ["resid_pre.2"]'),
        "n_pairs": ({"n_pairs": [1, 2]}, "n_pairs: [1] -> [1, 2]"),
        "seeds": ({"seeds": [0, 1]}, "seeds: [0] -> [0, 1]"),
        "datasets": ({"datasets": other_dataset}, 'datasets: ["tinyset"] -> ["otherset"]'),
        "models": ({"models": ["tiny", "tiny2"]}, 'models: ["tiny"] -> ["tiny", "tiny2"]'),
        "baselines": ({"baselines": ["unsteered"]}, "baselines: "),
        "random_n_pairs": ({"random_n_pairs": 1}, "random_n_pairs: 0 -> 1"),
        "n_boot": ({"n_boot": 50}, "n_boot: 100 -> 50"),
        "generation": ({"generation": {"max_new_tokens": 5, "batch_size": 3}}, "generation.max_new_tokens: 4 -> 5"),
        "selection": ({"selection": {"max_fluency_cost": 1.0}}, "selection.max_fluency_cost: 2.0 -> 1.0"),
        "method_options": ({"method_options": {}}, "method_options"),
    }


KEYS = [
    "methods",
    "coefficients",
    "sites",
    "n_pairs",
    "seeds",
    "datasets",
    "models",
    "baselines",
    "random_n_pairs",
    "n_boot",
    "generation",
    "selection",
    "method_options",
]


@pytest.mark.parametrize("key", KEYS)
def test_rerun_of_an_unfinished_sweep_with_another_setting_is_refused(unfinished, lm, key):
    folder, _ = unfinished
    override, named = _changed(folder)[key]
    store = folder / "out.partial" / STORE_NAME
    before = _tree(folder / "out.partial")
    other = tiny_config(folder, **{**SMALL, **override})
    with pytest.raises(RunSettingsError, match="other settings") as err:
        SweepRunner(other, folder / "out", models={"tiny": lm})
    assert named in str(err.value) and "--restart" in str(err.value)
    assert _tree(folder / "out.partial") == before and store.is_file(), "nothing merged into the old results"


@pytest.mark.parametrize("key", KEYS)
def test_rerun_into_a_finished_sweep_with_another_setting_is_refused(finished, lm, key):
    folder, _ = finished
    override, named = _changed(folder)[key]
    before = _digest(folder / "out" / STORE_NAME)
    other = tiny_config(folder, **{**SMALL, **override})
    with pytest.raises(RunSettingsError, match="other settings") as err:
        run_sweep(other, folder / "out", models={"tiny": lm})
    assert named in str(err.value) and "--overwrite" in str(err.value)
    assert _digest(folder / "out" / STORE_NAME) == before


@pytest.mark.parametrize("key", KEYS)
def test_the_store_itself_refuses_other_settings(tmp_path, key):
    override, named = _changed(tmp_path)[key]
    old = tiny_config(tmp_path, **SMALL).settings()
    new = tiny_config(tmp_path, **{**SMALL, **override}).settings()
    with ResultStore(tmp_path / STORE_NAME) as store:
        store.check_settings(old)
        with pytest.raises(RunSettingsError, match="other settings") as err:
            store.check_settings(new)
        assert named in str(err.value)
        store.check_settings(old)  # the same settings resume


def test_cli_sweep_rerun_with_another_grid_is_one_error_line(tmp_path):
    from tiny_models import save_tiny

    save_tiny(tmp_path / "model", "llama")
    data = {
        "models": [str(tmp_path / "model")],
        **SMALL,
        "datasets": {"tinyset": write_tiny_dataset(tmp_path)},
        "generation": {"max_new_tokens": 2, "batch_size": 4},
        "side_effects": {"enabled": False},
        "baselines": ["unsteered"],
        "n_boot": 20,
    }
    import yaml

    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "results"
    first = CliRunner().invoke(app, ["sweep", str(config), "--out", str(out), "--no-report", "--threads", "1"])
    assert first.exit_code == 0, first.output
    before = _digest(out / STORE_NAME)
    config.write_text(yaml.safe_dump({**data, "coefficients": [1.0, 8.0]}))
    again = CliRunner().invoke(app, ["sweep", str(config), "--out", str(out), "--no-report", "--threads", "1"])
    _one_error_line(again, "coefficients: [1.0] -> [1.0, 8.0]")
    assert _digest(out / STORE_NAME) == before
    # --overwrite replaces the old results whole: the new store holds only the new grid
    replaced = CliRunner().invoke(
        app, ["sweep", str(config), "--out", str(out), "--no-report", "--overwrite", "--threads", "1"]
    )
    assert replaced.exit_code == 0, replaced.output
    with ResultStore(out / STORE_NAME, read_only=True) as store:
        assert store.settings()["coefficients"] == [1.0, 8.0]
