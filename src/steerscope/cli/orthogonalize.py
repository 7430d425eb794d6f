"""CLI: `steerscope orthogonalize`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import Model, Overwrite, TrustRemoteCode, app, console


@app.command()
def orthogonalize(
    direction: Annotated[Path, typer.Option(help="steering-vector file holding the direction")],
    out: Annotated[Path, typer.Option(help="folder for the edited Hugging Face model (refused if it exists)")],
    model: Model = "default",
    site: Annotated[str, typer.Option(help="which of the file's sites to use (needed when it holds several)")] = "",
    overwrite: Overwrite = False,
    allow_other_model: Annotated[
        bool, typer.Option(help="use a direction found on another model of the same width")
    ] = False,
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Remove a direction from every weight that writes into the residual stream and save the model."""
    from ..steering.orthogonalized_export import export_orthogonalized

    with console.status(f"loading {model} and editing its weights ..."):
        record = export_orthogonalized(
            direction, out, model, site or None, overwrite, allow_other_model, trust_remote_code=trust_remote_code
        )
    console.print(
        f"removed the direction from {record['edited_modules']} weights "
        f"(tied embeddings untied: {record['untied_embeddings']}); saved {out}"
    )
