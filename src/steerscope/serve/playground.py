"""One playground request, run on the model thread: fit or load its vectors, generate each column with its
vectors applied (streaming the text as it grows), then score every completion under the unsteered model.

Each column is generated exactly as `steerscope generate` does (same seed, same decoding, the vector applied
for the whole call; coefficient 0 is no hook at all), so the commands in the result file reproduce it. The
steered columns go first; the unsteered one, which depends only on the prompt and decoding, is cached.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from transformers.generation.streamers import BaseStreamer

from .._version import __version__
from ..core.generate import generate_text
from ..core.models import LoadedModel
from ..core.sites import site_name
from ..evaluate.fluency import completion_cross_entropy
from ..steering.tasks import BUILTIN as CONCEPTS
from ..steering.tasks import ConceptTask, get_task
from ..steering.vector import SteeringVector
from .engine import ModelThread, Ticket
from .plan import Column, Limits, Plan, SteerRequest, check_positions, make_plan
from .vectors import VectorLibrary

KEEP_UNSTEERED = 64


class TextStream(BaseStreamer):
    """A transformers streamer that sends a completion's text so far after each new token (held back while
    it ends in half a character), and stops generation when its ticket is cancelled."""

    def __init__(self, tokenizer, send: Callable[[str], None], check: Callable[[], None]):
        self.tokenizer, self.send, self.check = tokenizer, send, check
        self.ids: list[int] = []
        self.prompt_seen = False
        self.shown = ""

    def put(self, value) -> None:
        self.check()
        if not self.prompt_seen:  # generate() first puts the prompt
            self.prompt_seen = True
            return
        self.ids += value.reshape(-1).tolist()
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text != self.shown and not text.endswith("\ufffd"):
            self.shown = text
            self.send(text)

    def end(self) -> None:
        pass


def concept_of(vector: SteeringVector) -> str | None:
    """The built-in concept a vector was fitted on ('sentiment' from the dataset 'sentiment:train'), if any."""
    dataset = str(vector.meta.get("dataset") or "")
    name = dataset.split(":", 1)[0]
    return name if name in CONCEPTS else None


def concept_scores(concept: str, text: str) -> dict[str, float]:
    """A completion's scores under the concept's built-in scorer, as a sweep scores it (sentiment: VADER compound
    and whether it counts as positive; weddings: whether it mentions the topic)."""
    task = get_task(concept)
    if not isinstance(task, ConceptTask):
        return {}
    return {name: float(values[0]) for name, values in task.score([text]).items()}


def _number(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


class Playground:
    """The model, its vectors, the limits and the queue that every use of the model goes through."""

    def __init__(
        self,
        lm: LoadedModel,
        model: str = "default",
        vectors: Path | None = None,
        runs: Path | None = None,
        limits: Limits | None = None,
    ):
        self.lm = lm
        self.model = model
        self.limits = limits or Limits()
        self.library = VectorLibrary(lm, vectors, self.limits.max_upload_bytes)
        self.runs = runs
        self.default_site = site_name("resid_pre", lm.n_layers // 3)
        self.engine = ModelThread(self.limits.max_streams)
        self._unsteered: OrderedDict[tuple, tuple[str, float | None]] = OrderedDict()
        self._counter = copy.deepcopy(lm.tokenizer)  # a tokenizer is not to be shared with the model thread,
        self._counting = threading.Lock()  # nor between two requests being checked at once
        lm.fingerprint()  # computed once here, not while a request generates

    def plan(self, request: SteerRequest) -> Plan:
        """A request checked in full (a 4xx refusal otherwise) and ready to queue."""
        return make_plan(request, self.library, self.limits, self.model, self.default_site, self.count_tokens)

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` (a tokenizer copy of its own: safe beside the model thread and other requests)."""
        with self._counting:
            return len(self._counter(text)["input_ids"])

    def info(self) -> dict:
        lm = self.lm
        return {
            "model": lm.name,
            "spec": self.model,
            "n_layers": lm.n_layers,
            "d_model": lm.d_model,
            "fingerprint": lm.fingerprint(),
            "sites": lm.site_names(),
            "default_site": self.default_site,
            "limits": vars(self.limits),
            "has_vectors": self.library.folder is not None,
            "has_runs": self.runs is not None,
            "steerscope": __version__,
        }

    # --- the work of one request (model thread) -------------------------------------------------------

    def run(self, plan: Plan, ticket: Ticket) -> None:
        started = time.perf_counter()
        ticket.emit({"type": "columns", "labels": [c.label for c in plan.columns]})
        vectors = []
        for i, source in enumerate(plan.sources):
            if source.fit:
                ticket.emit({"type": "status", "message": f"fitting {source.describe()} ..."})
                source.vector = self.library.fitted(source.fit)
                ticket.check()
            assert source.vector is not None
            check_positions(source.vector, plan.positions)  # a fit's shape is known only now
            vectors.append(source.vector)
            ticket.emit({"type": "vector", "index": i, "norms": source.vector.meta["norms"]})
        concept = concept_of(vectors[0])
        steered = [i for i, c in enumerate(plan.columns) if c.steered]
        order = [0, *steered] if self._unsteered_key(plan) in self._unsteered else [*steered, 0]
        results: dict[int, dict] = {}
        for i in order:
            column = plan.columns[i]
            ticket.emit({"type": "start", "column": i, "label": column.label})
            text, ce, cached = self._column(plan, column, vectors, ticket, i)
            result: dict = {"label": column.label, "coefficient": column.coefficient, "second": column.second}
            result |= {"text": text, "fluency_ce": ce, "cached": cached}
            result["scores"] = concept_scores(concept, text) if concept else {}
            results[i] = result
            ticket.emit({"type": "done", "column": i, **result, "seconds": time.perf_counter() - started})
        ticket.emit({"type": "result", "result": self._result(plan, [results[i] for i in range(len(plan.columns))])})

    def _column(self, plan: Plan, column: Column, vectors: list[SteeringVector], ticket: Ticket, index: int):
        """(text, cross-entropy under the unsteered model, whether it came from the cache) of one column."""
        key = self._unsteered_key(plan)
        if not column.steered and key in self._unsteered:
            self._unsteered.move_to_end(key)
            text, ce = self._unsteered[key]
            ticket.emit({"type": "token", "column": index, "text": text})
            return text, ce, True
        stream = TextStream(
            self.lm.tokenizer, lambda text: ticket.emit({"type": "token", "column": index, "text": text}), ticket.check
        )
        with ExitStack() as stack:
            if column.coefficient is not None:  # a steered column
                stack.enter_context(vectors[0].apply(self.lm, column.coefficient, plan.positions))
                if column.second is not None:
                    stack.enter_context(vectors[1].apply(self.lm, column.second, plan.positions))
            (text,) = generate_text(self.lm, [plan.prompt], streamer=stream, **plan.generation)
        ce = _number(completion_cross_entropy(self.lm, [plan.prompt], [text])[0])  # no hook here: unsteered
        if not column.steered:
            self._unsteered[key] = (text, ce)
            while len(self._unsteered) > KEEP_UNSTEERED:
                self._unsteered.popitem(last=False)
        return text, ce, False

    @staticmethod
    def _unsteered_key(plan: Plan) -> tuple:
        return (plan.prompt, tuple(sorted(plan.generation.items())))

    def _result(self, plan: Plan, columns: list[dict]) -> dict:
        """Everything needed to read and redo the result: model, settings, vectors, texts, numbers, commands."""
        names = ["vector_a.safetensors", "vector_b.safetensors"]
        paths = [str(self.library.path_of(s.file)) if s.file else names[i] for i, s in enumerate(plan.sources)]
        vectors = [
            {"request": s.choice, "meta": s.vector.meta if s.vector else None, "file_for_commands": paths[i]}
            for i, s in enumerate(plan.sources)
        ]
        return {
            "steerscope": __version__,
            "model": {"spec": plan.model, "name": self.lm.name, "fingerprint": self.lm.fingerprint()},
            "settings": plan.settings,
            "generation": plan.generation,
            "vectors": vectors,
            "columns": columns,
            "fluency": "fluency_ce: mean cross-entropy (nats/token) of the completion under the unsteered model",
            "reproduce": plan.reproduce(paths),
        }
