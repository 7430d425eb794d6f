"""Steering as a request parameter: a list of (vector, coefficient, positions) entries, checked in full against a
model before anything runs, applied together, and described by their provenance.

The OpenAI-compatible server and the Inspect AI model provider both take steering in this shape; an empty list or
every coefficient 0 is the unsteered model (no hook installed).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from ..core.models import LoadedModel
from ..core.positions import POSITION_SPECS
from ..core.validate import check_coefficient
from .vector import SteeringVector


@dataclass(frozen=True)
class Steering:
    """One entry: `coefficient` x `vector` added at `positions`; `name` and `sha256` say which file it came from."""

    vector: SteeringVector
    coefficient: float
    positions: str = "all"
    name: str = ""
    sha256: str = ""

    def provenance(self) -> dict:
        """What made this entry: the file, its sha256, the method, sites, pairs, model and the coefficient."""
        meta = self.vector.meta
        return {
            "vector": self.name,
            "sha256": self.sha256,
            "coefficient": self.coefficient,
            "positions": self.positions,
            "method": meta.get("method"),
            "sites": self.vector.sites,
            "n_pairs": meta.get("n_pairs"),
            "dataset": meta.get("dataset"),
            "model": meta.get("model"),
            "fingerprint": meta.get("fingerprint"),
            "norms": meta.get("norms"),
        }


def check_steering(lm: LoadedModel, entries: Sequence[Steering]) -> list[Steering]:
    """Every entry checked against `lm` (the vector fits the model, the coefficient is in range, the positions are
    known and take the vector); entries at coefficient 0 are dropped, as they change nothing."""
    checked = []
    for i, entry in enumerate(entries):
        label = f"steering[{i}] ({entry.name or 'vector'})"
        coefficient = check_coefficient(entry.coefficient, f"{label}: coefficient")
        if entry.positions not in POSITION_SPECS:
            raise ValueError(f"{label}: unknown positions {entry.positions!r}; use one of {', '.join(POSITION_SPECS)}")
        entry.vector.check(lm)
        entry.vector.check_positions(entry.positions, label)
        if coefficient != 0:
            checked.append(entry)
    return checked


@contextmanager
def steered(lm: LoadedModel, entries: Sequence[Steering]) -> Iterator[None]:
    """Apply every entry for the block (hooks removed on exit, also on errors); no entry: the model as it is."""
    with ExitStack() as stack:
        for entry in check_steering(lm, entries):
            stack.enter_context(entry.vector.apply(lm, entry.coefficient, entry.positions))
        yield
