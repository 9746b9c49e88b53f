"""The chaos delivery run (`make chaos`, docs/design.md#durability; issue 11's chaos paragraph).

Concurrent publishers publish N events to eight destinations on loopback receivers:

    chaos-1..3  fail about 30% of requests (500, 503, 429 with Retry-After, replies slower than
                the timeout, connection resets); chaos-1's secret is rotated mid-run
    drip        30% of requests drip the status line a byte a second and never finish
    throttle    answers `429 Retry-After: 0` to everything during 2 s of every 8 s
    auth        answers 401 to everything for --auth-outage seconds (60; 20 with --ci) from the
                start, then recovers: its stream holds (no batch fails before a receiver's first
                2xx) and resumes on the first 2xx. (After a success, two permanent failures
                fail their batches and the third trips the breaker, by design: the engine's
                tests cover that; here it would make "0 failed" depend on timing.)
    paused      paused mid-run, activated later: events published meanwhile must still arrive
    deleted     answers after 1 s (within its timeout); deleted while a request is in flight

Meanwhile it SIGKILLs the worker cluster three times at random moments and restarts it, and
restarts PostgreSQL once (embedded server only). Pause, activate, rotate and delete go through
integrations.services in one long-lived `manage.py shell` (chaos/control.py). Then it proves,
from what the receivers recorded and verified: every event reached every destination but the
deleted one, none failed, every signature verified (with the new secret once a rotation has
settled), no destination ever had two requests in flight at once (so no batch was in flight
twice), each publisher's events arrived in order at every destination but the deleted one,
nothing was sent to the paused destination while paused nor to the deleted one after its
deletion. Exits 1 on any of those, or on the time limit.

    python -m chaos.run --events 1000 --seed 7        # from the repository root
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from chaos.publisher import EVENT_TYPES, event_ids
from chaos.receiver import KINDS, ChaosReceiver, overlaps
from devtools.receiver import verify_signature
from scripts.processes import kill_group, start_in_group
from scripts.stack import PYTHON, ROOT, LocalStack

ROTATED, PAUSED, DELETED, AUTH, THROTTLE = "chaos-1", "paused", "deleted", "auth", "throttle"
SETTLE = 5.0  # seconds after an action before its effect must be visible
TENANT_SLUG = "chaos"
PROGRESS_EVERY = 5.0
LOOP_PAUSE = 0.2

SETUP = """
import json
from portal.models import Tenant
from integrations.services import destination_create
spec = json.loads({spec!r})
tenant = Tenant.objects.create(name="Chaos run", slug=spec["slug"])
ids = []
for item in spec["destinations"]:
    destination, _ = destination_create(tenant=tenant, actor=None, data=item)
    ids.append(str(destination.pk))
