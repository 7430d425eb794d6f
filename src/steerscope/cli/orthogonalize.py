"""CLI: `steerscope orthogonalize`."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import MODEL_HELP, _load, app, console


@app.command()
def orthogonalize(
    model: str = typer.Argument("default", help=MODEL_HELP),
    direction: Path = typer.Option(..., help="steering-vector file holding the direction"),  # noqa: B008
    site: str = typer.Option("", help="which of the file's sites to use (needed when it holds several)"),
    out: Path = typer.Option(..., help="folder for the edited Hugging Face model"),  # noqa: B008
    overwrite: bool = typer.Option(False, help="replace an existing folder"),
    allow_other_model: bool = typer.Option(False, help="use a direction found on another model of the same width"),
) -> None:
    """Remove a direction from every weight that writes into the residual stream and save the model."""
    from ..core.weights import OrthogonalizationError, export
    from ..core.weights import orthogonalize as edit_weights
    from ..steering.vector import SteeringVector, VectorFileError, VectorMismatchError

    try:
        vec = SteeringVector.load(direction)
        if not site:
            if len(vec.sites) != 1:
                raise ValueError(f"{direction} holds {', '.join(vec.sites)}; choose one with --site")
            site = vec.sites[0]
        if site not in vec.vectors:
            raise ValueError(f"{direction} has no vector at {site}; it holds {', '.join(vec.sites)}")
        if vec.vectors[site].dim() != 1:
            raise ValueError(f"the vector at {site} is position-wise; orthogonalization needs one direction [d]")
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite or choose another folder")
        lm = _load(model, "float32", "cpu")
        vec.check(lm, allow_other_model)
        record = edit_weights(lm, vec.vectors[site])
        record.update({"direction_file": str(direction), "site": site, "method": vec.meta.get("method")})
        export(lm, out, record, overwrite)
    except (VectorFileError, VectorMismatchError, OrthogonalizationError, ValueError, FileExistsError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(
        f"removed the direction from {record['edited_modules']} weights "
        f"(tied embeddings untied: {record['untied_embeddings']}); saved {out}"
    )
