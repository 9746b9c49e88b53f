"""A faulty receiver for the chaos run: a seeded mix of 500, 503, 429, slow replies and resets.

Built on integrations.receiver.ReceiverServer (which verifies signatures independently of the
engine): each request draws its answer from a seeded generator and queues it as a scripted
response just before the base class consumes it.
"""

from __future__ import annotations

import random
import threading
from collections import Counter

from integrations.receiver import Received, ReceiverServer, ScriptItem

FAULTS = ("500", "503", "429", "slow", "reset")


def classify(record: Received) -> str:
    """'ok' for an acknowledgement the sender saw in time, else the kind of fault."""
    if record.action == "slow":
        return "slow"  # answered only after the sender's timeout: not an acknowledgement
    if record.action == "reset":
        return "reset"
    if record.action == "status" and record.answered_2xx:
        return "ok"
    return str(record.status) if record.status is not None else record.action


def accepted(record: Received) -> bool:
    return classify(record) == "ok"


class ChaosReceiver(ReceiverServer):
    """Fails about `fault_rate` of requests, spread evenly over FAULTS."""

    def __init__(
        self,
        *,
        fault_rate: float,
        slow_reply_seconds: float,
        retry_after_choices: tuple[int, ...] = (1, 2, 5),
        seed: int,
        expected: set[str] | None = None,
        request_started: threading.Event | None = None,
        acknowledged: threading.Event | None = None,
        **kwargs,
    ) -> None:
        super().__init__(seed=seed, **kwargs)
        # Set when a request arrives / when a 2xx has just been sent: the runner times kills.
        self.request_started = request_started or threading.Event()
        self.acknowledged = acknowledged or threading.Event()
        self.fault_rate = fault_rate
        self.slow_reply_seconds = slow_reply_seconds
        self.retry_after_choices = retry_after_choices
        self._chaos_rng = random.Random(f"chaos-receiver-{seed}")
        self._chaos_lock = threading.Lock()
        self.expected = expected  # progress counts only these event ids (None: all)
        self._accepted_ids: set[str] = set()
        self._kinds: Counter[str] = Counter()

    def _draw(self) -> ScriptItem:
        with self._chaos_lock:
            if self._chaos_rng.random() >= self.fault_rate:
                return 200
            fault = self._chaos_rng.choice(FAULTS)
            retry_after = self._chaos_rng.choice(self.retry_after_choices)
        if fault == "429":
            return (429, {"Retry-After": str(retry_after)})
        if fault == "slow":
            return f"slow:{self.slow_reply_seconds:g}"
        if fault == "reset":
            return "reset"
        return int(fault)

    def _next_plan(self):
        self.request_started.set()
        self.script([self._draw()])  # one drawn answer per request, consumed right away
        return super()._next_plan()

    def on_received(self, received: Received) -> None:
        kind = classify(received)
        with self._chaos_lock:
            self._kinds[kind] += 1
            if kind == "ok":
                ids = received.event_ids
                if self.expected is not None:
                    ids = [eid for eid in ids if eid in self.expected]
                self._accepted_ids.update(ids)
        if kind == "ok":
            self.acknowledged.set()

    def progress(self) -> tuple[int, Counter[str]]:
        """(distinct expected events acknowledged so far, requests by outcome kind)."""
        with self._chaos_lock:
            return len(self._accepted_ids), Counter(self._kinds)
