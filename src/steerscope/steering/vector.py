"""Steering vectors: one tensor per site plus metadata, kept in a safetensors file (no pickle).

The metadata (model id and fingerprint, method, options, number of pairs, dataset hash, norms,
steerscope version) lives in the safetensors header under the key "steerscope" as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .._version import __version__
from ..core.errors import SteerscopeError
from ..core.hooks import add
from ..core.io import atomic_write_bytes
from ..core.models import LoadedModel
from ..core.sites import parse_site
from ..core.validate import BadNumberError, check_coefficient, finite
from .alignment import describe_precheck

HEADER_KEY = "steerscope"


class VectorFileError(SteerscopeError, ValueError):
    """A steering-vector file that cannot be read."""


class VectorMismatchError(SteerscopeError, ValueError):
    """A steering vector that does not fit the model it is applied to."""


def check_shapes(vectors: dict) -> None:
    """Refuse what is not a steering vector, naming the tensor: each must be a floating tensor, 1-D `[d]` or
    position-wise `[T, d]`, non-empty, and every site must have the same width d."""
    widths = set()
    for site, v in vectors.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"the vector for {site} must be a torch tensor, got {type(v).__name__}")
        if not v.is_floating_point():
            raise TypeError(f"the vector for {site} must be a floating-point tensor, got {v.dtype}")
        if v.dim() not in (1, 2) or v.numel() == 0:
            raise ValueError(
                f"the vector for {site} has shape {tuple(v.shape)}; a steering vector is [d_model] "
                "(or position-wise [tokens, d_model]) and not empty"
            )
        widths.add(int(v.shape[-1]))
    if len(widths) > 1:
        raise ValueError(f"the vectors have different widths {sorted(widths)}; every site must have the model's width")


@dataclass
class SteeringVector:
    """Directions per site (float32, [d] or position-wise [T, d]) and what produced them."""

    vectors: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.vectors, dict) or not self.vectors:
            raise ValueError("a steering vector needs at least one site: give {site: tensor}")
        if not isinstance(self.meta, dict):
            raise TypeError(f"meta must be a dict, got {type(self.meta).__name__}")
        check_shapes(self.vectors)
        self.vectors = {str(s): v.detach().to(torch.float32).cpu().contiguous() for s, v in self.vectors.items()}
        bad = [s for s, v in self.vectors.items() if not bool(torch.isfinite(v).all())]
        if bad:
            raise BadNumberError(f"the steering vector holds NaN or infinite values at {', '.join(bad)}")
        self.meta.setdefault("steerscope_version", __version__)
        self.meta["norms"] = {s: float(v.norm()) for s, v in self.vectors.items()}

    @property
    def sites(self) -> list[str]:
        return list(self.vectors)

    def __repr__(self) -> str:
        """One line: method, sites with shapes and norms, pairs and model (not the numbers themselves)."""
        m = self.meta
        sites = ", ".join(
            f"{s} {'x'.join(map(str, v.shape))} norm {m['norms'][s]:.4g}" for s, v in self.vectors.items()
        )
        return (
            f"SteeringVector({m.get('method', '?')} at {sites}; pairs {m.get('n_pairs', '?')}; "
            f"model {m.get('model', '?')} {m.get('fingerprint', '')})".replace(" )", ")")
        )

    @property
    def d_model(self) -> int:
        return int(next(iter(self.vectors.values())).shape[-1])

    # --- arithmetic -----------------------------------------------------------------------------

    def _derived(self, vectors: dict[str, torch.Tensor], op: str) -> SteeringVector:
        meta = {k: v for k, v in self.meta.items() if k != "norms"}
        meta["derived"] = [*meta.get("derived", []), op]
        return SteeringVector(vectors, meta)

    def __mul__(self, scale: float) -> SteeringVector:
        try:
            number = None if isinstance(scale, str | bytes | bool) else float(scale)
        except (TypeError, ValueError, RuntimeError):
            number = None
        if number is None:
            raise TypeError(f"a steering vector is scaled by a number (vector * 2.0), got {type(scale).__name__}")
        finite(number, "the scale of a steering vector")
        return self._derived({s: v * float(scale) for s, v in self.vectors.items()}, f"scale {scale:g}")

    __rmul__ = __mul__

    def __neg__(self) -> SteeringVector:
        return self * -1.0

    def __add__(self, other: SteeringVector) -> SteeringVector:
        if set(other.vectors) != set(self.vectors):
            raise ValueError(f"cannot add vectors at different sites: {self.sites} vs {other.sites}")
        for s in self.vectors:
            if self.vectors[s].shape != other.vectors[s].shape:
                raise ValueError(
                    f"cannot add at {s}: shapes {tuple(self.vectors[s].shape)} and {tuple(other.vectors[s].shape)}"
                )
        summed = {s: self.vectors[s] + other.vectors[s] for s in self.vectors}
        return self._derived(summed, f"plus {other.meta.get('method', 'vector')}")

    def __sub__(self, other: SteeringVector) -> SteeringVector:
        return self + (-other)

    def with_norm(self, norm: float | SteeringVector) -> SteeringVector:
        """Rescale every site's vector to a norm (or to the norms of another vector at the same sites)."""
        targets = (
            {s: norm.meta["norms"][s] for s in self.vectors}
            if isinstance(norm, SteeringVector)
            else dict.fromkeys(self.vectors, float(norm))
        )
        out = {}
        for s, v in self.vectors.items():
            if v.norm() == 0:
                raise ValueError(f"cannot rescale the zero vector at {s}")
            out[s] = v / v.norm() * targets[s]
        return self._derived(out, "norm matched")

    # --- files ----------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write a safetensors file atomically; the metadata goes into its header."""
        path = Path(path)
        header = {HEADER_KEY: json.dumps(self.meta, sort_keys=True)}
        atomic_write_bytes(path, save(self.vectors, metadata=header))
        return path

    @classmethod
    def load(cls, path: str | Path) -> SteeringVector:
        path = Path(path)
        if not path.is_file():
            raise VectorFileError(f"no steering-vector file at {path}")
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                header = fh.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise VectorFileError(f"{path} is not a readable safetensors file (corrupt or truncated?): {exc}") from exc
        if HEADER_KEY not in header:
            raise VectorFileError(
                f"{path} is a safetensors file but not a steerscope vector (no '{HEADER_KEY}' header)"
            )
        try:
            meta = json.loads(header[HEADER_KEY])
        except json.JSONDecodeError as exc:
            raise VectorFileError(f"{path}: the '{HEADER_KEY}' header is not valid JSON") from exc
        if not isinstance(meta, dict):
            raise VectorFileError(
                f"{path}: the '{HEADER_KEY}' header must be a JSON object, got {type(meta).__name__}; "
                "the file was not written by steerscope (save vectors with SteeringVector.save)"
            )
        if not tensors:
            raise VectorFileError(f"{path} holds no tensors; a steering vector has one per site")
        try:
            return cls(tensors, meta)
        except BadNumberError as exc:
            raise VectorFileError(f"{path}: {exc}; the file is damaged or was written from a diverged run") from exc
        except (TypeError, ValueError) as exc:
            raise VectorFileError(f"{path}: {exc}; this file holds no usable steering vector") from exc

    # --- use ------------------------------------------------------------------------------------

    def check(self, lm: LoadedModel, allow_other_model: bool = False) -> None:
        """Refuse a vector whose size, sites or model do not fit `lm`."""
        for site, v in self.vectors.items():
            if int(v.shape[-1]) != lm.d_model:
                raise VectorMismatchError(
                    f"the vector for {site} has width {int(v.shape[-1])} but {lm.name} has d_model {lm.d_model}; "
                    "it was made for another model and cannot be applied"
                )
        for site in self.vectors:
            parse_site(site, lm.n_layers, lm.adapter.parallel, bool(lm.adapter.pos_embed))
        made_for = self.meta.get("fingerprint")
        if made_for and made_for != lm.fingerprint() and not allow_other_model and self.meta.get("model") == lm.name:
            raise VectorMismatchError(
                f"vector was made for a model also named {lm.name}, but with fingerprint {made_for}, not this one's "
                f"{lm.fingerprint()}: its weights differ, or the file was written by steerscope "
                f"{self.meta.get('steerscope_version', '(unknown version)')} before the fingerprint scheme changed "
                "(it now hashes all weights); if you know it is the same model, re-stamp the file once with "
                "`steerscope vectors restamp FILE --model MODEL` (API: vector.restamp(lm)), or pass "
                "allow_other_model=True (CLI: --allow-other-model)"
            )
        if made_for and made_for != lm.fingerprint() and not allow_other_model:
            raise VectorMismatchError(
                f"vector was made for {self.meta.get('model', '?')} (fingerprint {made_for}), not {lm.name} "
                f"(fingerprint {lm.fingerprint()}); pass allow_other_model=True (CLI: --allow-other-model) "
                "to apply it deliberately"
            )

    def check_positions(self, positions: str, what: str = "this vector") -> None:
        """A position-wise (ActAdd) vector [T, d] is added at the front of the prompt, so it takes only the
        positions "all" (which means the front for it) or "front"; refused in one line otherwise."""
        if any(v.dim() == 2 for v in self.vectors.values()) and positions not in ("all", "front"):
            raise ValueError(
                f"{what} is a position-wise (ActAdd) vector, added at the front of the prompt; positions "
                f"{positions!r} cannot take it: use all or front"
            )

    def restamp(self, lm: LoadedModel) -> SteeringVector:
        """A copy stamped with `lm`'s fingerprint, for a file written before the fingerprint scheme changed: only for a
        model of the same name whose width and sites fit (anything else is refused), the old fingerprint kept in
        the metadata as `restamped_from`."""
        if self.meta.get("model") not in (None, lm.name):
            raise VectorMismatchError(
                f"the vector names the model {self.meta.get('model')!r}, not {lm.name!r}: re-stamping is only for a "
                "file of the same model written before the fingerprint scheme changed; use --allow-other-model to "
                "apply it to another model deliberately"
            )
        self.check(lm, allow_other_model=True)  # width and sites must fit
        meta = {k: v for k, v in self.meta.items() if k != "norms"}
        old = meta.get("fingerprint")
        if old == lm.fingerprint():
            raise VectorMismatchError(f"the vector already carries {lm.name}'s fingerprint {old}; nothing to re-stamp")
        meta |= {"fingerprint": lm.fingerprint(), "restamped_from": old, "restamped_by": __version__}
        return SteeringVector(dict(self.vectors), meta)

    @contextmanager
    def apply(
        self,
        lm: LoadedModel,
        coefficient: float = 1.0,
        positions: str | torch.Tensor = "all",
        allow_other_model: bool = False,
    ) -> Iterator[None]:
        """Add coefficient x vector at its sites during forward passes inside the block.

        Coefficient 0 installs no hook at all: unsteered means the model as it is, not a zero multiple."""
        self.check(lm, allow_other_model)
        if check_coefficient(coefficient) == 0:
            yield
            return
        if any(v.dim() == 2 for v in self.vectors.values()) and positions == "all":
            positions = "front"  # a position-wise (ActAdd) vector goes to the front of the prompt
        with add(lm, self.vectors, coefficient=coefficient, positions=positions):
            yield

    def describe(self) -> str:
        m = self.meta
        lines = [
            f"method: {m.get('method', '?')}  options: {json.dumps(m.get('options', {}))}",
            f"model: {m.get('model', '?')}  fingerprint: {m.get('fingerprint', '?')}",
            f"pairs: {m.get('n_pairs', '?')}  dataset: {m.get('dataset', '?')} (hash {m.get('dataset_hash', '?')})",
            f"steerscope: {m.get('steerscope_version', '?')}"
            + (f"  derived: {m['derived']}" if "derived" in m else ""),
        ]
        for s, v in self.vectors.items():
            lines.append(f"  {s}: shape {tuple(v.shape)}, norm {m['norms'][s]:.4g}")
        return "\n".join(lines + describe_precheck(m))
