"""llama.cpp control vectors: steering vectors as the GGUF files `--control-vector` and repeng read and write.

The layout (llama.cpp's control-vector loader and its cvector-generator; repeng's ControlVector.export_gguf /
import_gguf): `general.architecture = "controlvector"`, `controlvector.model_hint` (the model's architecture),
`controlvector.layer_count` (how many directions), and one F32 tensor `direction.{i}` [d_model] per layer.

What llama.cpp does with `direction.{i}`: after layer i (0-based) has added its MLP output, it adds the
direction (times the --control-vector-scaled factor) at every position, prompt and generated tokens alike.
It keeps no slot for layer 0 and refuses `direction.0`. So, in steerscope's names:

    direction.{i}  =  resid_post.{i}  =  resid_pre.{i+1}      for i = 1 .. L-1;  `final` = direction.{L-1}

and `steerscope generate --positions all --coefficient c` is `--control-vector-scaled FILE:c`. Sites llama.cpp
cannot steer are refused with the reason: `embed`, `pos_embed`, `resid_pre.0`, `resid_pre.1` / `resid_post.0`
(nothing is added before layer 1's output), the sublayer sites (llama.cpp adds only to a layer's output) and
position-wise ActAdd vectors (llama.cpp adds one vector at every position). repeng's layer numbers are the same
as llama.cpp's (its layer i is the output of block i), so its files import the same way; a repeng
`direction.0` imports as `resid_post.0`. Two sites of one vector that are the same llama.cpp layer are summed,
as llama.cpp sums directions for one layer.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._version import __version__
from ..core.errors import SteerscopeError
from ..core.io import atomic_write_bytes, sha256_file
from ..core.models import LoadedModel
from ..core.sites import Site, SiteError, parse_site, site_name, split_site
from ..core.validate import BadNumberError
from .vector import SteeringVector

ARCH = "controlvector"
META_KEY = "steerscope.meta"  # our own metadata (JSON); llama.cpp and repeng ignore keys they do not know
_DIRECTION = re.compile(r"^direction\.(\d+)$")
# Hugging Face model_type -> llama.cpp architecture name, where the two differ
_LLAMACPP_ARCH = {"gpt_neox": "gptneox", "gemma3_text": "gemma3"}


class ControlVectorError(SteerscopeError, ValueError):
    """A control-vector file, or a vector that cannot become one; the message names the file or site and why."""


@dataclass
class ControlVectorFile:
    """What a control-vector GGUF holds: directions by llama.cpp layer index, the model hint, our metadata."""

    directions: dict[int, np.ndarray]
    model_hint: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def width(self) -> int:
        return int(next(iter(self.directions.values())).shape[0])


def control_layer(site: str, n_layers: int, parallel: bool = False, pos_embed: bool = False) -> int:
    """The llama.cpp layer index a site's vector goes to, or ControlVectorError saying why it has none."""
    layer = _layer_of(parse_site(site, n_layers, parallel, pos_embed), site)
    return n_layers - 1 if layer is None else layer


def check_exportable(vector: SteeringVector) -> None:
    """Refuse, before any model is loaded, a vector with a site or a shape llama.cpp cannot steer."""
    for site, value in vector.vectors.items():
        if value.dim() != 1:
            raise ControlVectorError(
                f"the vector at {site} is position-wise {tuple(value.shape)} (ActAdd); llama.cpp adds one vector "
                "[d_model] at every position, so it cannot hold one"
            )
        _layer_of(split_site(site), site)


def _layer_of(parsed: Site, site: str) -> int | None:
    """llama.cpp's layer for a parsed site (None for `final`: the last layer, which needs the layer count)."""
    where = f"site {site!r} cannot be a llama.cpp control vector"
    if parsed.kind == "final":
        return None
    if parsed.kind in ("embed", "pos_embed") or (parsed.kind == "resid_pre" and parsed.layer == 0):
        raise ControlVectorError(f"{where}: llama.cpp adds control vectors to layer outputs only, not to the embedding")
    if parsed.kind not in ("resid_pre", "resid_post"):
        raise ControlVectorError(
            f"{where}: llama.cpp adds control vectors only to the stream leaving a layer (resid_post.i = "
            f"resid_pre.i+1), not to {parsed.kind}; fit the vector at a resid_post or resid_pre site"
        )
    assert parsed.layer is not None
    layer = parsed.layer - 1 if parsed.kind == "resid_pre" else parsed.layer
    if layer == 0:
        raise ControlVectorError(
            f"{where}: it is the output of layer 0, and llama.cpp keeps no control vector for layer 0 (it refuses "
            "direction.0); use resid_post.1 / resid_pre.2 or deeper"
        )
    return layer


def control_directions(vector: SteeringVector, lm: LoadedModel) -> dict[int, np.ndarray]:
    """The vector's sites as llama.cpp layer directions (F32); sites at the same layer are summed."""
    check_exportable(vector)
    out: dict[int, np.ndarray] = {}
    for site, value in vector.vectors.items():
        layer = control_layer(site, lm.n_layers, lm.adapter.parallel, bool(lm.adapter.pos_embed))
        out[layer] = out.get(layer, 0) + value.numpy().astype(np.float32)
    return dict(sorted(out.items()))


def model_hint(lm: LoadedModel) -> str:
    """llama.cpp's name for the model's architecture (what its cvector-generator writes as the hint)."""
    model_type = str(getattr(lm.config, "model_type", "unknown"))
    return _LLAMACPP_ARCH.get(model_type, model_type)


