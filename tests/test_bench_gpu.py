"""benchmarks/bench_gpu.py (written for a GPU) runs on the CPU with its tiny config and prints every ratio."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent.parent / "benchmarks" / "bench_gpu.py"


def test_bench_gpu_runs_on_the_cpu_with_a_tiny_config():
    run = subprocess.run([sys.executable, str(BENCH), "--tiny"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    ratios = [line for line in lines if "steered/bare throughput" in line]
    assert [line.split("batch")[1].split("x")[0].strip() for line in ratios] == ["1", "32", "256"]
    assert any("extraction/full-forward time" in line for line in lines)
    assert any(line.strip().startswith("horizon sweep") and "ratio" in line for line in lines)
    for line in ratios:
        assert 0 < float(line.rsplit(" ", 1)[1]) < 10, line
