"""The retry policy alone: pure functions, no database, no network, no clock."""

import random

import pytest

from integrations.delivery.policy import Action, Attempted, Policy, backoff, decide, retry_delay

POLICY = Policy(schedule=(30, 120, 600), jitter=0.0, retry_after_cap=3600)


def attempt(**kwargs) -> Attempted:
    defaults = {"ok": False, "transient": True, "attempts_left": 5}
    return Attempted(**{**defaults, **kwargs})


def test_a_2xx_delivers():
    assert decide(POLICY, attempt(ok=True)).action == Action.DELIVER


def test_the_schedule_grows_and_its_last_step_repeats():
    delays = [backoff(POLICY, n) for n in range(1, 6)]
    assert delays == [30, 120, 600, 600, 600]


def test_jitter_stays_within_its_share():
    policy = Policy(schedule=(100,), jitter=0.2)
    rng = random.Random(7)
    delays = [backoff(policy, 1, rng) for _ in range(200)]
    assert min(delays) >= 80 and max(delays) <= 120
    assert len(set(delays)) > 100  # really random


@pytest.mark.parametrize("retry_after", [0, 0.0, -5, 1, float("nan")])
def test_retry_after_never_shortens_the_schedule(retry_after):
    # A `429 Retry-After: 0` (or a date in the past) must not burn attempts in milliseconds.
    decision = decide(POLICY, attempt(status_code=429, retry_after=retry_after))
    assert (decision.action, decision.delay) == (Action.RETRY, 30)


def test_retry_after_may_lengthen_a_delay_up_to_the_cap():
    assert retry_delay(POLICY, 1, 90) == 90
    assert retry_delay(POLICY, 1, 10**9) == 3600
    assert retry_delay(POLICY, 3, 60) == 600  # the schedule is already longer


def test_a_resend_restarts_the_schedule():
    # attempt_in_schedule counts from the resend: its first failure waits the first step.
    assert decide(POLICY, attempt(attempt_in_schedule=1)).delay == 30
    assert decide(POLICY, attempt(attempt_in_schedule=9)).delay == 600


def test_transient_failures_retry_until_the_limit_then_fail():
    assert decide(POLICY, attempt(attempts_left=1)).action == Action.RETRY
    assert decide(POLICY, attempt(attempts_left=0)).action == Action.FAIL


def test_permanent_failures_fail_the_batch_then_trip_the_breaker():
    assert decide(POLICY, attempt(transient=False, status_code=400)).action == Action.FAIL
    two_before = attempt(transient=False, status_code=401, permanent_in_a_row=2)
    decision = decide(POLICY, two_before)
    assert decision.action == Action.HOLD and decision.delay == 30


def test_a_held_stream_probes_on_the_schedule_without_a_limit():
    held = attempt(held=True, attempts_left=-20, attempt_in_schedule=2, transient=False)
    decision = decide(POLICY, held)
    assert (decision.action, decision.delay) == (Action.HOLD, 120)


def test_nothing_fails_before_the_receivers_first_2xx():
    never = {"ever_succeeded": False}
    assert decide(POLICY, attempt(transient=False, status_code=401, **never)).action == Action.HOLD
    assert decide(POLICY, attempt(attempts_left=0, **never)).action == Action.HOLD


def test_413_splits_a_batch_and_fails_a_single_event():
    assert decide(POLICY, attempt(transient=False, status_code=413, event_count=8)).action == (
        Action.SPLIT
    )
    single = attempt(transient=False, status_code=413, event_count=1)
    assert decide(POLICY, single).action == Action.FAIL
