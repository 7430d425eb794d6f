"""`norms` / `horizon` with one Ray task per model (real Ray workers) write the folder a run in one process writes."""

import json

from tiny_models import save_tiny

from steerscope.core.cluster import RaySpec
from steerscope.depth.run import DepthRun, TextSpec, run_horizon


def _run(folder, out):
    text = TextSpec(source=str(folder / "text.txt"), n=4, seq_len=12, batch_size=2)
    return DepthRun(models=[str(folder / "llama"), str(folder / "gpt_neox")], out=folder / out, text=text, n_boot=50)


def test_horizon_of_two_models_on_ray_equals_the_run_in_one_process(tmp_path, ray_instance):
    save_tiny(tmp_path / "llama", "llama")
    save_tiny(tmp_path / "gpt_neox", "gpt_neox")
    (tmp_path / "text.txt").write_text("\n\n".join(" ".join(f"w{(i * 7 + j) % 90 + 2}" for j in range(30))
                                                   for i in range(6)))  # fmt: skip
    here, rows_here = run_horizon(_run(tmp_path, "here"), ks=[1, 2, 3])
    there, rows_there = run_horizon(_run(tmp_path, "there"), ks=[1, 2, 3], cluster=RaySpec(cpus_per_worker=1))
    assert rows_there == rows_here
    files = lambda root: sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())  # noqa: E731
    assert files(there) == files(here)  # each model's subfolder, the summary and the page; no task folder left
    for model in ("llama", "gpt_neox"):
        a, b = (json.loads((root / model / "horizon.json").read_text()) for root in (here, there))
        assert a["per_k"] == b["per_k"] and a["fingerprint"] == b["fingerprint"]
