"""The delivery loop: many sends in flight in one worker process of the django-q2 cluster.

A loop runs as a long django-q2 task (`integrations.tasks.delivery_loop`) for a slice of time,
then queues its successor, so that the cluster stays in charge of the process. It holds one of
`WEBHOOK_DELIVERY_LOOPS` slots (an advisory lock), so a cluster runs a fixed number of loops
whatever number of loop tasks are queued.

One iteration: record the outcomes of the sends that finished (one transaction), claim as many
due destinations as there are free places (one transaction), start their sends, then sleep
until a send finishes, a publisher notifies (`LISTEN`), a retry falls due, or the poll
interval passes. The database work runs on one thread of its own (Django's ORM is
synchronous); the event loop only sends. Each send is bounded by the destination's timeout
(see `client`), so the loop never waits on a receiver longer than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import signal
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import psycopg
from django.conf import settings
from django.db import (
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)
from django.utils import timezone
from django_q.cluster import Sentinel

from integrations import jobs
from integrations.delivery import queue, record
from integrations.delivery.client import AsyncSender, Outcome
from integrations.models import DeliveryWorker, ErrorKind

logger = logging.getLogger("integrations.delivery")

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
HEARTBEAT_SECONDS = 2.0
SHED_DELAY = 0.05  # seconds a loop leaves the streams it shed to the others
# How long a finished send waits for the others in flight before its outcome is recorded: a
# record costs about the same for one outcome as for twenty, so sends that finish together
# are recorded together (fast receivers), at the price of a few milliseconds of latency.
RECORD_LINGER = 0.004
# Only sends started this recently are waited for: one that is older is at a slow, dripping or
# throttling receiver and will not finish within the linger, so it must not delay the records
# (and so the next batches) of the streams at fast receivers.
LINGER_RECENT = 0.05
# Live loops, and the streams in flight or due: a loop's fair share is the second over the first.
SHARE_SQL = """
SELECT (SELECT count(*) FROM integrations_deliveryworker
        WHERE stopped_at IS NULL AND heartbeat_at > %s),
       (SELECT count(*) FROM integrations_destination
        WHERE active AND disabled_at IS NULL
          AND (lease_until >= statement_timestamp() OR next_due_at <= statement_timestamp()))