print(json.dumps({{"tenant": tenant.pk, "destinations": ids}}))
"""

PUBLISH = (
    "from chaos.publisher import publish; "
    "publish(tenant_slug={slug!r}, count={count}, seed={seed}, seconds={seconds}, "
    "part={part}, parts={parts})"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.run",
        description="Chaos delivery run: faulty, dripping, throttling and failing-auth receivers, "
        "concurrent publishers, pause/activate/rotate/delete, SIGKILLed workers, a PostgreSQL "
        "restart; fails on any lost event, failed delivery, bad signature, overlap or reorder.",
    )
    add = parser.add_argument
    add("--events", type=int, default=5000, help="events to publish (default 5000)")
    add("--seed", type=int, default=1, help="seed for faults, kill moments and event ids")
    add("--fault-rate", type=float, default=0.3, help="share of requests that fail (0.3)")
    add("--kills", type=int, default=3, help="SIGKILLs of the worker cluster (3)")
    add("--pg-restarts", type=int, default=1, help="PostgreSQL restarts, embedded only (1)")
    add("--workers", type=int, default=4, help="workers per cluster (Q_WORKERS, 4)")
    add("--batch-size", type=int, default=50, help="WEBHOOK_BATCH_SIZE (50)")
    add("--destination-timeout", type=int, default=2, help="destination timeout_seconds (2)")
    add("--slow-seconds", type=float, default=3.0, help="slow replies take this long (3)")
    add("--retry-schedule", default="1,2,3", help="WEBHOOK_RETRY_SCHEDULE seconds (1,2,3)")
    add("--max-attempts", type=int, default=50, help="WEBHOOK_MAX_ATTEMPTS (50)")
    add(
        "--publish-seconds",
        type=float,
        default=None,
        help="spread publishing over this long (default events/40, within 20..240)",
    )
    add(
        "--timeout",
        type=float,
        default=None,
        help="global time limit in seconds (default 180 + auth outage + events/20)",
    )
    add("--publishers", type=int, default=3, help="concurrent publisher processes (3)")
    add("--ci", action="store_true", help="CI sizes: a 20 s auth outage instead of 60 s")
    add("--auth-outage", type=float, default=None, help="seconds of 401s (60; 20 with --ci)")
    add("--drip-cap", type=float, default=30.0, help="a drip hangs up after this long (30)")
    add("--no-lifecycle", action="store_true", help="no pause/activate/rotate/delete")
    add(
        "--stall-seconds",
        type=float,
        default=60.0,
        help="stop early when nothing arrives for this long and no work is open (60)",
    )
    add("--requests-csv", type=Path, default=None, help="write every request received here")
    args = parser.parse_args(argv)
    if args.auth_outage is None:
        args.auth_outage = 20.0 if args.ci else 60.0
    if not 1 <= args.publishers <= 16:
        parser.error("--publishers must be within 1..16")
    if args.events < 1:
        parser.error("--events must be at least 1")
    if not 0 <= args.fault_rate < 1:
        parser.error("--fault-rate must be within 0..1 (1 would never deliver)")
    if args.kills < 0 or args.pg_restarts < 0:
        parser.error("--kills and --pg-restarts cannot be negative")
    if args.publish_seconds is None:
        args.publish_seconds = min(max(args.events / 40, 20.0), 240.0)
    if args.timeout is None:
        args.timeout = 180 + args.auth_outage + args.events / 20
    return args


# Chaos actions ---------------------------------------------------------------------------------
MOMENTS = {
    "anytime": "at a random moment",
    "mid-request": "as a request reached a receiver",
    "after-ack": "just after a receiver sent a 2xx",
}
MOMENT_WAIT = 5.0  # how long an action waits for its kind of moment


@dataclass
class Action:
    kind: str  # "kill" | "pg"
    at: float  # seconds after publishing started
    down: float  # a killed cluster stays down this long
    moment: str  # a key of MOMENTS
    done_at: float | None = None
    note: str = ""


def plan_actions(rng: random.Random, kills: int, pg_restarts: int, window: float) -> list[Action]:
    """Random moments while publishing (so also while delivering), well apart from each other."""
    kinds = ["kill"] * kills + ["pg"] * pg_restarts
    rng.shuffle(kinds)
    if not kinds:
        return []
    gap = window / (len(kinds) + 2)
    moments: list[float] = []
    for _ in range(1000):  # bounded rejection sampling for well-separated moments
        moments = sorted(rng.uniform(0.08 * window, 0.95 * window) for _ in kinds)
        if all(b - a >= gap for a, b in zip(moments, moments[1:], strict=False)):
            break
    styles = list(MOMENTS)
    rng.shuffle(styles)
    return [
        Action(kind, at, rng.uniform(0.2, 1.2), styles[index % len(styles)])
        for index, (kind, at) in enumerate(zip(kinds, moments, strict=True))
    ]


# Database look-ups (plain SQL against the stack's database) --------------------------------
def query(stack: LocalStack, sql: str, params: tuple | list = ()) -> list[tuple]:
    import psycopg

    with psycopg.connect(stack.libpq_url(), connect_timeout=5, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def try_query(stack: LocalStack, sql: str, params: tuple | list = ()) -> list[tuple] | None:
    try:
        return query(stack, sql, params)
    except Exception as error:  # the database may be restarting: report, do not crash
        print(f"  (database query failed: {str(error).strip().splitlines()[0]})", flush=True)
        return None


def published_count(stack: LocalStack, tenant_id: int) -> int | None:
    rows = try_query(
        stack,
        "SELECT count(*) FROM integrations_event WHERE tenant_id = %s AND event_type = ANY(%s)",
        (tenant_id, list(EVENT_TYPES)),
    )
    return rows[0][0] if rows else None


def open_work(stack: LocalStack) -> tuple[int, int] | None:
    """(open deliveries, events not yet in a batch) across the stack's destinations."""
    rows = try_query(
        stack,
        """
        SELECT
          (SELECT count(*) FROM integrations_delivery
           WHERE NOT is_test AND state IN ('pending', 'delivering', 'retrying')),
          (SELECT count(*) FROM integrations_deliveryevent WHERE delivery_id IS NULL)
        """,
    )
    return (rows[0][0], rows[0][1]) if rows else None


