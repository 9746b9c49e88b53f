"""The benchmark's context: configuration, the receiver process and the stack helpers that
every section uses (SQL, Django shell scripts, seeding backlogs, starting clusters)."""

from __future__ import annotations

import http.client
import json
import os
import platform
import secrets
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import START, CpuMeter, descendants, log
from scripts.processes import end_group, free_port, kill_group, start_in_group, wait_until
from scripts.stack import LocalStack

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable
ADMIN_EMAIL = "bench-admin@example.test"
ADMIN_PASSWORD = "bench-" + secrets.token_hex(8)


def default_workers() -> int:
    """Q_WORKERS' default in portal/settings.py (the cluster "at its default size"), or the
    Q_WORKERS of this environment (`--set Q_WORKERS=N`)."""
    return int(os.environ.get("Q_WORKERS", "4"))


# The receiver -------------------------------------------------------------------------------
class Receiver:
    def __init__(self, processes: int, max_seconds: float):
        self.port = free_port()
        self.secret = secrets.token_hex(16)
        self.processes = processes
        self.max_seconds = max_seconds
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Receiver:
        self.process = start_in_group(
            [PYTHON, str(BENCH / "receiver.py"), "--port", str(self.port)]
            + ["--processes", str(self.processes), "--max-seconds", str(self.max_seconds)],
            env={**os.environ, "BENCH_RECEIVER_SECRET": self.secret},
            stdout=subprocess.DEVNULL,
        )
        if not wait_until(self._up, timeout=15, interval=0.1):
            raise RuntimeError("the benchmark receiver did not start")
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            end_group(self.process)

    def _up(self) -> bool:
        try:
            self.stats()
            return True
        except OSError:
            return False

    def request(self, method: str, path: str):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def stats(self) -> dict:
        return self.request("GET", "/stats")

    def reset(self) -> None:
        self.request("POST", "/reset")

    def samples(self, tag: int) -> list[float]:
        return self.request("GET", f"/samples?tag={tag}")["latencies_ms"]

    def requests(self, mode: str = "") -> dict:
        """The request log: {"now": t, "requests": [[dest, start, end|None, events, status,
        mode, ids hash], ...]} (see bench/receiver.py)."""
        return self.request("GET", f"/requests?mode={mode}")

    def pids(self) -> list[int]:
        return [self.process.pid, *descendants(self.process.pid)] if self.process else []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


# The bench ----------------------------------------------------------------------------------
@dataclass
class Config:
    quick: bool
    runs: int
    budget: float
    capacity_seconds: float
    bare_seconds: float
    clients_requests: int
    clients_seconds: float
    drain_events: int
    drain_limit_100: float
    drain_limit_1: float
    publish_seconds: float
    latency_events: int
    fleet_destinations: int  # (a), (g): destinations ...
    fleet_tenants: int  # ... in this many tenants
    throughput_events: int  # (a): backlog per destination
    throughput_seconds: float
    fair_drip: int  # (b), (c): the noisy tenant's drip destinations ...
    fair_slow: int  # ... and slow (3 s) ones
    fair_backlog: int  # events waiting per noisy destination
    fair_events: int  # fresh-tenant events measured
    drip_timeout: int  # timeout_seconds of the drip destinations
    memory_sizes: tuple[int, int]
    page_rows: int
    page_requests: int
    redis_url: str
    profile: bool
    only: list[str] = field(default_factory=list)


def make_config(args, sections: list[str]) -> Config:
    quick = args.quick
    runs = args.runs or (1 if quick else 3)
    return Config(
        quick=quick,
        runs=runs,
        budget=(args.budget_minutes or (12 if quick else 30)) * 60,
        capacity_seconds=2 if quick else 3,
        bare_seconds=3 if quick else 5,
        clients_requests=3_000 if quick else 20_000,
        clients_seconds=4 if quick else 6,
        drain_events=10_000 if quick else 50_000,
        drain_limit_100=45 if quick else 120,
        drain_limit_1=15 if quick else 40,
        publish_seconds=4 if quick else 8,
        latency_events=30 if quick else 100,
        fleet_destinations=500,
        fleet_tenants=50,
        throughput_events=4 if quick else 20,
        throughput_seconds=20 if quick else 45,
        fair_drip=50,
        fair_slow=200,
        fair_backlog=5 if quick else 20,
        fair_events=15 if quick else 60,
        drip_timeout=5,
        memory_sizes=(5_000, 20_000) if quick else (20_000, 100_000),
        page_rows=100_000 if quick else 1_000_000,
        page_requests=10 if quick else 20,
        redis_url=args.redis_url,
        profile=args.profile,
        only=[s.strip() for s in args.only.split(",")] if args.only else list(sections),
    )


