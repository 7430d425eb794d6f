"""The work of one OpenAI-style request on the model thread: each prompt's `n` completions generated under the
request's steering, streamed as text deltas, then each choice's full text, token count and finish reason.

A completion here is exactly what `generate_completions` (and so `generate_text`) gives for the same prompt and
settings with the same vectors applied: the stream only watches the tokens, and its deltas add up to the final text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from transformers.generation.streamers import BaseStreamer

from ..core.generate import cut_at_stop, eos_ids, generate_completions
from ..core.models import LoadedModel
from ..steering.requests import Steering, steered
from ..vllm.engine import Steer, VllmEngine
from .engine import Ticket


@dataclass
class CompletionJob:
    """A checked request: rendered prompt texts, `n` choices each, decoding settings and steering."""

    prompts: list[str]
    prompt_tokens: list[int]
    n: int
    generation: dict  # generate_completions keyword arguments (max_new_tokens, do_sample, ..., stop)
    steering: list[Steering] = field(default_factory=list)


def held_back(text: str, stop: list[str]) -> int:
    """How many trailing characters of `text` could be the start of a stop string (or half a character): those
    are not sent yet, so a stream never shows text that the final answer cuts away."""
    hold = 1 if text.endswith("\ufffd") else 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    return hold


class ChoiceStream(BaseStreamer):
    """A transformers streamer over a batch of `n` rows (one prompt, n choices): sends each row's new text as it
    grows, stops following a row at its end-of-sequence token or stop string, and raises when the ticket is
    cancelled (a client that went away), which ends the generation at the next token."""

    def __init__(
        self, lm: LoadedModel, n: int, stop: list[str], send: Callable[[int, str], None], check: Callable[[], None]
    ):
        self.tokenizer, self.stop, self.send, self.check = lm.tokenizer, stop, send, check
        self.ends = eos_ids(lm)
        self.ids: list[list[int]] = [[] for _ in range(n)]
        self.done = [False] * n
        self.shown = [""] * n
        self.prompt_seen = False

    def put(self, value) -> None:
        self.check()
        if not self.prompt_seen:  # generate() first puts the prompt
            self.prompt_seen = True
            return
        tokens = value.reshape(len(self.ids), -1).tolist()
        for row, new in enumerate(tokens):
            if self.done[row]:
                continue
            for token in new:
                if token in self.ends:
                    self.done[row] = True
                    break
                self.ids[row].append(token)
            text = self.tokenizer.decode(self.ids[row], skip_special_tokens=True)
            text, stopped = cut_at_stop(text, self.stop)
            self.done[row] = self.done[row] or stopped
            safe = text if stopped else text[: len(text) - held_back(text, self.stop)]
            self.flush(row, safe)

    def flush(self, row: int, text: str) -> None:
        """Send what `text` adds to what row `row` has shown (nothing if it is not an extension of it)."""
        if text.startswith(self.shown[row]) and len(text) > len(self.shown[row]):
            self.send(row, text[len(self.shown[row]) :])
            self.shown[row] = text

    def end(self) -> None:
        pass


def run_completion(lm: LoadedModel, job: CompletionJob, ticket: Ticket) -> None:
    """Generate every choice of `job` and emit `delta` events while it runs and one `choice` event per choice."""
    generation = dict(job.generation)
    for p, prompt in enumerate(job.prompts):
        base = p * job.n

        def send(row: int, text: str, base: int = base) -> None:
            ticket.emit({"type": "delta", "index": base + row, "text": text})

        stream = ChoiceStream(lm, job.n, generation.get("stop") or [], send, ticket.check)
        with steered(lm, job.steering):
            completions = generate_completions(lm, [prompt] * job.n, streamer=stream, **generation)
        for row, completion in enumerate(completions):
            stream.flush(row, completion.text)
            ticket.emit(
                {
                    "type": "choice",
                    "index": base + row,
                    "text": completion.text,
                    "finish_reason": completion.finish_reason,
                    "completion_tokens": completion.n_tokens,
                    "prompt_tokens": job.prompt_tokens[p],
                }
            )


def run_completion_vllm(engine: VllmEngine, job: CompletionJob, ticket: Ticket) -> None:
    """The same work through a vLLM engine (`serve --engine vllm`): each choice is one vLLM request carrying the
    job's vectors (choice i of a sampled request uses seed + i, so the n choices differ). vLLM returns a whole
    completion at once, so a stream gets it as one delta."""
    g = job.generation
    steers = [Steer(s.vector, s.coefficient, s.positions) for s in job.steering] or None
    greedy = not g["do_sample"]
    for p, prompt in enumerate(job.prompts):
        for row in range(job.n):
            ticket.check()
            (completion,) = engine.generate(
                [prompt],
                steering=[steers],
                max_tokens=g["max_new_tokens"],
                temperature=0.0 if greedy else g["temperature"],
                top_p=1.0 if greedy else g["top_p"],
                seed=g["seed"] + row,
                stop=g.get("stop") or None,
            )
            index = p * job.n + row
            if completion.text:
                ticket.emit({"type": "delta", "index": index, "text": completion.text})
            ticket.emit(
                {
                    "type": "choice",
                    "index": index,
                    "text": completion.text,
                    "finish_reason": completion.finish_reason or "stop",
                    "completion_tokens": len(completion.token_ids),
                    "prompt_tokens": job.prompt_tokens[p],
                }
            )