# The run -------------------------------------------------------------------------------------
@dataclass
class Run:
    args: argparse.Namespace
    stack: LocalStack
    receivers: list[ChaosReceiver]
    expected: list[str]
    tenant_id: int = 0
    destination_ids: list[str] = field(default_factory=list)
    cluster: object = None
    publishers: list = field(default_factory=list)
    control: object = None  # the chaos/control.py process
    lifecycle: list[dict] = field(default_factory=list)  # actions done, with wall times
    lifecycle_done: threading.Event = field(default_factory=threading.Event)
    started: float = 0.0
    kills: int = 0
    pg_restarts: int = 0
    pg_skipped: bool = False
    request_started: threading.Event = field(default_factory=threading.Event)
    acknowledged: threading.Event = field(default_factory=threading.Event)
    setup_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # problems: the run fails
    surprises: list[str] = field(default_factory=list)  # worth a look, not a failure

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def arrived(self) -> list[int]:
        return [receiver.progress()[0] for receiver in self.receivers]

    def receiver(self, name: str) -> ChaosReceiver:
        return next(r for r in self.receivers if r.name == name)

    def destination_id(self, name: str) -> str:
        index = next(i for i, r in enumerate(self.receivers) if r.name == name)
        return self.destination_ids[index]

    def deleted(self) -> set[str]:
        """Names of the receivers whose destination was deleted (their losses do not count)."""
        return {a["target"] for a in self.lifecycle if a["op"] == "delete" and a.get("ok")}

    def complete(self) -> bool:
        total = len(self.expected)
        deleted = self.deleted()
        return all(
            n >= total
            for r, n in zip(self.receivers, self.arrived(), strict=True)
            if r.name not in deleted
        )

    def share(self) -> float:
        return sum(self.arrived()) / (len(self.expected) * len(self.receivers))

    # Lifecycle through chaos/control.py ------------------------------------------------------
    def start_control(self) -> None:
        code = f"from chaos.control import serve; serve(max_seconds={self.args.timeout + 300:.0f})"
        self.control = start_in_group(
            [PYTHON, str(ROOT / "manage.py"), "shell", "-v", "0", "-c", code],
            env=self.stack.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.stack.children.append(self.control)
        self._control_reply()  # {"ready": true}

    def _control_reply(self) -> dict:
        for _ in range(1000):  # bounded: skip anything else the shell prints
            line = self.control.stdout.readline()
            if not line:
                raise RuntimeError("the control process ended")
            if line.startswith("CONTROL "):
                return json.loads(line[len("CONTROL ") :])
        raise RuntimeError("the control process printed no answer")

    def command(self, op: str, target: str, **extra) -> dict:
        requested = time.time()
        self.control.stdin.write(
            json.dumps({"op": op, "id": self.destination_id(target), **extra}) + "\n"
        )
        self.control.stdin.flush()
        reply = self._control_reply()
        entry = {"op": op, "target": target, "requested": requested, **reply}
        self.lifecycle.append(entry)
        state = "done" if reply.get("ok") else f"FAILED ({reply.get('error')})"
        print(
            f"[{self.elapsed():6.1f}s] lifecycle: {op} {target} {state} in "
            f"{reply.get('finished', requested) - requested:.2f}s",
            flush=True,
        )
        if not reply.get("ok"):
            self.notes.append(f"lifecycle {op} {target} failed: {reply.get('error')}")
        return entry

    def run_lifecycle(self) -> None:
        """Pause at 25% of publishing, rotate at 40%, delete mid-send at 50%, activate at 60%."""
        window = self.args.publish_seconds
        plan = [(0.25, "pause", PAUSED), (0.40, "rotate", ROTATED), (0.50, "delete", DELETED)]
        plan.append((0.60, "activate", PAUSED))
        try:
            for share, op, target in plan:
                while self.elapsed() < share * window:
                    time.sleep(0.05)
                extra = {}
                if op == "rotate":
                    extra["secret"] = secrets.token_hex(24)
                    self.receiver(target).secrets.append(extra["secret"])  # accept both
                if op == "delete":  # wait (bounded) for a request in flight: delete mid-send
                    victim = self.receiver(target)
                    victim.wait_for(lambda v=victim: v.in_flight > 0, timeout=10.0, interval=0.01)
                    extra_note = victim.in_flight
                entry = self.command(op, target, **extra)
                if op == "delete":
                    entry["in_flight_at_delete"] = extra_note
                if op == "rotate":
                    entry["new_secret"] = extra["secret"]
        except Exception as error:  # the run reports it; the drive loop goes on
            self.notes.append(f"lifecycle stopped: {type(error).__name__}: {error}")
        finally:
            self.lifecycle_done.set()

    def restart_cluster(self) -> None:
        self.cluster = self.stack.start_cluster(workers=self.args.workers)
        self.start_sweeper()

    def start_sweeper(self) -> None:
        for attempt in range(5):  # bounded: the database may still be coming back
            try:
                self.stack.start_sweeper()
                return
            except Exception as error:
                print(f"  sweeper start failed (attempt {attempt + 1}): {error}", flush=True)
                time.sleep(1.0)
        self.notes.append("could not queue the sweeper; relying on its schedule")

    def wait_for_moment(self, action: Action) -> str:
        """Time the action: any moment, mid-request, or between a 2xx and its recording."""
        if action.moment == "anytime":
            return MOMENTS["anytime"]
        signal = self.request_started if action.moment == "mid-request" else self.acknowledged
        signal.clear()
        if signal.wait(MOMENT_WAIT):
            return MOMENTS[action.moment]
        return f"(no request within {MOMENT_WAIT:.0f}s)"

    def act(self, action: Action) -> None:
        how = self.wait_for_moment(action)
        moment = f"{how} at {self.elapsed():.1f}s, {self.share():.0%} arrived"
        if action.kind == "kill":
            kill_group(self.cluster)
            self.kills += 1
            time.sleep(action.down)
            self.restart_cluster()
            action.note = f"SIGKILL cluster {moment}; restarted after {action.down:.1f}s"
        else:
            if self.stack.embedded is None or not self.stack.embedded.started_here:
                self.pg_skipped = True
                whose = "DATABASE_URL is external" if self.stack.embedded is None else "not ours"
                action.note = f"PostgreSQL restart skipped {moment} ({whose})"
            else:
                clock = time.monotonic()
                try:
                    self.stack.restart_postgres()
                    self.pg_restarts += 1
                except Exception as error:
                    self.notes.append(f"the PostgreSQL restart failed: {error}")
                action.note = f"PostgreSQL restarted {moment}; took {time.monotonic() - clock:.1f}s"
                self.start_sweeper()  # the running sweeper lost its connection
        action.done_at = self.elapsed()
        print(f"[{self.elapsed():6.1f}s] chaos: {action.note}", flush=True)

    def progress_line(self) -> str:
        published = published_count(self.stack, self.tenant_id)
        posts = sum(len(r) for r in self.receivers)
        faults = sum(
            sum(v for k, v in r.progress()[1].items() if k != "ok") for r in self.receivers
        )
        arrived = " ".join(f"{n}" for n in self.arrived())
        total = len(self.expected)
        return (
            f"[{self.elapsed():6.1f}s] published {published if published is not None else '?'}"
            f"/{total}  delivered per destination {arrived} (of {total})  POSTs {posts}  "
            f"faults {faults}  kills {self.kills}  pg restarts {self.pg_restarts}"
        )


def setup(stack: LocalStack, receivers: list[ChaosReceiver], args) -> tuple[int, list[str]]:
    spec = {
        "slug": TENANT_SLUG,
        "destinations": [
            {
                "name": receiver.name,
                "endpoint_url": receiver.url,
                "secret": receiver.secrets[0],
                "event_types": list(EVENT_TYPES),  # only what we publish: no audit/health
                "timeout_seconds": args.destination_timeout,
            }
            for receiver in receivers
        ],
    }
    output = stack.shell(SETUP.format(spec=json.dumps(spec)))
    result = json.loads(output.strip().splitlines()[-1])
    return result["tenant"], result["destinations"]


def drive(run: Run, actions: list[Action], deadline: float) -> bool:
    """Chaos and progress until every event reached every destination; False on timeout or
    when nothing can arrive any more (publishers done, no open work, no progress)."""
    next_progress = time.monotonic() + PROGRESS_EVERY
    reported: set[int] = set()
    last_sum, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        for action in actions:
            if action.done_at is None and run.elapsed() >= action.at:
                run.act(action)
        if run.cluster.poll() is not None:  # it died without our SIGKILL: say so, go on
            code = run.cluster.returncode
            run.surprises.append(f"the cluster exited by itself ({code}) at {run.elapsed():.1f}s")
            print(f"[{run.elapsed():6.1f}s] {run.surprises[-1]}; restarting it", flush=True)
            run.restart_cluster()
        for number, publisher in enumerate(run.publishers):
            code = publisher.poll()
            if code is not None and number not in reported:
                reported.add(number)
                print(f"[{run.elapsed():6.1f}s] publisher {number + 1} exited with {code}")
                if code != 0:
                    run.notes.append(f"publisher {number + 1} exited with {code}")
        published = len(reported) == len(run.publishers)
        if time.monotonic() >= next_progress:
            print(run.progress_line(), flush=True)
            next_progress = time.monotonic() + PROGRESS_EVERY
        settled = published and run.lifecycle_done.is_set()
        if settled and run.complete() and all(a.done_at is not None for a in actions):
            return True
        arrived = sum(run.arrived())
        if arrived != last_sum:
            last_sum, last_change = arrived, time.monotonic()
        elif settled and time.monotonic() - last_change > run.args.stall_seconds:
            if open_work(run.stack) == (0, 0):
                run.notes.append(
                    f"stopped early at {run.elapsed():.0f}s: nothing arrived for "
                    f"{run.args.stall_seconds:.0f}s and no work is open (the rest is lost)"
                )
                return False
            last_change = time.monotonic()  # look again after another stall period
        time.sleep(LOOP_PAUSE)
    return False


def wait_drained(run: Run, deadline: float) -> tuple[int, int] | None:
    """Wait (bounded) for the database to show no open work; the last figures seen."""
    last = None
    while time.monotonic() < deadline:
        last = open_work(run.stack)
        if last == (0, 0):
            return last
        time.sleep(0.5)
    return last


# Report ----------------------------------------------------------------------------------------
def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            str(cell).ljust(widths[i]) if i == 0 else str(cell).rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  " + "  ".join(cells))
        if index == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def analyse(run: Run) -> dict:
    """Figures from what the receivers recorded and verified."""
    expected = set(run.expected)
    parts = run.args.publishers
    # Event i is publisher i % parts's (i // parts)-th event: each publisher's order must hold.
    position = {event_id: (i % parts, i // parts) for i, event_id in enumerate(run.expected)}
    order = {event_id: index for index, event_id in enumerate(run.expected)}
    actions = {(a["op"], a["target"]): a for a in run.lifecycle if a.get("ok")}
    per_destination = []
    for receiver in run.receivers:
        spans = sorted(receiver.spans, key=lambda s: s[0])
        kinds = Counter(span[3] for span in spans)
        ids = [eid for _s, _e, r, kind in spans if kind == "ok" for eid in r.event_ids]
        unique = set(ids)
        last_seen: dict[int, int] = {}
        seen: set[str] = set()
        out_of_order = 0
        for eid in ids:
            if eid in seen or eid not in position:
                continue
            seen.add(eid)
            publisher, index = position[eid]
            if index < last_seen.get(publisher, -1):
                out_of_order += 1
            last_seen[publisher] = max(index, last_seen.get(publisher, -1))
        found = overlaps(spans)
        drips = [end - start for start, end, _r, kind in spans if kind == "drip"]
        item = {
            "name": receiver.name,
            "posts": len(spans),
            "faults": sum(v for k, v in kinds.items() if k != "ok"),
            "kinds": kinds,
            "arrived": len(unique & expected),
            "missing": sorted(expected - unique, key=order.__getitem__),
            "unexpected": len(unique - expected),
            "duplicates": len(ids) - len(unique),
            "bad_signatures": sum(1 for _s, _e, r, _k in spans if not r.signature_ok),
            "out_of_order": out_of_order,
            "overlaps": len(found),
            "same_batch_overlaps": sum(1 for o in found if o["same_batch"]),
            "overlap_examples": found[:3],
            "longest_drip_s": max(drips) if drips else None,
            "deleted": receiver.name in run.deleted(),
        }
        if receiver.name == DELETED and ("delete", DELETED) in actions:
            done = actions[("delete", DELETED)]["finished"]
            item["after_delete"] = sum(1 for s, *_ in spans if s > done + SETTLE)
        if receiver.name == PAUSED and ("pause", PAUSED) in actions:
            paused = actions[("pause", PAUSED)]["finished"]
            active = actions.get(("activate", PAUSED), {}).get("started", float("inf"))
            item["while_paused"] = sum(1 for s, *_ in spans if paused + SETTLE < s < active)
            after = [s for s, _e, _r, kind in spans if s >= active and kind == "ok"]
            item["resumed_after_s"] = (min(after) - active) if after else None
        if receiver.name == ROTATED and ("rotate", ROTATED) in actions:
            rotation = actions[("rotate", ROTATED)]
            new = [rotation["new_secret"]]
            item["old_secret_only"] = sum(
                1
                for s, _e, r, _k in spans
                if s > rotation["finished"] + SETTLE
                and not verify_signature(r.body, r.header("X-OneProtect-Signature"), new)
            )
        if receiver.name == AUTH and receiver.outage:
            end = receiver.outage[1]
            after = [s for s, _e, _r, kind in spans if s >= end and kind == "ok"]
            item["recovered_after_s"] = (min(after) - end) if after else None
        per_destination.append(item)
    return {"destinations": per_destination}


def write_requests(run: Run, path: Path) -> None:
    """One line per request received, for looking into a run afterwards."""
    import csv

    order = {event_id: index for index, event_id in enumerate(run.expected)}
    wall_start = time.time() - run.elapsed()
    rows = []
    for receiver in run.receivers:
        for _start, end, record, kind in receiver.spans:
            indexes = [order.get(eid, -1) for eid in record.event_ids]
            rows.append(
                (
                    f"{record.time - wall_start:.3f}",
                    f"{end - record.time:.3f}",
                    receiver.name,
                    kind,
                    record.status if record.status is not None else "",
                    len(record.event_ids),
                    min(indexes, default=""),
                    max(indexes, default=""),
                    record.delivery_id or "",
                )
            )
    rows.sort(key=lambda row: float(row[0]))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ("t", "wall", "destination", "outcome", "status", "events", "first", "last", "uuid")
        )
        writer.writerows(rows)
    print(f"requests written to {path}", flush=True)


def db_figures(run: Run) -> dict | None:
    try:
        states = dict(
            query(
                run.stack,
                "SELECT state, count(*) FROM integrations_delivery WHERE NOT is_test "
                "GROUP BY state",
            )
        )
        (attempts,) = query(run.stack, "SELECT count(*) FROM integrations_attempt")[0]
        stored = {
            str(row[0])
            for row in query(
                run.stack,
                "SELECT event_id FROM integrations_event WHERE tenant_id = %s "
                "AND event_type = ANY(%s)",
                (run.tenant_id, list(EVENT_TYPES)),
            )
        }
        events = len(stored)
        (unbatched,) = query(
            run.stack,
            "SELECT count(*) FROM integrations_deliveryevent WHERE delivery_id IS NULL",
        )[0]
    except Exception as error:
        print(f"database figures unavailable: {error}", flush=True)
        return None
    return {
        "states": states,
        "attempts": attempts,
        "events": events,
        "not_stored": len(set(run.expected) - stored),
        "unbatched": unbatched,
    }


def diagnose(run: Run, figures: dict) -> list[str]:
    """What the database says about missing events (taken while the cluster still runs)."""
    lines = ["", "Diagnosis of missing events:"]
    for destination_id, item in zip(run.destination_ids, figures["destinations"], strict=True):
        missing = item["missing"]
        if not missing or item["deleted"]:
            continue
        lines.append(f"  {item['name']}: {len(missing)} missing, first {missing[:3]}")
        rows = try_query(
            run.stack,
            """
            SELECT coalesce(d.state, '(not in a batch)'), count(*), min(d.attempt_count),
                   max(d.attempt_count)
            FROM integrations_event e
            JOIN integrations_deliveryevent de
              ON de.event_id = e.id AND de.destination_id = %s
            LEFT JOIN integrations_delivery d ON d.id = de.delivery_id
            WHERE e.event_id = ANY(%s::uuid[])
            GROUP BY 1
            """,
            (destination_id, missing),
        )
        if rows is not None:
            queued = sum(row[1] for row in rows)
            for row in rows:
                attempts = f", attempts {row[2]}..{row[3]}" if row[2] is not None else ""
                lines.append(f"    delivery state {row[0]}: {row[1]} events{attempts}")
            if queued < len(missing):
                lines.append(f"    not queued for this destination: {len(missing) - queued}")
        rows = try_query(
            run.stack,
            """
            SELECT active, disabled_at, next_due_at, lease_until, lease_owner, now()
            FROM integrations_destination WHERE id = %s
            """,
            (destination_id,),
        )
        for row in rows or []:
            lines.append(
                f"    destination: active={row[0]} disabled_at={row[1]} next_due_at={row[2]} "
                f"lease_until={row[3]} lease_owner={row[4] or '-'} db_now={row[5]}"
            )
    rows = try_query(
        run.stack,
        "SELECT (SELECT count(*) FROM django_q_ormq), (SELECT count(*) FROM "
        "integrations_deliveryworker WHERE stopped_at IS NULL "
        "AND heartbeat_at > now() - interval '30 seconds')",
        (),
    )
    if rows:
        lines.append(f"  tasks in the ORM queue: {rows[0][0]}; live delivery loops: {rows[0][1]}")
    return lines


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(
    run: Run,
    figures: dict,
    db: dict | None,
    finished: bool,
    delivered_at: float | None,
    diagnosis: list[str],
) -> int:
    args = run.args
    items = figures["destinations"]
    kinds = Counter()
    for item in items:
        kinds.update(item["kinds"])
    kept = [item for item in items if not item["deleted"]]  # a deleted destination may lose
    lost = sum(len(item["missing"]) for item in kept)
    duplicates = sum(item["duplicates"] for item in items)
    bad_signatures = sum(item["bad_signatures"] for item in items)
    unexpected = sum(item["unexpected"] for item in items)
    out_of_order = sum(item["out_of_order"] for item in kept)
    overlap_count = sum(item["overlaps"] for item in items)
    same_batch = sum(item["same_batch_overlaps"] for item in items)
    by_name = {item["name"]: item for item in items}
    drips = [item["longest_drip_s"] for item in items if item["longest_drip_s"] is not None]
    failed = (db or {}).get("states", {}).get("failed")
    open_deliveries = sum(
        (db or {}).get("states", {}).get(state, 0)
        for state in ("pending", "delivering", "retrying")
    )

    print("\nPer destination:")
    rows = [
        (
            "destination",
            "POSTs",
            "faults",
            "events",
            "missing",
            "duplicates",
            "bad sig",
            "overlaps",
            "reordered",
        )
    ]
    for item in items:
        rows.append(
            (
                item["name"] + (" (deleted)" if item["deleted"] else ""),
                item["posts"],
                item["faults"],
                item["arrived"],
                len(item["missing"]),
                item["duplicates"],
                item["bad_signatures"],
                item["overlaps"],
                item["out_of_order"],
            )
        )
    print(table(rows))

    fault_text = ", ".join(f"{k} {kinds.get(k, 0)}" for k in KINDS if kinds.get(k))
    pg = f"{run.pg_restarts}" + (" (restart skipped: not our server)" if run.pg_skipped else "")
    summary = [
        ("figure", "value"),
        ("events published", len(run.expected)),
        ("destinations", len(run.receivers)),
        ("POSTs received", sum(item["posts"] for item in items)),
        ("failures injected", f"{sum(item['faults'] for item in items)} ({fault_text})"),
        ("attempts recorded (DB)", db["attempts"] if db else "?"),
        ("cluster SIGKILLs", run.kills),
        ("PostgreSQL restarts", pg),
        ("duplicates (extra copies)", duplicates),
        ("lost (event x destination)", lost),
        ("unexpected events", unexpected),
        ("bad signatures", bad_signatures),
        ("out-of-order first arrivals (per publisher)", out_of_order),
        (
            "requests in flight twice at once (overlaps)",
            f"{overlap_count} ({same_batch} same batch)",
        ),
        ("publishers", args.publishers),
        ("longest drip request (s)", f"{max(drips):.1f}" if drips else "-"),
        (
            "auth: first 2xx after the outage (s)",
            _seconds(by_name.get(AUTH, {}).get("recovered_after_s")),
        ),
        (
            "paused: first 2xx after activate (s)",
            _seconds(by_name.get(PAUSED, {}).get("resumed_after_s")),
        ),
        ("paused: requests while paused", by_name.get(PAUSED, {}).get("while_paused", "-")),
        ("deleted: requests after delete", by_name.get(DELETED, {}).get("after_delete", "-")),
        (
            "rotated: old-secret-only signatures",
            by_name.get(ROTATED, {}).get("old_secret_only", "-"),
        ),
        (
            "lifecycle actions",
            ", ".join(
                f"{a['op']} {a['target']}" + ("" if a.get("ok") else " (failed)")
                for a in run.lifecycle
            )
            or "-",
        ),
        ("deliveries failed (DB)", (failed or 0) if db else "?"),
        ("deliveries still open (DB)", open_deliveries if db else "?"),
        ("elapsed to all delivered (s)", f"{delivered_at:.1f}" if delivered_at else "-"),
        ("elapsed with the drain check (s)", f"{run.elapsed():.1f}"),
        ("stack setup before that (s)", f"{run.setup_seconds:.1f}"),
    ]
    print(f"\nChaos run (seed {args.seed}, fault rate {args.fault_rate:.0%}):")
    print(table(summary))

    problems = list(run.notes)
    if not finished and not any(note.startswith("stopped early") for note in run.notes):
        problems.append(f"time limit of {args.timeout:.0f}s reached before every event arrived")
    if lost:
        problems.append(f"{lost} (event, destination) pairs never acknowledged")
    if db is None:
        problems.append("could not read the database's figures")
    else:
        if failed:
            problems.append(f"{failed} deliveries ended failed")
        if open_deliveries or db["unbatched"]:
            problems.append(
                f"work left in the database: {open_deliveries} open deliveries, "
                f"{db['unbatched']} events not in a batch"
            )
        if db["events"] != len(run.expected) or db["not_stored"]:
            problems.append(
                f"{db['events']} events stored for {len(run.expected)} published "
                f"({db['not_stored']} missing)"
            )
    if bad_signatures:
        problems.append(f"{bad_signatures} requests failed signature verification")
    if unexpected:
        problems.append(f"{unexpected} events arrived that were never published")
    if out_of_order:
        problems.append(f"{out_of_order} events first arrived out of their publisher's order")
    if overlap_count:
        examples = [o for item in items for o in item["overlap_examples"]][:3]
        problems.append(
            f"{overlap_count} requests arrived while another to the same destination was in "
            f"flight ({same_batch} of them the same batch); e.g. {examples}"
        )
    for item in items:
        if item.get("while_paused"):
            problems.append(f"{item['while_paused']} requests to {item['name']} while paused")
        if item.get("after_delete"):
            problems.append(f"{item['after_delete']} requests to {item['name']} after deletion")
        if item.get("old_secret_only"):
            problems.append(
                f"{item['old_secret_only']} requests to {item['name']} not signed with the new "
                "secret after the rotation"
            )
    if not args.no_lifecycle and len([a for a in run.lifecycle if a.get("ok")]) < 4:
        problems.append("not every lifecycle action (pause, rotate, delete, activate) was done")
    for line in diagnosis:
        print(line)
    if run.surprises:
        print("\nSurprises (not failures):")
        for surprise in run.surprises:
            print(f"  - {surprise}")
    if problems:
        print("\nFAILED:")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print(
        "\nOK: every event reached every destination (but the deleted one); none lost, none "
        "failed, no request in flight twice, each publisher's order kept."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    expected = event_ids(args.seed, args.events)
    actions = plan_actions(rng, args.kills, args.pg_restarts, args.publish_seconds)
    request_started, acknowledged = threading.Event(), threading.Event()
    expected_set = set(expected)
    light = min(args.fault_rate, 0.1)
    specs = [
        ("chaos-1", {"fault_rate": args.fault_rate}),
        ("chaos-2", {"fault_rate": args.fault_rate}),
        ("chaos-3", {"fault_rate": args.fault_rate}),
        ("drip", {"fault_rate": 0.3, "fault_kinds": ("drip",)}),
        (THROTTLE, {"fault_rate": light}),
        (AUTH, {"fault_rate": light}),
        (PAUSED, {"fault_rate": light}),
        (DELETED, {"fault_rate": 0.0, "slow_seconds": min(1.0, args.destination_timeout / 2)}),
    ]
    receivers = [
        ChaosReceiver(
            name=name,
            request_started=request_started,
            acknowledged=acknowledged,
            expected=expected_set,
            secrets=[secrets.token_hex(24)],
            slow_reply_seconds=args.slow_seconds,
            drip_cap=args.drip_cap,
            seed=args.seed * 100 + index,
            **options,
        )
        for index, (name, options) in enumerate(specs)
    ]
    overrides = {
        "Q_WORKERS": args.workers,
        "WEBHOOK_BATCH_SIZE": args.batch_size,
        "WEBHOOK_RETRY_SCHEDULE": args.retry_schedule,
        "WEBHOOK_RETRY_JITTER": 0.2,
        "WEBHOOK_MAX_ATTEMPTS": args.max_attempts,
        "WEBHOOK_RETRY_AFTER_CAP": 2,
        "WEBHOOK_LEASE_MARGIN": 2,
        "WEBHOOK_SWEEP_INTERVAL": 0.5,
    }
    print(
        f"chaos: {args.events} events x {len(receivers)} destinations from {args.publishers} "
        f"publishers, auth outage {args.auth_outage:.0f}s, fault rate "
        f"{args.fault_rate:.0%}, {args.kills} kills, {args.pg_restarts} PostgreSQL restart(s), "
        f"seed {args.seed}, publishing over {args.publish_seconds:.0f}s, "
        f"time limit {args.timeout:.0f}s",
        flush=True,
    )
    for action in actions:
        print(f"  planned: {action.kind} at {action.at:.1f}s, {action.moment}", flush=True)
    wall = time.monotonic()
    for receiver in receivers:
        receiver.start()
    try:
        with LocalStack("chaos", receivers=receivers, **overrides) as stack:
            if stack.embedded is None:
                print("DATABASE_URL points at an external server: PostgreSQL restarts are skipped")
            elif not stack.embedded.started_here:
                print(
                    "the embedded server in .data/pg-stack was already running (not started by "
                    "this run): PostgreSQL restarts are skipped"
                )
            run = Run(args, stack, receivers, expected)
            run.request_started, run.acknowledged = request_started, acknowledged
            run.tenant_id, run.destination_ids = setup(stack, receivers, args)
            if args.no_lifecycle:
                run.lifecycle_done.set()
            else:
                run.start_control()
            run.setup_seconds = time.monotonic() - wall
            print(f"stack ready in {run.setup_seconds:.1f}s", flush=True)
            deadline = time.monotonic() + args.timeout
            run.started = time.monotonic()
            now = time.time()
            run.receiver(AUTH).set_outage(now, args.auth_outage)  # before any delivery
            run.receiver(THROTTLE).set_throttle(now + 2.0, every=8.0, lasting=2.0)
            run.cluster = stack.start_cluster(workers=args.workers)
            run.start_sweeper()
            for part in range(args.publishers):
                code = PUBLISH.format(
                    slug=TENANT_SLUG,
                    count=args.events,
                    seed=args.seed,
                    seconds=args.publish_seconds,
                    part=part,
                    parts=args.publishers,
                )
                run.publishers.append(
                    stack.spawn(
                        [PYTHON, str(ROOT / "manage.py"), "shell", "-v", "0", "-c", code],
                        quiet=False,
                    )
                )
            if not args.no_lifecycle:
                threading.Thread(target=run.run_lifecycle, daemon=True).start()
            finished = drive(run, actions, deadline)
            delivered_at = run.elapsed() if finished else None
            print(run.progress_line(), flush=True)
            if finished:
                print(
                    f"[{run.elapsed():6.1f}s] every event arrived; waiting for the database "
                    "to show no open work",
                    flush=True,
                )
                left = wait_drained(run, min(deadline, time.monotonic() + 60))
                if left != (0, 0):
                    run.notes.append(f"database not drained: open work {left}")
            db = db_figures(run)
            figures = analyse(run)
            lost = any(item["missing"] for item in figures["destinations"] if not item["deleted"])
            diagnosis = diagnose(run, figures) if lost else []
            kill_group(run.cluster)  # the end: nothing to wait for
            if args.requests_csv:
                write_requests(run, args.requests_csv)
            return report(run, figures, db, finished, delivered_at, diagnosis)
    finally:
        for receiver in receivers:
            receiver.stop()


if __name__ == "__main__":
    sys.exit(main())
