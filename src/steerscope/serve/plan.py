"""What one steering request asks for, checked in full before it joins the queue.

A request names a vector (a file under --vectors, or a fit from pairs), the coefficients to show it at (one
steered column each; the unsteered column is always there), optionally a second vector added at its own
coefficient in every steered column, the positions, and the decoding settings of `steerscope generate`.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from ..core.commands import command
from ..core.positions import POSITION_SPECS
from ..core.validate import check_coefficient, finite, whole
from ..steering.vector import SteeringVector
from .errors import RequestError, TooLarge
from .vectors import FitSpec, VectorLibrary

STRICT = ConfigDict(strict=True, extra="forbid")


class VectorChoice(BaseModel):
    """A vector file under --vectors (`file`), or a fit: `method` on the first `n_pairs` of `pairs` at `site`."""

    model_config = STRICT
    file: str | None = None
    pairs: str | None = None
    method: str = "mean_diff"
    site: str | None = None
    n_pairs: int = 32
    read: str = "last"


class SecondVector(BaseModel):
    model_config = STRICT
    vector: VectorChoice
    coefficient: float


class SteerRequest(BaseModel):
    model_config = STRICT
    prompt: str
    vector: VectorChoice
    coefficients: list[float]
    second: SecondVector | None = None
    positions: str = "all"
    max_new_tokens: int | None = None  # None: 40, or the server's limit when that is lower
    sample: bool = False
    seed: int = 0
    repetition_penalty: float = 1.3


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how many may wait or run at once."""

    max_prompt_tokens: int = 256
    max_new_tokens: int = 200
    max_columns: int = 9
    max_streams: int = 4
    max_upload_bytes: int = 2_000_000


@dataclass
class Source:
    """One vector of a request: loaded from a file now, or fitted on the model thread."""

    choice: dict  # the request's own words, kept for the result file
    vector: SteeringVector | None = None
    file: str | None = None
    fit: FitSpec | None = None

    def describe(self) -> str:
        if self.fit:
            return f"{self.fit.method} from {self.fit.n_pairs} {self.fit.label} pairs at {self.fit.site}"
        return str(self.file)


@dataclass(frozen=True)
class Column:
    label: str
    coefficient: float | None  # of the first vector; None: the unsteered column
    second: float | None = None  # of the second vector in this column

    @property
    def steered(self) -> bool:
        return self.coefficient is not None


@dataclass
class Plan:
    prompt: str
    sources: list[Source]  # the first vector, then the second if any
    columns: list[Column]
    positions: str
    generation: dict  # generate_text's keyword arguments
    model: str  # the model spec a command line loads
    settings: dict = field(default_factory=dict)  # the request as checked, for the result file

    def reproduce(self, vector_paths: list[str]) -> dict:
        """Commands that redo this result: `steerscope extract` for fitted vectors, then `steerscope generate`
        (one vector) or a Python snippet (two)."""
        pairs = zip(self.sources, vector_paths, strict=True)
        commands = [shlex.join(s.fit.extract_command(self.model, path)) for s, path in pairs if s.fit]
        g = self.generation
        coefficients = [c.coefficient for c in self.columns if c.steered]
        if len(self.sources) == 1:
            generate = command(
                "generate", self.model, vector=vector_paths[0], coefficient=coefficients, positions=self.positions,
                prompt=[self.prompt], max_new_tokens=g["max_new_tokens"], seed=g["seed"],
                repetition_penalty=float(g["repetition_penalty"]), sample=bool(g["do_sample"]),
            )  # fmt: skip
            return {"commands": [*commands, generate]}
        second = self.columns[-1].second
        python = "\n".join(
            [
                "import steerscope as ss",
                "from steerscope.core.generate import generate_text",
                f"lm = ss.load_model({self.model!r})",
                f"a = ss.SteeringVector.load({vector_paths[0]!r})",
                f"b = ss.SteeringVector.load({vector_paths[1]!r})",
                f"for c in {coefficients!r}:",
                f"    with a.apply(lm, c, {self.positions!r}), b.apply(lm, {second!r}, {self.positions!r}):",
                f"        print(c, generate_text(lm, [{self.prompt!r}], **{g!r}))",
            ]
        )
        return {"commands": commands, "python": python}