class Bench:
    def __init__(self, config: Config, stack: LocalStack, receiver: Receiver, embedded=None):
        self.config = config
        self.embedded = embedded
        self.stack = stack
        self.rx = receiver
        self.results: dict = {}
        self.db = None
        self.ids: dict = {}
        self.postmaster: int | None = None
        self.fleets: dict[str, dict[str, list[str]]] = {}
        self.next_dest = 100  # receiver destination numbers (bench/receiver.py) handed out

    # Helpers --------------------------------------------------------------------------------
    def remaining(self) -> float:
        return self.config.budget - (time.monotonic() - START)

    def sql(self, statement: str, params=None):
        with self.db.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else None

    def shell_json(self, script: str, params: dict, timeout: float = 600, **extra) -> dict:
        code = f"import runpy; runpy.run_path({str(BENCH / 'stackscripts' / script)!r})"
        output = self.stack.shell(code, timeout=timeout, BENCH_PARAMS=json.dumps(params), **extra)
        for line in output.splitlines():
            if line.startswith("BENCH_JSON "):
                return json.loads(line[len("BENCH_JSON ") :])
        raise RuntimeError(f"{script} printed no result:\n{output[-2000:]}")

    def postgres_pids(self) -> list[int]:
        if self.postmaster is None:
            return []
        return [self.postmaster, *descendants(self.postmaster)]

    def meter(self, cluster=None, portal=None) -> CpuMeter:
        groups = {"postgres": self.postgres_pids, "receiver": self.rx.pids}
        if cluster is not None:
            groups = {"workers": lambda: descendants(cluster.pid), **groups}
        if portal is not None:
            groups = {"portal": lambda: [portal.pid, *descendants(portal.pid)], **groups}
        return CpuMeter(groups)

    def reset_delivery_state(self) -> None:
        """Empty the outbox, deliveries, attempts and events; idle every destination."""
        self.sql(
            "TRUNCATE integrations_attempt, integrations_deliveryevent, integrations_delivery, "
            "integrations_event"
        )
        self.sql("DELETE FROM django_q_ormq")
        self.sql("DELETE FROM django_q_task")
        self.sql(
            "UPDATE integrations_destination SET next_due_at = NULL, lease_until = NULL, "
            "lease_owner = '', last_attempt_at = NULL, last_outcome_ok = NULL, "
            "last_status_code = NULL, last_error_kind = '', failing_since = NULL, "
            "retrying = false, health_alerted = false, disabled_at = NULL"
        )
        self.rx.reset()

    def seed_backlog(self, slug: str, count: int, destinations: list[str] | None = None) -> None:
        """`count` waiting ~1 KiB events spread over the tenant's destinations, all due now."""
        tenant = self.ids["tenants"][slug]
        destinations = destinations or self.ids["destinations"][slug]
        last = self.sql("SELECT coalesce(max(id), 0) FROM integrations_event")[0][0]
        self.sql(
            """
            INSERT INTO integrations_event
                (tenant_id, event_id, event_type, severity, event_time, payload, created_at)
            SELECT %s, gen_random_uuid(), 'detection.alert', 'high', now(),
                   jsonb_build_object('detection', 'Bench detection', 'outcome', 'alerted',
                                      'seq', g, 'pad', repeat('x', 780)),
                   now()
            FROM generate_series(1, %s) AS g
            """,
            [tenant, count],
        )
        self.sql(
            """
            INSERT INTO integrations_deliveryevent (destination_id, event_id, delivery_id)
            SELECT (%s::uuid[])[1 + mod(e.id, %s)], e.id, NULL
            FROM integrations_event e WHERE e.tenant_id = %s AND e.id > %s
            """,
            [destinations, len(destinations), tenant, last],
        )
        self.sql(
            "UPDATE integrations_destination SET next_due_at = now() - interval '10 seconds' "
            "WHERE id = ANY(%s::uuid[])",
            [destinations],
        )
        self.sql("ANALYZE integrations_event, integrations_deliveryevent, integrations_delivery")

    def fleet(self, key: str, groups: list[dict]) -> dict:
        """Create (once) tenants with destinations on tracked receiver paths; see fleet.py.

        Returns {slug: [destination ids]} for this fleet; every destination's receiver number
        is in self.ids["dest_numbers"]."""
        if key in self.fleets:
            return self.fleets[key]
        for group in groups:
            group["first_dest"] = self.next_dest
            self.next_dest += group["tenants"] * group["per_tenant"]
        started = time.monotonic()
        out = self.shell_json(
            "fleet.py", {"receiver": self.rx.url(""), "secret": self.rx.secret, "groups": groups}
        )
        self.ids["tenants"].update(out["tenants"])
        for slug, ids in out["destinations"].items():
            known = self.ids["destinations"].setdefault(slug, [])
            known.extend(i for i in ids if i not in known)
        self.ids.setdefault("dest_numbers", {}).update(out["dest_numbers"])
        self.fleets[key] = out["destinations"]
        count = sum(len(v) for v in out["destinations"].values())
        log(
            f"{key}: {count} destinations in {len(out['tenants'])} tenants ready in "
            f"{time.monotonic() - started:.0f}s"
        )
        return self.fleets[key]

    def seed_fleet(self, destinations: dict[str, list[str]], per_destination: int) -> int:
        """`per_destination` waiting events for every destination of a fleet; the total."""
        for slug, ids in destinations.items():
            self.seed_backlog(slug, per_destination * len(ids), ids)
        return per_destination * sum(len(ids) for ids in destinations.values())

    def waiting_events(self, destinations: list[str] | None = None) -> int:
        """Events not yet delivered (in no batch, or in an undelivered one)."""
        where = "" if destinations is None else "AND de.destination_id = ANY(%s::uuid[])"
        return self.sql(
            f"""
            SELECT count(*) FROM integrations_deliveryevent de
            LEFT JOIN integrations_delivery d ON d.id = de.delivery_id
            WHERE d.state IS DISTINCT FROM 'delivered' {where}
            """,
            [] if destinations is None else [destinations],
        )[0][0]

    def settle(self, destinations: list[str], seconds: float, on_sample=None) -> None:
        """Once every event arrived: let the last outcomes be recorded (bounded) before the
        cluster is stopped, so that the database's count is not cut short by the stop."""
        until = time.monotonic() + seconds
        while self.waiting_events(destinations) and time.monotonic() < until:
            time.sleep(0.25)
            if on_sample is not None:
                on_sample()

    def start_cluster(self, workers: int | None = None, **extra) -> subprocess.Popen:
        cluster = self.stack.start_cluster(workers=workers or default_workers(), **extra)
        self.stack.shell(
            "from django_q.tasks import async_task; async_task('integrations.tasks.sweep_loop')",
            **extra,
        )
        return cluster

    def stop_cluster(self, cluster: subprocess.Popen) -> None:
        kill_group(cluster)
        with suppress(ValueError):
            self.stack.children.remove(cluster)
        self.sql("DELETE FROM django_q_ormq")

    # Setup ----------------------------------------------------------------------------------
    def setup(self) -> None:
        import psycopg

        self.db = psycopg.connect(self.stack.libpq_url(), autocommit=True)
        if self.embedded is not None:
            pidfile = self.embedded.data_dir / "postmaster.pid"
            with suppress(OSError, ValueError):
                self.postmaster = int(pidfile.read_text().split()[0])
        self.ids = self.shell_json(
            "setup.py",
            {
                "receiver": self.rx.url(""),
                "secret": self.rx.secret,
                "admin_email": ADMIN_EMAIL,
                "admin_password": ADMIN_PASSWORD,
            },
        )

    def machine(self) -> dict:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.splitlines()
                if "model name" in line
            ),
            platform.processor() or "unknown",
        )
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        settings = {
            name: self.sql(f"SHOW {name}")[0][0]
            for name in ("server_version", "shared_buffers", "synchronous_commit", "fsync")
        }
        try:
            commit = subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
        except OSError:
            commit = ""
        import django

        return {
            "nproc": os.cpu_count(),
            "cpu": model,
            "ram_gib": round(mem_kb / 1024 / 1024, 1),
            "python": platform.python_version(),
            "django": django.get_version(),
            "postgres": settings["server_version"],
            "postgres_where": "DATABASE_URL" if self.embedded is None else "embedded",
            "pg_settings": {k: v for k, v in settings.items() if k != "server_version"},
            "load_at_start": os.getloadavg(),
            "commit": commit,
            "mode": "quick" if self.config.quick else "full",
            "runs": self.config.runs,
        }
