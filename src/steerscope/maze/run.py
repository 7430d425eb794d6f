"""Runner for `steerscope maze cheese-vector`: P(cheese | decision square) with and without the cheese vector.

One run folder (core.runs.RunFolder): results.json (every variant per maze, the policy and its metadata),
p_cheese.csv, p_cheese_histogram.png and vector_fields.png, written in `<out>.partial/` and moved into place
when complete; an existing `<out>` is refused unless `overwrite`; an unfinished run with other settings is
refused, naming them, unless `restart`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from .._version import __version__
from ..core.io import write_csv, write_json
from ..core.runs import RunFolder
from ..core.validate import check_coefficient, whole
from .cheese import DEFAULT_SITE, VARIANTS, cheese_experiment, cheese_vectors, decision_mazes
from .figures import histogram_figure, vector_field_figure
from .impala import load_any_policy


@dataclass(frozen=True)
class CheeseRun:
    """The cheese-vector experiment: which policy, where, how strongly, on how many test mazes."""

    policy: Path
    out: Path
    site: str = DEFAULT_SITE
    coefficient: float = -1.0
    n_mazes: int = 100
    seed: int = 0
    vector_mouse: str = "start"  # mouse square when the vector is computed: start or decision
    figures: int = 3  # mazes to draw vector fields for
    overwrite: bool = False
    restart: bool = False  # discard an unfinished run in `<out>.partial` made with other settings

    def __post_init__(self) -> None:
        """Refuse bad numbers before any work: a NaN/inf coefficient, no mazes, a negative seed or figure count."""
        check_coefficient(self.coefficient, "the cheese-vector coefficient (--coefficient)")
        whole(self.n_mazes, "n_mazes (--n-mazes)", 1)
        whole(self.seed, "seed (--seed)", 0)
        whole(self.figures, "figures (--figures)", 0)
        if self.vector_mouse not in ("start", "decision"):
            raise ValueError(f"vector_mouse (--vector-mouse) must be start or decision, got {self.vector_mouse!r}")

    def settings(self, net: torch.nn.Module) -> dict:
        """What the results depend on, the policy's weights included."""
        digest = hashlib.sha256()
        for name, tensor in sorted(net.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        keep = ("site", "coefficient", "n_mazes", "seed", "vector_mouse", "figures")
        return (
            {"policy": str(self.policy), "policy_fingerprint": digest.hexdigest()[:16]}
            | {k: getattr(self, k) for k in keep}
            | {"version": __version__}
        )


def run_cheese(
    run: CheeseRun, console: Console | None = None, net: torch.nn.Module | None = None, meta: dict | None = None
) -> tuple[Path, dict]:
    """Measure, write the folder, return it and the summary. `net`/`meta`: an already loaded policy."""
    console = console or Console()
    if net is None:
        net, meta = load_any_policy(run.policy)
    folder = RunFolder(run.out, run.settings(net), run.overwrite, run.restart)
    with console.status(f"measuring P(cheese | decision square) on {run.n_mazes} test mazes ..."):
        result = cheese_experiment(net, run.n_mazes, run.seed, run.site, run.coefficient, run.vector_mouse)
    summary = result.summary()
    write_json(folder.path("results.json"), {**result.to_dict(), "policy": str(run.policy), "policy_meta": meta or {}})
    rows = [
        {"seed": s, "variant": v, "p_cheese": result.p_cheese[v][i], "p_corner": result.p_corner[v][i]}
        for v in VARIANTS
        for i, s in enumerate(result.seeds)
    ]
    write_csv(folder.path("p_cheese.csv"), rows)
    histogram_figure(result, folder.path("p_cheese_histogram.png"))
    if run.figures > 0:
        with console.status("drawing vector fields ..."):
            items = decision_mazes(run.figures, run.seed)
            at_start = run.vector_mouse == "start"
            source = [d.maze if at_start else d.maze.with_mouse(d.decision.square) for d in items]
            vectors = cheese_vectors(net, source, run.site)
            cases = [(d.maze, d.decision, v) for d, v in zip(items, vectors, strict=True)]
            vector_field_figure(net, cases, run.site, run.coefficient, folder.path("vector_fields.png"))
    return folder.commit(), summary
