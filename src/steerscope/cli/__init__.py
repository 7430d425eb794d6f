"""Command-line interface: a thin layer over the Python API, one module per command family."""

from . import demo, depth, lens, maze, orthogonalize, refusal, sae, serve, steering, sweep  # noqa: F401  (register their commands)
from ._app import app

__all__ = ["app"]

if __name__ == "__main__":
    app()
