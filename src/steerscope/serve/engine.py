"""The one thread that uses the model. A model's hooks are global, so requests wait in a queue and run one at
a time: no request ever sees another's vector. A ticket is one request's place in the queue and its stream of
events; cancelling it (a client that went away) stops its work at the next token and frees its slot.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable

from .errors import Busy, one_line

log = logging.getLogger("steerscope.serve")


class Cancelled(Exception):
    """Raised inside a ticket's work when its client has gone."""


class Ticket:
    """One request's work and the events it sends back to the event loop that waits for them."""

    def __init__(self, work: Callable[[Ticket], None], loop: asyncio.AbstractEventLoop):
        self.work = work
        self.loop = loop
        self.events: asyncio.Queue[dict] = asyncio.Queue()
        self.state = "queued"  # -> "running" -> "done", or "gone" when its client left while it waited
        self.on_cancel: Callable[[], None] = lambda: None
        self._cancelled = threading.Event()

    def emit(self, event: dict) -> None:
        """Send an event to the waiting client (from any thread)."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            self._cancelled.set()

    def cancel(self) -> None:
        self._cancelled.set()
        self.on_cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raise Cancelled when the client has gone (work calls this between steps)."""
        if self._cancelled.is_set():
            raise Cancelled


class ModelThread:
    """The one thread that uses the model: a queue of tickets served one at a time; at most `max_streams`
    tickets are queued or running at once."""

    def __init__(self, max_streams: int):
        self.max_streams = max_streams
        self.admitted = 0  # queued or running
        self.peak = 0  # the most that were ever queued or running at once
        self.finished = 0
        self.cancelled = 0  # tickets whose client went away before their work was done
        self._lock = threading.Lock()
        self._queue: queue.Queue[Ticket | None] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="steerscope-model", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[Ticket], None], loop: asyncio.AbstractEventLoop) -> Ticket:
        """Queue `work(ticket)`; Busy when every slot is taken. The first event says how many wait ahead."""
        with self._lock:
            if self.admitted >= self.max_streams:
                raise Busy(
                    f"all {self.max_streams} stream slots are in use; wait for one to finish "
                    "(or start the server with a larger --max-streams)"
                )
            ahead = self.admitted
            self.admitted += 1
            self.peak = max(self.peak, self.admitted)
        ticket = Ticket(work, loop)
        ticket.on_cancel = lambda: self._leave_queue(ticket)
        ticket.emit({"type": "queued", "ahead": ahead})
        self._queue.put(ticket)
        return ticket

    def _leave_queue(self, ticket: Ticket) -> None:
        """A ticket cancelled while it waits frees its slot now; the thread skips it when it comes up."""
        with self._lock:
            if ticket.state == "queued":
                ticket.state = "gone"
                self.admitted -= 1
                self.cancelled += 1

    def status(self) -> dict:
        with self._lock:
            return {"streams": self.admitted, "max_streams": self.max_streams, "peak": self.peak}

    def close(self) -> None:
        """Stop the thread once the queue is empty."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _serve(self) -> None:
        while (ticket := self._queue.get()) is not None:
            with self._lock:
                if ticket.state == "gone":
                    continue
                ticket.state = "running"
            try:
                ticket.work(ticket)
            except Cancelled:
                with self._lock:
                    self.cancelled += 1
            except Exception as exc:  # bad input found late, or a bug: the client is told, the thread lives on
                if not isinstance(exc, ValueError):
                    log.exception("a playground request failed")
                ticket.emit({"type": "error", "message": one_line(exc)})
            finally:
                with self._lock:
                    ticket.state = "done"
                    self.admitted -= 1
                    self.finished += 1
                ticket.emit({"type": "closed"})
