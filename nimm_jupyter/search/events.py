"""Search events, published to subscribers (widget, CLI progress bar, tests).

Types: ``search_started``, ``node_created``, ``node_started``, ``node_progress``
(data: node, epoch, train, val), ``node_finished`` (data: node, status, val, train,
message), ``best_changed`` (data: node, val), ``search_finished`` (data: reason, best),
``log`` (data: message). ``data`` holds JSON-able values only.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

EVENT_TYPES = (
    "search_started", "node_created", "node_started", "node_progress", "node_finished",
    "best_changed", "search_finished", "log",
)


@dataclass
class Event:
    type: str
    run_id: str
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


Subscriber = Callable[[Event], None]
MAX_ERRORS = 100  # subscriber errors kept (the latest)


class EventBus:
    """Thread-safe fan-out; a failing subscriber never breaks a search (its latest
    :data:`MAX_ERRORS` errors are kept in ``errors``)."""

    def __init__(self) -> None:
        self._subs: list[Subscriber] = []
        self._lock = threading.Lock()
        self.errors: list[str] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subs.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._subs:
                    self._subs.remove(fn)

        return unsubscribe

    def publish(self, event: Event) -> None:
        if event.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event.type!r}")
        with self._lock:
            subs = list(self._subs)
        for fn in subs:
            try:
                fn(event)
            except Exception as exc:  # a broken widget must not stop the search
                self.errors.append(f"{getattr(fn, '__name__', fn)}: {exc!r}")
                del self.errors[:-MAX_ERRORS]  # one failing on every progress event adds up