"""
SHUTDOWN_GRACE_SECONDS = 2.0
INTERRUPTED_DETAIL = "The worker cluster stopped during this attempt; it will be retried."

# Set when this process must stop (SIGTERM to the worker, or its cluster stopping).
STOP = threading.Event()
_cluster_stop_event: Any = None  # the django-q2 Sentinel's stop event, found at spawn


def stopping() -> bool:
    return STOP.is_set() or bool(_cluster_stop_event is not None and _cluster_stop_event.is_set())


@dataclass
class LoopResult:
    slot: int | None
    attempts: int
    stopped: bool  # ended because the process or cluster is stopping (no successor)


class DeliveryLoop:
    def __init__(self, *, capacity: int, slice_seconds: float) -> None:
        self.capacity = max(1, capacity)
        self.slice_seconds = slice_seconds
        self.db_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delivery-db")
        self.sender = AsyncSender()
        self.in_flight: dict[Any, asyncio.Task] = {}
        # When the latest send of each stream started (monotonic): set by _start, read only
        # for the streams in flight (one float per stream this loop has sent to).
        self.sent_at: dict[Any, float] = {}
        self.finished: list[tuple[queue.Claim, Outcome]] = []
        self.kick = asyncio.Event()
        self.counters: Counter[str] = Counter()
        self.attempts = 0
        self.slot: int | None = None
        self.key: int | None = None
        self.ends_at = 0.0  # the end of this loop's slice (time.monotonic)
        # When to claim next (time.monotonic): now after a publisher's notification or a stream
        # letting its lease go, else when the next stream falls due or the poll interval ends.
        # While every stream in flight goes straight on, the loop runs no claim at all.
        self.claim_at = 0.0
        # This loop's fair share of the streams in flight across every live loop (from the
        # heartbeat): the most streams it keeps going by itself, so that a few busy streams are
        # spread over the loops and not all held by whichever claimed first. Claims are not
        # bound by it (new work never waits for a heartbeat); None until the first heartbeat.
        self.share: int | None = None
        self.started_at = timezone.now()

    # Database (one thread, one connection) -------------------------------------------------
    async def db(self, function, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.db_pool, lambda: function(*args, **kwargs))

    def _take_slot(self) -> int | None:
        close_old_connections()
        self.key = queue.owner_key()
        queue.use_prepared_statements()
        with connection.cursor() as cursor:
            # Claims and records need not wait for their WAL flush: a commit lost in a crash
            # only means a batch is sent again (delivery is at least once), never lost.
            cursor.execute("SET synchronous_commit TO OFF")
            for slot in range(max(1, settings.WEBHOOK_DELIVERY_LOOPS)):
                cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [queue.SLOT_LOCK_NS, slot])
                if cursor.fetchone()[0]:
                    return slot
        return None

    def _release(self) -> None:
        try:
            if self.key is not None:  # else no heartbeat row was written
                DeliveryWorker.objects.filter(key=self.key).update(
                    stopped_at=timezone.now(), in_flight=0
                )
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock_all()")
        except Exception:
            logger.warning("could not release the loop's locks", exc_info=True)
        finally:
            queue.forget_owner()
            connection.close()

    def _reconnect(self) -> None:
        """After a lost database session: a new connection, owner key and slot lock."""
        queue.forget_owner()
        connection.close()
        self.key = queue.owner_key(prefer=self.key)  # keeps the leases of sends in flight
        queue.use_prepared_statements()
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO OFF")
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [queue.SLOT_LOCK_NS, self.slot])

    def _heartbeat(self, counters: dict[str, int]) -> None:
        now = timezone.now()
        DeliveryWorker.objects.update_or_create(
            key=self.key,
            defaults={
                "hostname": socket.gethostname()[:255],
                "pid": os.getpid(),
                "slot": self.slot or 0,
                "started_at": self.started_at,
                "heartbeat_at": now,
                "in_flight": len(self.in_flight),
                "attempts": self.attempts,
                "stopped_at": None,
            },
        )
        if counters:
            names = sorted(counters)
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    """
                    INSERT INTO integrations_deliverycounter (name, value)
                    SELECT * FROM unnest(%s::text[], %s::bigint[])
                    ON CONFLICT (name) DO UPDATE
                    SET value = integrations_deliverycounter.value + EXCLUDED.value
                    """,
                    [names, [counters[n] for n in names]],
                )
        with connection.cursor() as cursor:
            cursor.execute(SHARE_SQL, [now - timedelta(seconds=3 * HEARTBEAT_SECONDS)])
            loops, streams = cursor.fetchone()
        self.share = max(1, math.ceil(streams / max(1, loops)))
        if self.slot == 0:
            queue.sweep()
            DeliveryWorker.objects.filter(heartbeat_at__lt=now - timedelta(days=1)).delete()

    def _room(self) -> int:
        """How many more streams this loop may have in flight now."""
        return self.capacity - len(self.in_flight)

    def _keep(self) -> int | None:
        """How many of the streams just recorded may go straight on (within the share)."""
        if self.share is None:
            return None
        return max(0, min(self.capacity, self.share) - len(self.in_flight))

    def _claim(self, limit: int):
        claims, lost = queue.claim_many(owner=self.key, limit=limit)
        record.record_lost(lost)
        return claims, len(lost)

    def _record(self, results, continue_streams: bool = False, most: int | None = None):
        """Record outcomes; with `continue_streams`, also the next batches of (at most `most`)
        streams that may go on at once (they keep their lease: record.record_and_continue)."""
        try:
            owner = self.key if continue_streams else None
            return record.record_and_continue(results, owner=owner, most=most)
        except (OperationalError, InterfaceError):
            raise  # the database is away: the loop keeps the outcomes and tries again
        except Exception:
            # One bad outcome must not block the others: record them one by one.
            logger.exception("recording %d outcomes failed; recording one by one", len(results))
            recorded = []
            for result in results:
                try:
                    recorded += record.record_many([result])
                except Exception:
                    logger.exception("could not record an outcome; its lease will expire")
            return recorded, []

    # Sending -------------------------------------------------------------------------------
    async def _send(self, claim: queue.Claim) -> None:
        started = time.perf_counter()
        try:
            if claim.request is None:
                outcome = record.failed_outcome(claim, claim.error or "Could not prepare.")
            else:
                # The client bounds the attempt; this outer bound only guards the guard.
                outcome = await asyncio.wait_for(
                    self.sender.send(
                        claim.destination, claim.request, timeout=claim.timeout, release_body=True
                    ),
                    timeout=claim.timeout + 1.0,
                )
        except asyncio.CancelledError:
            outcome = record.failed_outcome(claim, INTERRUPTED_DETAIL)
            outcome.interrupted = True
            outcome.request_headers = claim.request.shown_headers if claim.request else {}
            self._finished(claim, outcome)
            raise
        except Exception as error:  # never leave a claim without an outcome
            logger.exception("unexpected error sending to %s", claim.destination.pk)
            outcome = record.failed_outcome(
                claim,
                f"Unexpected error during the attempt ({type(error).__name__}).",
                ErrorKind.TIMEOUT if isinstance(error, TimeoutError) else ErrorKind.OTHER,
            )
        self._observe(time.perf_counter() - started)
        self._finished(claim, outcome)
        self.kick.set()

    def _finished(self, claim: queue.Claim, outcome: Outcome) -> None:
        """Hand the outcome to the next flush, and free the stream's place at once (not when
        the task's done callback runs): the flush counts the places left (its share)."""
        key = claim.destination.pk
        if self.in_flight.get(key) is asyncio.current_task():
            del self.in_flight[key]
        self.finished.append((claim, outcome))

    def _observe(self, seconds: float) -> None:
        self.counters["attempt_duration_count"] += 1
        self.counters["attempt_duration_sum_ms"] += int(seconds * 1000)
        for bound in DURATION_BUCKETS:
            if seconds <= bound:
                self.counters[f"attempt_duration_le_{bound:g}"] += 1

    def _start(self, claims: list[queue.Claim]) -> None:
        for claim in claims:
            task = asyncio.create_task(self._send(claim))
            key = claim.destination.pk
            self.in_flight[key] = task
            self.sent_at[key] = time.monotonic()
            task.add_done_callback(partial(self._forget, key))

    def _forget(self, key: Any, task: asyncio.Task) -> None:
        if self.in_flight.get(key) is task:  # not a continued stream's next send
            del self.in_flight[key]

    async def _linger(self) -> None:
        """Before a record: wait up to RECORD_LINGER for the sends in flight that started in
        the last LINGER_RECENT seconds to finish (each finishing send wakes us), so that they
        share the record. Older sends (slow receivers) are not waited for."""
        if not self.finished:
            return
        deadline = time.monotonic() + RECORD_LINGER
        while not stopping():
            now = time.monotonic()
            recent = now - LINGER_RECENT
            if deadline <= now or not any(
                self.sent_at.get(key, 0.0) > recent for key in self.in_flight
            ):
                return
            self.kick.clear()
            await self._wait(deadline - now)

    async def _flush(self) -> None:
        if not self.finished:
            return
        results, self.finished = self.finished, []
        go_on = not stopping() and time.monotonic() < self.ends_at
        try:
            keep = self._keep()
            recorded, continued = await self.db(self._record, results, go_on, keep)
        except (OperationalError, InterfaceError):
            self.finished = results + self.finished
            raise
        self.attempts += len(results)
        for item in recorded:
            self.counters[f"attempts_{item.action}"] += 1
        if len(continued) < len(results):
            # A stream let its lease go (done, yielding, retrying later...): the claim decides
            # what is due now and when the next one falls due. Streams shed over the share go
            # to the other loops first (they were notified): this one claims a little later.
            shed = keep is not None and len(continued) >= keep
            self.claim_at = time.monotonic() + SHED_DELAY if shed else 0.0
        self._start(continued)

    # Wake-ups ------------------------------------------------------------------------------
    async def _listen(self) -> None:
        """LISTEN for publishers' notifications; reconnect with a backoff when it fails."""
        params = dict(connection.get_connection_params())
        for name in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
            params.pop(name, None)
        delay = 0.5
        while True:
            try:
                aconn = await psycopg.AsyncConnection.connect(**params, autocommit=True)
                async with aconn:
                    await aconn.execute(f"LISTEN {queue.NOTIFY_CHANNEL}")
                    delay = 0.5
                    self.claim_at = 0.0  # anything published while we were not listening
                    self.kick.set()
                    async for _ in aconn.notifies():
                        self.claim_at = 0.0
                        self.kick.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("LISTEN failed; polling until it is back", exc_info=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _beat(self) -> None:
        """Heartbeat, counters and (slot 0) the sweep, every HEARTBEAT_SECONDS."""
        while True:
            counters, self.counters = dict(self.counters), Counter()
            try:
                await self.db(self._heartbeat, counters)
            except Exception:
                logger.warning("heartbeat failed", exc_info=True)
                self.counters.update(counters)
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _watch_stop(self) -> None:
        """Wake the loop as soon as the process or its cluster is stopping."""
        while not stopping():
            await asyncio.sleep(0.2)
        self.kick.set()

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.kick.wait(), timeout=max(0.0, seconds))

    # The loop ------------------------------------------------------------------------------
    async def run(self) -> LoopResult:
        self.slot = await self.db(self._take_slot)
        if self.slot is None:
            await self.db(self._release)
            self.db_pool.shutdown()
            return LoopResult(None, 0, stopping())
        with contextlib.suppress(Exception):  # the share, before the first claim
            await self.db(self._heartbeat, {})
        listener = asyncio.create_task(self._listen())
        watcher = asyncio.create_task(self._watch_stop())
        beat = asyncio.create_task(self._beat())
        end = self.ends_at = time.monotonic() + self.slice_seconds
        poll = settings.WEBHOOK_POLL_INTERVAL
        try:
            while not stopping() and time.monotonic() < end:
                self.kick.clear()
                try:
                    await self._linger()
                    await self._flush()
                    # A few streams at a time with large batches (queue.claim_chunk), and only
                    # when something may have become due (see claim_at).
                    limit = min(self._room(), queue.claim_chunk())
                    claimed = 0
                    tried = limit > 0 and time.monotonic() >= self.claim_at
                    if tried:
                        self.claim_at = time.monotonic() + poll  # the safety net, until told
                        claims, _ = await self.db(self._claim, limit)
                        self._start(claims)
                        claimed = len(claims)
                    if claimed and claimed == limit:
                        self.claim_at = 0.0  # more may be due: claim again once a place frees
                    elif tried:
                        # Nothing more due now: claim again when the next stream falls due.
                        due_in = await self.db(queue.next_due_in, poll)
                        self.claim_at = time.monotonic() + max(0.05, due_in)
                except (OperationalError, InterfaceError):
                    # The database restarted: sends in flight go on; reconnect and carry on.
                    logger.warning("database unavailable; reconnecting", exc_info=True)
                    await asyncio.sleep(1.0)
                    with contextlib.suppress(OperationalError, InterfaceError):
                        await self.db(self._reconnect)
                    self.claim_at = 0.0
                    continue
                if claimed and claimed == limit:
                    await asyncio.sleep(0)
                    if self._room() > 0:
                        continue
                if self.finished:
                    continue
                now = time.monotonic()
                # Every place taken: only a finishing send (its kick) can let more go out.
                wait = poll if self._room() <= 0 else min(poll, self.claim_at - now)
                await self._wait(min(max(0.0, wait), max(0.0, end - now)))
        except Exception:
            logger.exception("the delivery loop failed; its sends are being recorded")
        finally:
            await self._wind_down()
            for task in (listener, watcher, beat):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.sender.close()
            counters, self.counters = dict(self.counters), Counter()
            with contextlib.suppress(Exception):
                await self.db(self._heartbeat, counters)
            await self.db(self._release)
            self.db_pool.shutdown()
        return LoopResult(self.slot, self.attempts, stopping())

    async def _wind_down(self) -> None:
        """Let sends finish (bounded by their deadlines, or a short grace when stopping)."""
        deadline = time.monotonic() + (
            SHUTDOWN_GRACE_SECONDS if stopping() else settings.WEBHOOK_TIMEOUT_MAX + 2
        )
        while self.in_flight and time.monotonic() < deadline:
            pending = list(self.in_flight.values())
            wait = max(0.0, deadline - time.monotonic())
            if stopping():
                wait = min(wait, max(0.0, SHUTDOWN_GRACE_SECONDS))
            await asyncio.wait(pending, timeout=min(wait, 1.0))
            with contextlib.suppress(OperationalError, InterfaceError):
                await self._flush()
            if stopping() and time.monotonic() >= deadline:
                break
        for task in list(self.in_flight.values()):
            task.cancel()
        if self.in_flight:
            await asyncio.wait(list(self.in_flight.values()), timeout=1.0)
        with contextlib.suppress(OperationalError, InterfaceError):
            await self._flush()  # else the leases expire and the attempts count as lost


