"""The chaos delivery run (`make chaos`, SPEC §5 durability).

Publishes N events to three destinations on three loopback receivers that fail about 30% of
requests (500, 503, 429 with Retry-After, replies slower than the timeout, connection resets),
SIGKILLs the worker cluster three times at random moments and restarts it, restarts
PostgreSQL once (embedded server only), then proves from what the receivers recorded and
verified that every event reached every destination, that no delivery is left failed and that
every signature verified. Exits 1 on any loss, failed delivery, bad signature or timeout.

    .venv/bin/python chaos/run.py --events 1000 --seed 7
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from stack import PYTHON, LocalStack  # noqa: E402

from chaos.publisher import EVENT_TYPES, event_ids  # noqa: E402
from chaos.receiver import FAULTS, ChaosReceiver, accepted, classify  # noqa: E402

DESTINATIONS = 3
TENANT_SLUG = "chaos"
PROGRESS_EVERY = 5.0
LOOP_PAUSE = 0.2
SWEEP_LOCK = 0x5EE9  # integrations.engine.SWEEP_LOCK (the sweeper's advisory lock)

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
    "publish(tenant_slug={slug!r}, count={count}, seed={seed}, seconds={seconds})"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chaos/run.py",
        description="Chaos delivery run: faulty receivers, SIGKILLed workers, a PostgreSQL "
        "restart; fails on any lost event, failed delivery or bad signature.",
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
        help="global time limit in seconds (default 240 + events/10)",
    )
    add("--requests-csv", type=Path, default=None, help="write every request received here")
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be at least 1")
    if not 0 <= args.fault_rate < 1:
        parser.error("--fault-rate must be within 0..1 (1 would never deliver)")
    if args.kills < 0 or args.pg_restarts < 0:
        parser.error("--kills and --pg-restarts cannot be negative")
    if args.publish_seconds is None:
        args.publish_seconds = min(max(args.events / 40, 20.0), 240.0)
    if args.timeout is None:
        args.timeout = 240 + args.events / 10
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
    publisher: object = None
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

    def share(self) -> float:
        return sum(self.arrived()) / (len(self.expected) * len(self.receivers))

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
            self.stack.kill(self.cluster)
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
                "name": f"chaos-{index + 1}",
                "endpoint_url": receiver.url,
                "secret": receiver.secrets[0],
                "event_types": list(EVENT_TYPES),  # only what we publish: no audit/health
                "timeout_seconds": args.destination_timeout,
            }
            for index, receiver in enumerate(receivers)
        ],
    }
    output = stack.shell(SETUP.format(spec=json.dumps(spec)))
    result = json.loads(output.strip().splitlines()[-1])
    return result["tenant"], result["destinations"]


def drive(run: Run, actions: list[Action], deadline: float) -> bool:
    """Chaos and progress until every event reached every destination; False on timeout."""
    total = len(run.expected)
    next_progress = time.monotonic() + PROGRESS_EVERY
    publisher_reported = False
    while time.monotonic() < deadline:
        for action in actions:
            if action.done_at is None and run.elapsed() >= action.at:
                run.act(action)
        if run.cluster.poll() is not None:  # it died without our SIGKILL: say so, go on
            code = run.cluster.returncode
            run.surprises.append(f"the cluster exited by itself ({code}) at {run.elapsed():.1f}s")
            print(f"[{run.elapsed():6.1f}s] {run.surprises[-1]}; restarting it", flush=True)
            run.restart_cluster()
        code = run.publisher.poll()
        if code is not None and not publisher_reported:
            publisher_reported = True
            print(f"[{run.elapsed():6.1f}s] publisher exited with {code}", flush=True)
            if code != 0:
                run.notes.append(f"the publisher exited with {code}")
        if time.monotonic() >= next_progress:
            print(run.progress_line(), flush=True)
            next_progress = time.monotonic() + PROGRESS_EVERY
        done = all(n >= total for n in run.arrived()) and code is not None
        if done and all(a.done_at is not None for a in actions):
            return True
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
    order = {event_id: index for index, event_id in enumerate(run.expected)}
    per_destination = []
    for receiver in run.receivers:
        records = receiver.received
        kinds = Counter(classify(r) for r in records)
        ids = [eid for r in records if accepted(r) for eid in r.event_ids]
        unique = set(ids)
        first_seen: list[int] = []
        seen: set[str] = set()
        for eid in ids:
            if eid not in seen and eid in order:
                seen.add(eid)
                first_seen.append(order[eid])
        out_of_order = sum(1 for a, b in zip(first_seen, first_seen[1:], strict=False) if b < a)
        per_destination.append(
            {
                "posts": len(records),
                "faults": sum(v for k, v in kinds.items() if k != "ok"),
                "kinds": kinds,
                "arrived": len(unique & expected),
                "missing": sorted(expected - unique, key=order.__getitem__),
                "unexpected": len(unique - expected),
                "duplicates": len(ids) - len(unique),
                "bad_signatures": sum(1 for r in records if not r.signature_ok),
                "out_of_order": out_of_order,
            }
        )
    return {"destinations": per_destination}


def write_requests(run: Run, path: Path) -> None:
    """One line per request received, for looking into a run afterwards."""
    import csv

    order = {event_id: index for index, event_id in enumerate(run.expected)}
    wall_start = time.time() - run.elapsed()
    rows = []
    for number, receiver in enumerate(run.receivers, start=1):
        for record in receiver.received:
            indexes = [order.get(eid, -1) for eid in record.event_ids]
            rows.append(
                (
                    f"{record.time - wall_start:.3f}",
                    f"chaos-{number}",
                    classify(record),
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
            ("t", "destination", "outcome", "status", "events", "first", "last", "uuid")
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
    for index, (destination_id, item) in enumerate(
        zip(run.destination_ids, figures["destinations"], strict=True)
    ):
        missing = item["missing"]
        if not missing:
            continue
        lines.append(f"  chaos-{index + 1}: {len(missing)} missing, first {missing[:3]}")
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
        "SELECT (SELECT count(*) FROM django_q_ormq), (SELECT count(*) FROM pg_locks "
        "WHERE locktype = 'advisory' AND objid = %s)",
        (SWEEP_LOCK,),
    )
    if rows:
        lines.append(
            f"  tasks in the ORM queue: {rows[0][0]}; sweeper holding its lock: {bool(rows[0][1])}"
        )
    return lines


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
    lost = sum(len(item["missing"]) for item in items)
    duplicates = sum(item["duplicates"] for item in items)
    bad_signatures = sum(item["bad_signatures"] for item in items)
    unexpected = sum(item["unexpected"] for item in items)
    out_of_order = sum(item["out_of_order"] for item in items)
    failed = (db or {}).get("states", {}).get("failed")
    open_deliveries = sum(
        (db or {}).get("states", {}).get(state, 0)
        for state in ("pending", "delivering", "retrying")
    )

    print("\nPer destination:")
    rows = [("destination", "POSTs", "faults", "events", "missing", "duplicates", "bad sig")]
    for index, item in enumerate(items):
        rows.append(
            (
                f"chaos-{index + 1}",
                item["posts"],
                item["faults"],
                item["arrived"],
                len(item["missing"]),
                item["duplicates"],
                item["bad_signatures"],
            )
        )
    print(table(rows))

    fault_text = ", ".join(f"{k} {kinds.get(k, 0)}" for k in FAULTS)
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
        ("out-of-order first arrivals", out_of_order),
        ("deliveries failed (DB)", (failed or 0) if db else "?"),
        ("deliveries still open (DB)", open_deliveries if db else "?"),
        ("elapsed to all delivered (s)", f"{delivered_at:.1f}" if delivered_at else "-"),
        ("elapsed with the drain check (s)", f"{run.elapsed():.1f}"),
        ("stack setup before that (s)", f"{run.setup_seconds:.1f}"),
    ]
    print(f"\nChaos run (seed {args.seed}, fault rate {args.fault_rate:.0%}):")
    print(table(summary))

    problems = list(run.notes)
    if not finished:
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
        problems.append(f"{out_of_order} events first arrived out of publishing order")
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
    print("\nOK: every event reached every destination; none lost, none failed.")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    expected = event_ids(args.seed, args.events)
    actions = plan_actions(rng, args.kills, args.pg_restarts, args.publish_seconds)
    request_started, acknowledged = threading.Event(), threading.Event()
    expected_set = set(expected)
    receivers = [
        ChaosReceiver(
            request_started=request_started,
            acknowledged=acknowledged,
            expected=expected_set,
            secrets=[secrets.token_hex(24)],
            fault_rate=args.fault_rate,
            slow_reply_seconds=args.slow_seconds,
            seed=args.seed * 100 + index,
        )
        for index in range(DESTINATIONS)
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
        f"chaos: {args.events} events x {DESTINATIONS} destinations, fault rate "
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
            run.setup_seconds = time.monotonic() - wall
            print(f"stack ready in {run.setup_seconds:.1f}s", flush=True)
            deadline = time.monotonic() + args.timeout
            run.started = time.monotonic()
            run.cluster = stack.start_cluster(workers=args.workers)
            run.start_sweeper()
            code = PUBLISH.format(
                slug=TENANT_SLUG, count=args.events, seed=args.seed, seconds=args.publish_seconds
            )
            run.publisher = stack.spawn(
                [PYTHON, str(ROOT / "manage.py"), "shell", "-v", "0", "-c", code], quiet=False
            )
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
            lost = any(item["missing"] for item in figures["destinations"])
            diagnosis = diagnose(run, figures) if lost else []
            stack.kill(run.cluster)  # the end: nothing to wait for
            if args.requests_csv:
                write_requests(run, args.requests_csv)
            return report(run, figures, db, finished, delivered_at, diagnosis)
    finally:
        for receiver in receivers:
            receiver.stop()


if __name__ == "__main__":
    sys.exit(main())
