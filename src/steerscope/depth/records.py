"""The records a depth run is described by: which text (`TextSpec`) and which models and settings (`DepthRun`),
each checked in full when it is made, so bad settings are refused before any model loads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._version import __version__
from ..core.loading import parse_device_map, parse_max_memory
from ..core.validate import BadNumberError, finite, whole

__all__ = ["DepthRun", "TextSpec"]


@dataclass(frozen=True)
class TextSpec:
    """Which natural text: the source, N sequences of T tokens, the batch size and selection seed."""

    source: str = "wikipedia"
    n: int = 64
    seq_len: int = 128
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        whole(self.n, "the number of sequences (--n)", 1)
        whole(self.seq_len, "tokens per sequence (--seq-len)", 3)  # positions 1..T-2 are scored
        whole(self.batch_size, "the batch size (--batch-size)", 1)
        whole(self.seed, "the selection seed (--seed)", 0)
        if not isinstance(self.source, str) or not self.source.strip():
            raise BadNumberError(f"the text source (--text) must be a name or a file path, got {self.source!r}")


@dataclass
class DepthRun:
    models: list[str]
    out: Path
    text: TextSpec = field(default_factory=TextSpec)
    fit_range: tuple[float, float] = (0.2, 0.8)
    n_boot: int = 1000
    overwrite: bool = False
    dtype: str = "float32"
    device: str = "cpu"
    restart: bool = False  # discard an unfinished run in `<out>.partial` made with other settings
    trust_remote_code: bool = False  # run Python code shipped in a model folder (see load_model)
    device_map: str | dict = ""  # split each model over devices (load_model); "" keeps it on `device`
    max_memory: str | dict = ""  # accelerate's budget per device for device_map

    def __post_init__(self) -> None:
        parse_device_map(self.device_map or None)  # a bad map or budget is refused before any work
        parse_max_memory(self.max_memory or None)
        whole(self.n_boot, "bootstrap resamples (--n-boot)", 1)
        lo, hi = (finite(x, "the growth fit range (--fit-range)", 0.0, 1.0) for x in self.fit_range)
        if not lo < hi:
            raise BadNumberError(f"the growth fit range (--fit-range) must be two fractions lo < hi, got {lo:g},{hi:g}")
        self.fit_range = (lo, hi)
        if not self.models:
            raise BadNumberError("name at least one model")

    def settings(self, kind: str, **more) -> dict:
        """What the folder's results depend on (the run folder resumes only a run with equal settings)."""
        base = {"text": asdict(self.text), "fit_range": list(self.fit_range), "n_boot": self.n_boot}
        return {"kind": kind, "models": list(self.models), **base, "dtype": self.dtype, "version": __version__} | more
