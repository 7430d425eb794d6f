"""Where the playground's vectors come from: vector files under --vectors, and vectors fitted here from a
built-in or uploaded contrast-pair set with a method of the catalogue at a chosen site.

Uploaded pairs are validated by `read_pairs`, as `load_pairs` files are (they are parsed as JSON or CSV text,
never executed or unpickled) and kept in memory under their content hash.
"""

from __future__ import annotations

import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..core.commands import command_args
from ..core.models import LoadedModel
from ..core.sites import parse_site
from ..methods import METHODS, fit, get_method
from ..steering.pairs import BUILTIN, ContrastPair, PairDataError, dataset_hash, load_pairs, read_pairs
from ..steering.vector import SteeringVector, VectorFileError
from .errors import RequestError, TooLarge
from .files import inside

UPLOAD_PREFIX = "upload:"
UPLOAD_SUFFIXES = (".jsonl", ".json", ".csv")
KEEP_UPLOADS = 32
KEEP_FITS = 16
MAX_LISTED_FILES = 500
FIT_BATCH_SIZE, FIT_SEED = 8, 0  # what `steerscope extract` uses by default, so its command reproduces a fit


def fit_methods() -> list[str]:
    """Methods the page can fit on the spot: those that make a vector and need no option of their own."""
    return [name for name, spec in METHODS.items() if spec.vector and not spec.needs]


@dataclass(frozen=True)
class Upload:
    name: str  # the file name the user gave (its base name only)
    pairs: tuple[ContrastPair, ...]

    @property
    def key(self) -> str:
        return UPLOAD_PREFIX + dataset_hash(list(self.pairs))


@dataclass(frozen=True)
class FitSpec:
    """A vector to fit here: `method` on the first `n_pairs` train pairs of `pairs` at `site` (read: `read`)."""

    pairs: str  # a built-in set name or an upload key
    label: str  # what the pairs are called in a command line: the set name or the upload's file name
    method: str
    site: str
    n_pairs: int
    read: str | None  # None for a method that reads every position (actadd)

    def extract_command(self, model: str, out: str) -> list[str]:
        """The `steerscope extract` arguments that fit the same vector."""
        return command_args(
            "extract", model, pairs=self.label, n_pairs=self.n_pairs, method=self.method, site=self.site,
            read=self.read, out=out,
        )  # fmt: skip


class VectorLibrary:
    """Vector files under `folder` (listed, loaded by relative name), uploads, and fits cached by their spec."""

    def __init__(self, lm: LoadedModel, folder: Path | None = None, max_upload_bytes: int = 2_000_000):
        self.lm = lm
        self.folder = folder
        self.max_upload_bytes = max_upload_bytes
        self.uploads: OrderedDict[str, Upload] = OrderedDict()
        self._fits: OrderedDict[FitSpec, SteeringVector] = OrderedDict()  # used by the model thread only

    # --- files ------------------------------------------------------------------------------------

    def listing(self) -> list[dict]:
        """Every .safetensors file under the folder: its name, what made it, and why it cannot be used here."""
        if self.folder is None:
            return []
        rows: list[dict] = []
        for path in sorted(self.folder.rglob("*.safetensors"))[:MAX_LISTED_FILES]:
            name = path.relative_to(self.folder).as_posix()
            try:
                vec = SteeringVector.load(path)
                vec.check(self.lm)
            except (VectorFileError, ValueError) as exc:
                rows.append({"name": name, "problem": str(exc)})
                continue
            meta = vec.meta
            rows.append(
                {
                    "name": name,
                    "method": meta.get("method"),
                    "sites": vec.sites,
                    "dataset": meta.get("dataset"),
                    "n_pairs": meta.get("n_pairs"),
                    "norms": meta["norms"],
                    "problem": None,
                }
            )
        return rows

    def load(self, name: str) -> SteeringVector:
        """The vector file `name` (relative to the folder), checked against the model."""
        vec = SteeringVector.load(inside(self.folder, name))
        vec.check(self.lm)
        return vec

    def path_of(self, name: str) -> Path:
        return inside(self.folder, name)

    # --- pairs --------------------------------------------------------------------------------------

    def upload(self, name: str, text: str) -> Upload:
        """Validate an uploaded pairs file (.jsonl, .json or .csv text) as `load_pairs` would, and keep it."""
        base = PurePosixPath(name.replace("\\", "/")).name
        suffix = PurePosixPath(base).suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise RequestError(f"{base or 'the upload'}: unknown format; upload a .jsonl, .json or .csv file")
        if len(text.encode("utf-8")) > self.max_upload_bytes:
            raise TooLarge(f"the upload {base} is over this server's limit of {self.max_upload_bytes} bytes")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_text(text, encoding="utf-8")
            try:
                pairs = read_pairs(path, "train")
            except PairDataError as exc:
                raise PairDataError(str(exc).replace(str(path), base)) from None
        upload = Upload(base, tuple(pairs))
        self.uploads[upload.key] = upload
        self.uploads.move_to_end(upload.key)
        while len(self.uploads) > KEEP_UPLOADS:
            self.uploads.popitem(last=False)
        return upload

    def pairs(self, source: str) -> tuple[list[ContrastPair], str]:
        """The train pairs of a built-in set or an upload, and the name a command line gives them."""
        if source.startswith(UPLOAD_PREFIX):
            if source not in self.uploads:
                raise RequestError(f"no uploaded pairs {source!r} (kept only while the server runs); upload it again")
            upload = self.uploads[source]
            return list(upload.pairs), upload.name
        if source not in BUILTIN:
            raise RequestError(f"unknown pair set {source!r}; built-in sets: {', '.join(BUILTIN)}, or upload a file")
        return load_pairs(source, "train"), source

    def fit_spec(self, pairs: str, method: str, site: str, n_pairs: int, read: str) -> FitSpec:
        """A fit checked before it is queued: the method makes a vector, takes this many pairs and this read,
        the site exists and the set has the pairs."""
        if method not in fit_methods():
            raise RequestError(f"method {method!r} cannot be fitted here; choose one of {', '.join(fit_methods())}")
        spec = get_method(method)
        spec.check_pairs(n_pairs)
        if spec.reads:
            spec.check_read(read)
        parse_site(site, self.lm.n_layers, self.lm.adapter.parallel)
        available, label = self.pairs(pairs)
        if n_pairs > len(available):
            raise RequestError(f"asked for {n_pairs} pairs but {label} has {len(available)} train pairs")
        return FitSpec(pairs, label, method, site, n_pairs, read if spec.reads else None)

    def fitted(self, spec: FitSpec) -> SteeringVector:
        """The vector of a fit (cached); called on the model thread, like every use of the model."""
        if spec in self._fits:
            self._fits.move_to_end(spec)
            return self._fits[spec]
        pairs, label = self.pairs(spec.pairs)
        kwargs: dict = {"batch_size": FIT_BATCH_SIZE, "seed": FIT_SEED}
        if spec.read:
            kwargs["read"] = spec.read
        vec = fit(spec.method, self.lm, pairs[: spec.n_pairs], [spec.site], **kwargs)
        assert isinstance(vec, SteeringVector)  # fit_methods() are the methods that make vectors
        vec.meta["dataset"] = f"{label}:train"
        self._fits[spec] = vec
        while len(self._fits) > KEEP_FITS:
            self._fits.popitem(last=False)
        return vec
