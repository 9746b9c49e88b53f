"""The retry policy: pure functions, no database, no clock of their own.

Every outcome of an attempt becomes one decision:

* ``deliver``: a 2xx; the batch is done and the stream advances.
* ``retry``: try the same batch again after ``delay`` seconds (transient failures, and any
  failure while the stream is *held*).
* ``hold``: like retry, but the stream is held by the circuit breaker: the receiver refuses
  everything (3 permanent failures in a row, or any failure before its first 2xx). The head
  batch probes on the backoff schedule, without an attempt limit, until the first 2xx.
* ``split``: a 413 for a batch of several events: send it again in halves.
* ``fail``: permanent for this batch (another 4xx or a redirect, or transient failures
  that used up the attempt limit); the stream advances.

Delays follow the schedule (with jitter); ``Retry-After`` may lengthen a delay (capped) but
never shorten it, so a ``429 Retry-After: 0`` cannot burn the attempts in milliseconds.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings

# Permanent failures in a row after which the stream holds instead of failing batches.
BREAKER_THRESHOLD = 3


class Action(StrEnum):
    DELIVER = "deliver"
    RETRY = "retry"
    HOLD = "hold"
    SPLIT = "split"
    FAIL = "fail"


@dataclass(frozen=True)
class Decision:
    action: Action
    delay: float = 0.0  # seconds until the next attempt (retry, hold)


@dataclass(frozen=True)
class Policy:
    """The deployment's retry settings."""

    schedule: Sequence[float]
    jitter: float = 0.2
    retry_after_cap: float = 3600.0
    breaker_threshold: int = BREAKER_THRESHOLD

    @classmethod
    def from_settings(cls) -> Policy:
        return cls(
            schedule=tuple(float(s) for s in settings.WEBHOOK_RETRY_SCHEDULE),
            jitter=float(settings.WEBHOOK_RETRY_JITTER),
            retry_after_cap=float(settings.WEBHOOK_RETRY_AFTER_CAP),
        )


@dataclass(frozen=True)
class Attempted:
    """What the policy needs to know about an attempt and the stream it belongs to."""

    ok: bool
    transient: bool
    status_code: int | None = None
    retry_after: float | None = None
    # This batch's attempt number within its current schedule (1 = first attempt since the
    # batch was created or resent); a resend restarts the schedule.
    attempt_in_schedule: int = 1
    attempts_left: int = 0  # attempts the batch may still make after this one
    event_count: int = 1
    ever_succeeded: bool = True  # has the destination ever answered 2xx?
    held: bool = False  # is the stream held by the breaker already?
    permanent_in_a_row: int = 0  # permanent failures in a row before this attempt
    interrupted: bool = False  # our worker stopped mid-attempt: not the receiver's fault


def backoff(policy: Policy, attempt_in_schedule: int, rng: random.Random | None = None) -> float:
    """The schedule's delay after this attempt (1-based), with jitter; the last step repeats."""
    if not policy.schedule:
        return 0.0
    index = min(max(attempt_in_schedule, 1) - 1, len(policy.schedule) - 1)
    base = float(policy.schedule[index])
    spread = max(0.0, min(policy.jitter, 1.0))
    factor = (rng or random).uniform(1 - spread, 1 + spread) if spread else 1.0
    return base * factor


def retry_delay(
    policy: Policy,
    attempt_in_schedule: int,
    retry_after: float | None,
    rng: random.Random | None = None,
) -> float:
    """Backoff, lengthened (never shortened) by a receiver's Retry-After, which is capped."""
    delay = backoff(policy, attempt_in_schedule, rng)
    if retry_after is not None and retry_after == retry_after:  # not NaN
        delay = max(delay, min(max(retry_after, 0.0), policy.retry_after_cap))
    return delay


def decide(policy: Policy, attempt: Attempted, rng: random.Random | None = None) -> Decision:
    """What to do with the batch after this attempt."""
    if attempt.ok:
        return Decision(Action.DELIVER)
    if attempt.interrupted:
        return Decision(Action.HOLD if attempt.held else Action.RETRY, 0.0)
    delay = retry_delay(policy, attempt.attempt_in_schedule, attempt.retry_after, rng)
    if attempt.status_code == 413 and attempt.event_count > 1:
        return Decision(Action.SPLIT)
    if attempt.held:
        return Decision(Action.HOLD, delay)
    if not attempt.transient:
        if not attempt.ever_succeeded:
            return Decision(Action.HOLD, delay)
        if attempt.permanent_in_a_row + 1 >= policy.breaker_threshold:
            return Decision(Action.HOLD, delay)
        return Decision(Action.FAIL)
    if attempt.attempts_left > 0:
        return Decision(Action.RETRY, delay)
    if not attempt.ever_succeeded:
        # No batch fails for good before the receiver has accepted one: it may simply not
        # be set up yet (the secret just shown, a firewall rule pending).
        return Decision(Action.HOLD, delay)
    return Decision(Action.FAIL)