def run_loop(*, capacity: int | None = None, slice_seconds: float | None = None) -> LoopResult:
    """Run one delivery loop to the end of its slice in this (worker) process."""
    loop = DeliveryLoop(
        capacity=capacity or settings.WEBHOOK_MAX_IN_FLIGHT,
        slice_seconds=settings.WEBHOOK_LOOP_SLICE if slice_seconds is None else slice_seconds,
    )
    _loop_running.set()
    try:
        return asyncio.run(loop.run())
    finally:
        _loop_running.clear()


# Cluster integration ----------------------------------------------------------------------
def on_worker_spawn(sender=None, proc_name: str = "", **kwargs) -> None:
    """In each new worker: stop cleanly on SIGTERM, and make sure delivery loops run."""
    global _cluster_stop_event
    if not proc_name:
        return
    _cluster_stop_event = _find_cluster_stop_event()
    if _cluster_stop_event is None:
        logger.warning("worker %s: cannot see its cluster's stop event", proc_name)
    signal.signal(signal.SIGTERM, _worker_sigterm)
    if settings.WEBHOOK_ENQUEUE:
        try:
            jobs.enqueue_delivery_loop()
        except Exception:
            logger.warning("could not queue a delivery loop at worker start", exc_info=True)


def _worker_sigterm(signum, frame) -> None:
    """SIGTERM to an idle worker ends it; a running loop winds down first (see run())."""
    STOP.set()
    if not _loop_running.is_set():
        raise SystemExit(0)


_loop_running = threading.Event()


def _find_cluster_stop_event() -> Any:
    """The django-q2 Sentinel's stop event, inherited by this forked worker (if any)."""
    for obj in gc.get_objects():
        if isinstance(obj, Sentinel):
            return getattr(obj, "stop_event", None)
    return None
