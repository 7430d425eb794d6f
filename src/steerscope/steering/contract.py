"""The one contract every way of steering meets, whatever it edits (a vector added, an SAE latent clamped).

    intervention.sites                       the sites it acts at
    intervention.meta                        what produced it (method, model, pairs, options, ...)
    with intervention.apply(lm, coefficient=1.0, positions="all"):
        ...                                  forward passes and generation inside the block are steered

A method (steerscope.methods) fits an intervention from contrast pairs; a sweep, a report or a command
line only ever uses these three members, so all methods are compared on equal terms.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

from torch import Tensor

from ..core.models import LoadedModel

__all__ = ["Intervention"]


@runtime_checkable
class Intervention(Protocol):
    """A fitted way of steering: its sites, its metadata, and `apply` (a context manager)."""

    meta: dict

    @property
    def sites(self) -> list[str]:
        """The site names it acts at."""
        ...

    def apply(
        self, lm: LoadedModel, coefficient: float = 1.0, positions: str | Tensor = "all"
    ) -> AbstractContextManager[None]:
        """Steer `lm` with strength `coefficient` at `positions` during forward passes inside the block."""
        ...
