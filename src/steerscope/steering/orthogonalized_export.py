"""A direction from a steering-vector file removed from a model's weights, saved as a Hugging Face folder."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from ..core.loading import load_model
from ..core.models import LoadedModel
from ..core.weights import export, orthogonalize
from .vector import SteeringVector


def file_direction(vector: SteeringVector, where: str | Path, site: str | None = None) -> tuple[str, Tensor]:
    """The one direction [d] of a vector file: at `site`, or its only site when `site` is None."""
    if site is None:
        if len(vector.sites) != 1:
            raise ValueError(f"{where} holds {', '.join(vector.sites)}; choose one with --site")
        site = vector.sites[0]
    if site not in vector.vectors:
        raise ValueError(f"{where} has no vector at {site}; it holds {', '.join(vector.sites)}")
    if vector.vectors[site].dim() != 1:
        raise ValueError(f"the vector at {site} is position-wise; orthogonalization needs one direction [d]")
    return site, vector.vectors[site]


def export_orthogonalized(
    direction: str | Path,
    out: str | Path,
    model: str = "default",
    site: str | None = None,
    overwrite: bool = False,
    allow_other_model: bool = False,
    lm: LoadedModel | None = None,
    trust_remote_code: bool = False,
) -> dict:
    """Remove the direction stored in the file `direction` from every residual write of the model (`lm`, or
    loaded from `model`) and save it to `out`; returns the edit record. Checks everything before the load."""
    vector = SteeringVector.load(direction)
    site, unit = file_direction(vector, direction, site)
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite or choose another folder")
    lm = lm or load_model(model, trust_remote_code=trust_remote_code)
    vector.check(lm, allow_other_model)
    record = orthogonalize(lm, unit)
    record.update({"direction_file": str(direction), "site": site, "method": vector.meta.get("method")})
    export(lm, out, record, overwrite)
    return record