def export_control_vector(
    vector: SteeringVector,
    path: str | Path,
    lm: LoadedModel,
    overwrite: bool = False,
    allow_other_model: bool = False,
) -> Path:
    """Write `vector` as a llama.cpp control-vector GGUF for `lm`'s layers (atomically); returns the path."""
    import gguf

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it, or choose another --out")
    vector.check(lm, allow_other_model)
    directions = control_directions(vector, lm)
    meta = {
        **vector.meta,
        "sites": {
            site: control_layer(site, lm.n_layers, lm.adapter.parallel, bool(lm.adapter.pos_embed))
            for site in vector.sites
        },
        "n_layers": lm.n_layers,
        "exported_by": f"steerscope {__version__}",
    }
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "vector.gguf"
        writer = gguf.GGUFWriter(staged, ARCH)
        writer.add_string(f"{ARCH}.model_hint", model_hint(lm))
        writer.add_int32(f"{ARCH}.layer_count", len(directions))
        writer.add_string(META_KEY, json.dumps(meta, sort_keys=True))
        for layer, direction in directions.items():
            writer.add_tensor(f"direction.{layer}", direction)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        atomic_write_bytes(path, staged.read_bytes())
    return path


def _string_field(reader, key: str) -> str | None:
    found = reader.get_field(key)
    if found is None:
        return None
    value = found.contents()
    return value if isinstance(value, str) else None


def read_control_vector(path: str | Path) -> ControlVectorFile:
    """Read a control-vector GGUF (llama.cpp's, repeng's or ours); anything else is one ControlVectorError."""
    import gguf

    path = Path(path)
    if not path.is_file():
        raise ControlVectorError(f"no control-vector file at {path}")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError, IndexError, KeyError) as exc:
        raise ControlVectorError(f"{path} is not a GGUF file ({exc}); a control vector is a .gguf file") from exc
    arch = _string_field(reader, "general.architecture")
    expected = f"a control vector (general.architecture {ARCH!r} with F32 tensors direction.1 .. direction.N)"
    if arch is not None and arch != ARCH:
        raise ControlVectorError(f"{path} is a GGUF file of architecture {arch!r} (a model?), not {expected}")
    directions: dict[int, np.ndarray] = {}
    for tensor in reader.tensors:
        match = _DIRECTION.match(tensor.name)
        if match is None:
            raise ControlVectorError(f"{path} holds a tensor {tensor.name!r}; {expected} holds only direction.N")
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32 or len(tensor.shape) != 1:
            raise ControlVectorError(
                f"{path}: {tensor.name} is {tensor.tensor_type.name} of shape {list(tensor.shape)}; llama.cpp "
                "reads only 1-D F32 directions"
            )
        directions[int(match.group(1))] = np.array(tensor.data, dtype=np.float32)
    if not directions:
        raise ControlVectorError(f"{path} holds no direction tensors; expected {expected}")
    widths = {d.shape[0] for d in directions.values()}
    if len(widths) > 1:
        raise ControlVectorError(f"{path}: its directions have different widths {sorted(widths)}")
    raw_meta = _string_field(reader, META_KEY)
    try:
        meta = json.loads(raw_meta) if raw_meta else {}
    except json.JSONDecodeError as exc:
        raise ControlVectorError(f"{path}: {META_KEY} is not valid JSON") from exc
    return ControlVectorFile(dict(sorted(directions.items())), _string_field(reader, f"{ARCH}.model_hint"), meta)


def import_control_vector(path: str | Path, lm: LoadedModel) -> SteeringVector:
    """A control-vector GGUF as a SteeringVector for `lm` (direction.i -> resid_post.i), checked against its
    width and layer count, with its provenance (file, sha256, model hint, and our metadata if we wrote it)."""
    path = Path(path)
    cv = read_control_vector(path)
    if cv.width != lm.d_model:
        raise ControlVectorError(
            f"{path} holds directions of width {cv.width}, but {lm.name} has d_model {lm.d_model}; "
            "the control vector was made for another model"
        )
    made_for = cv.meta.get("n_layers")
    deepest = max(cv.directions)
    if deepest >= lm.n_layers or (made_for is not None and made_for != lm.n_layers):
        layers = f"{made_for} layers" if made_for is not None else f"a direction.{deepest}"
        raise ControlVectorError(
            f"{path} was made for a model with {layers}, but {lm.name} has {lm.n_layers} layers "
            f"(llama.cpp directions 1..{lm.n_layers - 1}); the control vector was made for another model"
        )
    vectors = {site_name("resid_post", i): torch.from_numpy(d) for i, d in cv.directions.items()}
    original = {k: v for k, v in cv.meta.items() if k not in ("norms", "sites", "n_layers", "exported_by")}
    meta = {
        "method": "imported",
        **original,
        "imported_from": {
            "file": str(path),
            "sha256": sha256_file(path),
            "format": "llama.cpp control vector (GGUF)",
            "model_hint": cv.model_hint,
            "exported_by": cv.meta.get("exported_by"),
            "sites": cv.meta.get("sites"),
        },
    }
    meta.setdefault("model", lm.name)
    meta.setdefault("fingerprint", lm.fingerprint())
    meta.setdefault("d_model", lm.d_model)
    try:
        vector = SteeringVector(vectors, meta)
        vector.check(lm)
    except (BadNumberError, SiteError) as exc:
        raise ControlVectorError(f"{path}: {exc}") from exc
    return vector