def check_positions(vector: SteeringVector, positions: str) -> None:
    """SteeringVector.check_positions, refused as a request error (HTTP 400)."""
    try:
        vector.check_positions(positions, "the vector")
    except ValueError as exc:
        raise RequestError(str(exc)) from None


def _source(choice: VectorChoice, library: VectorLibrary, default_site: str, which: str) -> Source:
    if (choice.file is None) == (choice.pairs is None):
        raise RequestError(f"the {which} vector needs either 'file' (a vector file) or 'pairs' (a pair set to fit)")
    words = choice.model_dump(exclude_none=True)
    if choice.file is not None:
        return Source({"file": choice.file}, vector=library.load(choice.file), file=choice.file)
    n = whole(choice.n_pairs, f"n_pairs of the {which} vector", 1)
    spec = library.fit_spec(choice.pairs or "", choice.method, choice.site or default_site, n, choice.read)
    return Source(words, fit=spec)


def column_label(coefficient: float | None, second: float | None) -> str:
    if coefficient is None:
        return "unsteered"
    return f"{coefficient:+g} x A" + ("" if second is None else f" {second:+g} x B")


def make_plan(
    request: SteerRequest,
    library: VectorLibrary,
    limits: Limits,
    model: str,
    default_site: str,
    count_tokens: Callable[[str], int],
) -> Plan:
    """Check every part of a request against the model and the limits; refusals name the part and the limit."""
    if not request.prompt.strip():
        raise RequestError("the prompt is empty; type something to complete")
    n_tokens = count_tokens(request.prompt)
    if n_tokens > limits.max_prompt_tokens:
        raise TooLarge(
            f"the prompt is {n_tokens} tokens, over this server's limit of {limits.max_prompt_tokens} "
            "(start it with a larger --max-prompt-tokens)"
        )
    max_new_tokens = min(40, limits.max_new_tokens) if request.max_new_tokens is None else request.max_new_tokens
    whole(max_new_tokens, "max_new_tokens", 1, limits.max_new_tokens)
    whole(request.seed, "seed", 0)
    penalty = finite(request.repetition_penalty, "repetition_penalty", 0.01, 100.0)
    if request.positions not in POSITION_SPECS:
        raise RequestError(f"positions must be one of {', '.join(POSITION_SPECS)}, got {request.positions!r}")
    if not request.coefficients:
        raise RequestError("give at least one coefficient")
    if len(request.coefficients) > limits.max_columns:
        n = len(request.coefficients)
        raise RequestError(f"{n} coefficients, over this server's limit of {limits.max_columns}")
    coefficients = [check_coefficient(c) for c in request.coefficients]
    if len(set(coefficients)) < len(coefficients):
        raise RequestError("a coefficient is given twice; give each once")
    sources = [_source(request.vector, library, default_site, "first")]
    second = None
    if request.second is not None:
        sources.append(_source(request.second.vector, library, default_site, "second"))
        second = check_coefficient(request.second.coefficient, "the second vector's coefficient")
    for source in sources:
        if source.vector is not None:
            check_positions(source.vector, request.positions)
    steered = [c for c in coefficients if c != 0 or second is not None]  # A at 0 alone is the unsteered column
    columns = [Column("unsteered", None)] + [Column(column_label(c, second), c, second) for c in steered]
    generation = {
        "max_new_tokens": max_new_tokens,
        "do_sample": request.sample,
        "seed": request.seed,
        "repetition_penalty": penalty,
    }
    settings = request.model_dump()
    return Plan(request.prompt, sources, columns, request.positions, generation, model, settings)
