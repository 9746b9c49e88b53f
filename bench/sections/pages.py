"""Page timings at a million rows (deliveries, attempts, audit entries)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.common import (
    fmt,
    log,
)
from bench.context import ADMIN_EMAIL


def seed_pages(bench, rows: int, already: int) -> None:
    """Deliveries + attempts (one each) and audit entries for the pages tenant, up to rows.

    One row every 2 seconds back from now (so 43,200 of each fall in the last 24 hours).
    90% of the deliveries go to the first destination ("big"), which is healthy: all
    delivered. The other 9 share the rest, with every 5th of theirs failed (HTTP 500).
    Audit entries cycle through 8 actions (1 in 8 is destination.updated); their hash
    chain is not valid (the pages do not verify it).
    """
    add = rows - already
    if add <= 0:
        return
    tenant = bench.ids["tenants"]["bench-pages"]
    big, *others = bench.ids["destinations"]["bench-pages"]
    admin = bench.ids["admin_id"]
    started = time.monotonic()
    bench.sql(
        """
        INSERT INTO integrations_delivery
            (tenant_id, destination_id, state, event_count, attempt_count, attempt_limit,
             last_status_code, last_error_kind, failure_reason, is_test, created_at,
             finished_at, schedule_start, first_item_id)
        SELECT %(tenant)s,
               CASE WHEN mod(g, 10) = 0 THEN (%(others)s::uuid[])[1 + mod(g / 10, %(n)s)]
                    ELSE %(big)s::uuid END,
               CASE WHEN mod(g, 50) = 0 THEN 'failed' ELSE 'delivered' END,
               1 + mod(g, 100), 1, 10,
               CASE WHEN mod(g, 50) = 0 THEN 500 ELSE 200 END,
               CASE WHEN mod(g, 50) = 0 THEN 'http' ELSE '' END,
               CASE WHEN mod(g, 50) = 0 THEN 'HTTP 500' ELSE '' END,
               false,
               now() - make_interval(secs => (%(total)s - g) * 2.0),
               now() - make_interval(secs => (%(total)s - g) * 2.0 - 0.05),
               0, g
        FROM generate_series(%(start)s::bigint, %(total)s::bigint) AS g
        """,
        {
            "tenant": tenant,
            "others": others,
            "n": len(others),
            "big": big,
            "start": already + 1,
            "total": rows,
        },
    )
    bench.sql(
        """
        INSERT INTO integrations_attempt
            (delivery_id, destination_id, number, delivery_uuid, started_at, duration_ms,
             status_code, error_kind, error_detail, response_excerpt, request_headers, ok)
        SELECT d.id, d.destination_id, 1, gen_random_uuid(), d.created_at, 40,
               d.last_status_code,
               d.last_error_kind, d.failure_reason, 'ok',
               '{"Content-Type": "application/json", "X-OneProtect-Signature": "••••"}'::jsonb,
               d.state = 'delivered'
        FROM integrations_delivery d
        WHERE d.tenant_id = %s AND NOT EXISTS (
            SELECT 1 FROM integrations_attempt a WHERE a.delivery_id = d.id)
        """,
        [tenant],
    )
    actions = [
        "destination.updated",
        "destination.created",
        "destination.paused",
        "destination.activated",
        "destination.secret_rotated",
        "destination.test_sent",
        "delivery.resend",
        "auth.signed_in",
    ]
    bench.sql(
        """
        INSERT INTO audit_auditentry
            (tenant_id, sequence, created_at, actor_id, actor_name, action, target_type,
             target_id, target_repr, before, after, ip, user_agent, request_id, prev_hash,
             hash, hash_version)
        SELECT %(tenant)s, %(base)s + g - %(start)s + 1,
               now() - make_interval(secs => (%(total)s - g) * 2.0),
               %(admin)s, %(email)s, (%(actions)s::text[])[1 + mod(g, %(n)s)], 'destination',
               %(big)s, 'pages-0', '{"active": true}'::jsonb,
               jsonb_build_object('active', mod(g, 2) = 0, 'timeout_seconds', 30),
               '127.0.0.1', 'bench', md5(g::text), repeat('0', 64), md5(g::text) || md5(g::text),
               2
        FROM generate_series(%(start)s::bigint, %(total)s::bigint) AS g
        """,
        {
            "tenant": tenant,
            "admin": admin,
            "base": bench.sql(
                "SELECT coalesce(max(sequence), 0) FROM audit_auditentry WHERE tenant_id = %s",
                [tenant],
            )[0][0],
            "email": ADMIN_EMAIL,
            "actions": actions,
            "n": len(actions),
            "big": big,
            "start": already + 1,
            "total": rows,
        },
    )
    bench.sql("ANALYZE integrations_delivery, integrations_attempt, audit_auditentry")
    log(
        f"pages: seeded up to {fmt(rows)} deliveries/attempts/audit entries in "
        f"{time.monotonic() - started:.0f}s"
    )


def page_urls(bench) -> list[tuple[str, str]]:
    tenant = bench.ids["tenants"]["bench-pages"]
    big = bench.ids["destinations"]["bench-pages"][0]
    count, low, high = bench.sql(
        "SELECT count(*), min(id), max(id) FROM integrations_delivery WHERE destination_id = %s",
        [big],
    )[0]
    deep = bench.sql(
        "SELECT id FROM integrations_delivery WHERE destination_id = %s ORDER BY id "
        "OFFSET %s LIMIT 1",
        [big, max(0, count // 10)],
    )[0][0]
    delivery = _page_delivery(bench, tenant, big)
    return [
        ("Integrations page", "/integrations/"),
        ("Destination page", f"/integrations/destinations/{big}/"),
        (
            "Deliveries deep in the list (?before=)",
            f"/integrations/destinations/{big}/?before={deep}",
        ),
        ("Delivery page", f"/integrations/deliveries/{delivery}/"),
        ("Audit page", "/audit/"),
        ("Audit page filtered by action", "/audit/?action=destination.updated"),
    ]


def _page_delivery(bench, tenant: int, destination: str) -> int:
    """A delivery of 100 events with 3 attempts (two failed), as a delivery page shows."""
    existing = bench.sql(
        "SELECT id FROM integrations_delivery WHERE destination_id = %s AND event_count = 100 "
        "AND attempt_count = 3 ORDER BY id DESC LIMIT 1",
        [destination],
    )
    if existing:
        return existing[0][0]
    delivery = bench.sql(
        """
        INSERT INTO integrations_delivery
            (tenant_id, destination_id, state, event_count, attempt_count, attempt_limit,
             last_status_code, last_error_kind, failure_reason, is_test, created_at,
             finished_at, schedule_start, first_item_id)
        VALUES (%s, %s, 'delivered', 100, 3, 10, 200, '', '', false, now(), now(), 0, 0)
        RETURNING id
        """,
        [tenant, destination],
    )[0][0]
    bench.sql(
        """
        INSERT INTO integrations_attempt
            (delivery_id, destination_id, number, delivery_uuid, started_at, duration_ms,
             status_code, error_kind, error_detail, response_excerpt, request_headers, ok)
        SELECT %s, %s, n, gen_random_uuid(), now(), 40,
               CASE WHEN n < 3 THEN 503 ELSE 200 END,
               CASE WHEN n < 3 THEN 'http' ELSE '' END, '', 'ok', '{}'::jsonb, n = 3
        FROM generate_series(1, 3) AS n
        """,
        [delivery, destination],
    )
    last = bench.sql("SELECT coalesce(max(id), 0) FROM integrations_event")[0][0]
    bench.sql(
        """
        INSERT INTO integrations_event
            (tenant_id, event_id, event_type, severity, event_time, payload, created_at)
        SELECT %s, gen_random_uuid(), 'detection.alert', 'high', now(),
               jsonb_build_object('detection', 'Bench detection', 'seq', g), now()
        FROM generate_series(1, 100) AS g
        """,
        [tenant],
    )
    bench.sql(
        """
        INSERT INTO integrations_deliveryevent (destination_id, event_id, delivery_id)
        SELECT %s, e.id, %s FROM integrations_event e WHERE e.tenant_id = %s AND e.id > %s
        """,
        [destination, delivery, tenant, last],
    )
    return delivery


def run(bench) -> None:
    config = bench.config
    bench.reset_delivery_state()
    small_rows = 500
    seed_pages(bench, small_rows, 0)
    params = {
        "admin_id": bench.ids["admin_id"],
        "tenant_id": bench.ids["tenants"]["bench-pages"],
        "warmup": 2,
        "page_seconds": 20,
    }
    # DEBUG is off (realistic figures): pages name hashed static files, from a manifest that
    # collectstatic writes (to a scratch STATIC_ROOT, as a deployment would).
    static_root = str(Path(tempfile.mkdtemp(prefix="bench-static-")))
    bench.stack.manage("collectstatic", "--noinput", "-v", "0", STATIC_ROOT=static_root)
    host = {"ALLOWED_HOSTS": "testserver", "STATIC_ROOT": static_root}  # the test Client's host
    small = bench.shell_json(
        "pages.py", {**params, "urls": page_urls(bench), "runs": 1, "requests": 5}, **host
    )
    seed_pages(bench, config.page_rows, small_rows)
    big = bench.shell_json(
        "pages.py",
        {
            **params,
            "urls": page_urls(bench),
            "runs": config.runs,
            "requests": config.page_requests,
            "warmup": 3,
            "page_seconds": 60,
        },
        timeout=900,
        **host,
    )
    for label, entry in big.items():
        entry["queries_small"] = small.get(label, {}).get("queries")
        entry["p95_small"] = small.get(label, {}).get("p95")
        if entry["status"] == 200:
            log(
                f"page {label}: p50 {fmt(entry['p50'], 1)} ms, p95 {fmt(entry['p95'], 1)} ms, "
                f"{entry['queries']} queries (at {fmt(small_rows)} rows: "
                f"{entry['queries_small']}); SQL {entry['sql_ms']:.0f} ms in all, slowest "
                f"{entry['slowest'][0]['ms']:.0f} ms: {entry['slowest'][0]['sql'][:70]}…"
                if entry.get("slowest")
                else f"page {label}: {entry}"
            )
        else:
            log(f"page {label}: HTTP {entry['status']} ({entry['url']})")
    bench.results["pages"] = {"rows": config.page_rows, "small_rows": small_rows, "pages": big}
