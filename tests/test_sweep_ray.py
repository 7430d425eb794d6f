"""Sweeps on real Ray workers (a local Ray instance started here): the same rows as in one process, a worker killed
by its PID mid-sweep, a killed driver rerun, a failing model recorded while the others go on, and the clear errors
for Ray missing and an address nobody answers at."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import ray
from cli_checks import bad
from sweep_fixtures import one_thread, tiny_config  # noqa: F401  (fixture)
from tiny_models import save_tiny

from steerscope.core.cluster import ClusterUnreachableError, RaySpec, check_reachable
from steerscope.evaluate.store import ResultStore
from steerscope.sweep.config import ConfigError
from steerscope.sweep.engines import RayEngine
from steerscope.sweep.runner import FAILURES_NAME, STORE_NAME, SweepIncompleteError, run_sweep


@pytest.fixture(scope="module")
def cluster(ray_instance):
    """One two-worker engine that the module's sweeps share (the third CPU: the killed driver's worker)."""
    engine = RayEngine(RaySpec(workers=2))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray")
    save_tiny(folder / "tiny", "llama")
    return folder


def _config(data, **overrides):
    base = {"models": [str(data / "tiny")], "methods": ["mean_diff"], "sites": ["resid_pre.1"], "n_pairs": [1, 4]}
    return tiny_config(data, **{**base, **overrides})


@pytest.fixture(scope="module")
def in_process(data):
    """The same sweep in this process: what every Ray run must reproduce."""
    return _contents(run_sweep(_config(data), data / "in-process"))


def _contents(store_path: Path) -> dict:
    """(cell, metric) -> (value, items) and cell -> completions; also the raw row count (duplicates would show)."""
    with ResultStore(store_path) as store:
        rows = store.rows()
        texts = dict(store.conn.execute("SELECT cell, texts FROM samples"))
    values = {(r["cell"], r["metric"]): (r["value"], r["items"]) for r in rows if "seconds" not in r["metric"]}
    folder = store_path.parent
    fits = sorted(json.loads((folder / "fits.json").read_text()))  # what was fitted, also by warm workers
    models = sorted(json.loads((folder / "provenance.json").read_text())["models"])
    return {"values": values, "texts": texts, "n_rows": len(rows), "cells": {r["cell"] for r in rows}, "fits": fits,
            "models": models}  # fmt: skip


def _max_diff(a: dict, b: dict) -> float:
    assert a["values"].keys() == b["values"].keys()
    diffs = [abs(np.nan_to_num(x[0]) - np.nan_to_num(y[0])) for x, y in zip(a["values"].values(),
             (b["values"][k] for k in a["values"]), strict=True)]  # fmt: skip
    return max(diffs)


def _same(a: dict, b: dict) -> None:
    assert a["cells"] == b["cells"] and a["n_rows"] == b["n_rows"], "every cell exactly once"
    assert _max_diff(a, b) == 0.0
    assert a["texts"] == b["texts"]
    assert a["fits"] == b["fits"] and a["models"] == b["models"]


def test_a_sweep_on_two_ray_workers_gives_the_rows_of_one_process(cluster, data, in_process):
    config = replace(_config(data), ray=RaySpec(workers=2))
    on_ray = _contents(run_sweep(config, data / "on-ray", engine=cluster))
    _same(in_process, on_ray)
    assert len(cluster.pids) == 2


def test_a_worker_killed_mid_sweep_is_replaced_and_its_cell_retried(cluster, data, in_process):
    stored, killed = [], []

    def kill_one_worker(cell):
        stored.append(cell)
        if len(stored) == 6:
            pid = sorted(cluster.pids.values())[0]
            os.kill(pid, signal.SIGKILL)  # the worker process itself, by its PID
            killed.append(pid)

    path = run_sweep(_config(data), data / "killed-worker", engine=cluster, on_cell=kill_one_worker)
    after = _contents(path)
    assert killed and killed[0] not in cluster.pids.values()
    assert len(cluster.pids) + len(cluster.starting) == 2, "the dead worker was replaced"
    _same(in_process, after)  # no cell lost, none twice, same values as the uninterrupted run
    assert len(after["cells"]) == len(stored)


DRIVER = """
import os, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from dataclasses import replace
from sweep_fixtures import tiny_config
from steerscope.core.cluster import ClusterUnreachableError, RaySpec, check_reachable
from steerscope.sweep.runner import run_sweep
config = tiny_config(Path({data!r}), models=[{model!r}], methods=["mean_diff"], sites=["resid_pre.1"], n_pairs=[1, 4])
config = replace(config, ray=RaySpec(workers=1, address={address!r}))
count = []
def on_cell(cell):
    count.append(cell)
    if len(count) == 7:
        os._exit(9)  # the driver dies: no clean-up, no close
