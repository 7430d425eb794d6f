"""CLI: `steerscope maze train` and `steerscope maze cheese-vector`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._app import HELP_MARKUP, Out, Overwrite, Restart, Seed, Threads, app, console, set_threads

maze_app = typer.Typer(
    rich_markup_mode=HELP_MARKUP,
    help="A maze-solving policy, its goal misgeneralization, and the cheese vector.",
    no_args_is_help=True,
)
app.add_typer(maze_app, name="maze")

POLICY_HELP = "a checkpoint folder from `steerscope maze train`, or a procgen maze network weights file"


@maze_app.command()
def train(
    out: Annotated[Path, typer.Option(help="checkpoint folder (an unfinished run there is resumed)")] = Path(
        "runs/maze/policy"
    ),
    steps: Annotated[int, typer.Option(help="optimizer steps")] = 4500,
    n_mazes: Annotated[int, typer.Option(help="training mazes (every open square of each is a demonstration)")] = 5000,
    batch_size: Annotated[int, typer.Option(help="demonstrations per optimizer step")] = 256,
    lr: Annotated[float, typer.Option(help="peak learning rate (cosine schedule)")] = 2e-3,
    seed: Seed = 0,
    eval_mazes: Annotated[int, typer.Option(help="held-out mazes for the greedy success rates")] = 200,
    overwrite: Overwrite = False,
    restart: Restart = False,
    threads: Threads = 1,
) -> None:
    """Behaviour cloning from a shortest-path oracle on training mazes (cheese in the top-right 5x5 region)."""
    from ..maze.train import PolicyTrainConfig
    from ..maze.train import train as run_training

    set_threads(threads)
    cfg = PolicyTrainConfig(
        n_mazes=n_mazes, steps=steps, batch_size=batch_size, lr=lr, seed=seed, eval_mazes=eval_mazes
    )
    result = run_training(out, cfg, overwrite=overwrite, restart=restart)
    console.print(
        f"trained in {result['train_seconds']:.0f}s ({result['method']}); greedy success: "
        f"{result['success_train_distribution']:.1%} on held-out training mazes, "
        f"{result['success_test_distribution']:.1%} on test mazes (cheese anywhere); saved {out}"
    )


@maze_app.command("cheese-vector")
def cheese_vector(
    policy: Annotated[Path, typer.Argument(help=POLICY_HELP)] = Path("runs/maze/policy"),
    out: Out = Path("runs/maze/cheese"),
    site: Annotated[str, typer.Option(help="module path of a residual add, e.g. embedder.block2.res1")] = (
        "embedder.block2.res1"
    ),
    coefficient: Annotated[float, typer.Option(help="multiplier of the cheese vector (-1: subtract)")] = -1.0,
    n_mazes: Annotated[int, typer.Option(help="test mazes with a decision square")] = 100,
    seed: Annotated[int, typer.Option(help="first test-maze seed")] = 0,
    vector_mouse: Annotated[
        str, typer.Option(help="mouse square when the vector is computed: start or decision")
    ] = "start",
    figures: Annotated[int, typer.Option(help="mazes to draw vector fields for")] = 3,
    overwrite: Overwrite = False,
    restart: Restart = False,
    threads: Threads = 1,
) -> None:
    """P(cheese | decision square) unsteered, with the cheese vector, a random vector of its norm, and added."""
    from ..maze.run import CheeseRun, run_cheese

    set_threads(threads)
    run = CheeseRun(
        policy=policy,
        out=out,
        site=site,
        coefficient=coefficient,
        n_mazes=n_mazes,
        seed=seed,
        vector_mouse=vector_mouse,
        figures=figures,
        overwrite=overwrite,
        restart=restart,
    )
    final, summary = run_cheese(run, console)
    console.print(json.dumps(summary, indent=1), markup=False)
    console.print(f"results, histogram and vector fields in {final}")