run_sweep(config, Path({out!r}), on_cell=on_cell)
"""


def test_a_killed_driver_is_resumed_by_the_same_command(cluster, data, in_process):
    out = data / "killed-driver"
    address = ray.get_runtime_context().gcs_address
    script = DRIVER.format(tests=str(Path(__file__).parent), data=str(data), model=str(data / "tiny"),
                           address=address, out=str(out))  # fmt: skip
    driver = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert driver.returncode == 9, driver.stderr[-3000:]
    before = _contents(out.with_name("killed-driver.partial") / STORE_NAME)
    assert len(before["cells"]) == 7
    resumed = []
    after = _contents(run_sweep(_config(data), out, engine=cluster, on_cell=resumed.append))
    _same(in_process, after)
    assert len(resumed) == len(after["cells"]) - 7, "the cells the killed driver stored are not measured again"


def test_a_failing_model_is_recorded_and_the_other_cells_go_on(cluster, data, in_process):
    broken = data / "broken"
    shutil.copytree(data / "tiny", broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated: loading it raises on the worker
    config = _config(data, models=[str(data / "tiny"), str(broken)])
    out = data / "with-failures"
    with pytest.raises(SweepIncompleteError, match="2 cell.s. failed .2 x ModelLoadError") as err:
        run_sweep(config, out, engine=cluster)
    assert "rerun the same command" in str(err.value)
    partial = out.with_name("with-failures.partial")
    report = json.loads((partial / FAILURES_NAME).read_text())
    assert {(f["model"], f["method"], f["split"]) for f in report["failed"]} == {
        (str(broken), "unsteered", "validation"),
        (str(broken), "unsteered", "test"),
    }
    assert all("corrupt" in f["error"] and f["traceback"] for f in report["failed"])
    assert report["not_measured"], "the broken model's other cells wait for the baselines they need"
    stored = _contents(partial / STORE_NAME)
    tiny_only = {k: v for k, v in stored["values"].items() if json.loads(k[0])[0] == str(data / "tiny")}
    assert {json.loads(k[0])[0] for k in stored["values"]} == {str(data / "tiny")}
    assert tiny_only == in_process["values"], "the healthy model's cells are all there, unchanged"
    shutil.copy(data / "tiny" / "model.safetensors", weights)  # repaired: the same command measures the rest
    run_sweep(config, out, engine=cluster)
    assert not (out / FAILURES_NAME).exists()


def test_without_ray_installed_the_error_names_the_extra(data, monkeypatch):
    (data / "sweep.toml").write_text('sites = ["resid_pre.1"]\ncoefficients = [1.0]\nn_pairs = [1]\n')
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError, as without the package
    bad(["sweep", data / "sweep.toml", "--ray", "--out", data / "no-ray"], "pip install 'steerscope[ray]'")


def test_an_unreachable_address_is_one_error_naming_it_within_seconds(data):
    with pytest.raises(ClusterUnreachableError, match="127.0.0.1:9 .*ray start --head --port=9"):
        check_reachable("127.0.0.1:9")  # a closed port: refused at once
    (data / "sweep.toml").write_text('sites = ["resid_pre.1"]\ncoefficients = [1.0]\nn_pairs = [1]\n')
    address = "192.0.2.1:6379"  # a documentation address nobody routes: the connection attempt times out
    start = time.monotonic()
    run = subprocess.run(  # a fresh process: this one is already connected to the module's Ray
        [
            sys.executable,
            "-c",
            "from steerscope.cli import app; app()",
            "sweep",
            str(data / "sweep.toml"),
            "--ray",
            "--address",
            address,
            "--out",
            str(data / "unreachable"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), run.stderr[-2000:]
    assert address in lines[0] and "ray start --head" in lines[0]
    assert time.monotonic() - start < 60
    assert not (data / "unreachable.partial").exists(), "nothing is written before the cluster answers"


def test_an_ab_sweep_asked_to_run_on_ray_is_refused(tmp_path):
    from test_sweep_ab import _config as ab_config  # A/B sweeps (CAA items) have their own in-process runner

    with pytest.raises(ConfigError, match="A/B sweeps .* not on Ray; drop --ray"):
        run_sweep(replace(ab_config(tmp_path), ray=RaySpec(workers=2)), tmp_path / "ab")
    assert not (tmp_path / "ab.partial").exists()
