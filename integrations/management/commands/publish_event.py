"""Publish one event, or many from an NDJSON file or stdin, into a tenant (idempotent)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import IO, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from integrations.events import BatchPublishError, PublishError, event_publish, event_publish_many
from portal.models import Tenant

SINGLE_OPTIONS = {"event_type": "--type", "event_id": "--event-id", "event_time": "--time"}


class Command(BaseCommand):
    help = (
        "Publish one event into a tenant (idempotent on --event-id), or many with --file: "
        "one JSON object per line (NDJSON, as the API's event body: event_type, event, and "
        "optional severity, event_id, event_time), '-' for stdin. Published in batches of "
        "--batch-size, each all or nothing; a bad line stops the command (batches before it "
        "stay published: run it again, events with an event_id are not published twice)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--type", dest="event_type", help="event type (one event)")
        parser.add_argument("--severity", default="info")
        parser.add_argument("--event-id", help="UUID; generated when omitted")
        parser.add_argument("--time", dest="event_time", help="ISO 8601 or Unix ms")
        parser.add_argument("--payload", default="{}", help="the event as a JSON object")
        parser.add_argument("--file", help="NDJSON file of events ('-' reads stdin)")
        parser.add_argument(
            "--batch-size", type=int, help="events per batch (default and most: the API's limit)"
        )
        parser.add_argument(
            "--max-events", type=int, default=1_000_000, help="refuse input with more events"
        )
        parser.add_argument(
            "--max-bytes", type=int, default=1024**3, help="refuse input larger than this"
        )

    def handle(self, *args, tenant, file, **options):
        tenant_obj = Tenant.objects.filter(slug=tenant).first()
        if tenant_obj is None:
            raise CommandError(f"No tenant with slug {tenant!r}.")
        if file is None:
            self._publish_one(tenant_obj, **options)
            return
        given = [flag for name, flag in SINGLE_OPTIONS.items() if options[name]]
        if given:
            raise CommandError(f"--file takes the events from the file; drop {', '.join(given)}.")
        limit = settings.EVENTS_BATCH_MAX_COUNT
        batch_size = options.pop("batch_size") or limit
        if not 1 <= batch_size <= limit:
            raise CommandError(f"--batch-size must be between 1 and {limit}.")
        if file == "-":
            self._publish_file(tenant_obj, sys.stdin.buffer, batch_size, **options)
            return
        try:
            with open(file, "rb") as stream:
                self._publish_file(tenant_obj, stream, batch_size, **options)
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror}.") from error

    def _publish_one(self, tenant, *, event_type, severity, event_id, event_time, payload, **_):
        if not event_type:
            raise CommandError("Give --type (one event) or --file (NDJSON).")
        try:
            data = json.loads(payload)
        except json.JSONDecodeError as error:
            raise CommandError(f"--payload is not valid JSON: {error}") from error
        try:
            published = event_publish(
                tenant=tenant,
                event_type=event_type,
                severity=severity,
                event_id=event_id,
                event_time=event_time,
                payload=data,
            )
        except PublishError as error:
            raise CommandError(str(error)) from error
        state = "published" if published.created else "already published"
        self.stdout.write(f"{published.event.event_id} {state}")

    def _publish_file(
        self, tenant, stream: IO[bytes], batch_size: int, *, max_events, max_bytes, **_
    ) -> None:
        started = time.monotonic()
        created = duplicates = 0
        for first_line, batch in _batches(stream, batch_size, max_events, max_bytes):
            try:
                answers = event_publish_many(tenant=tenant, events=[item for _, item in batch])
            except BatchPublishError as error:
                problems = [
                    f"line {batch[index][0]}: {field}: {message}"
                    for index, errors in sorted(error.item_errors.items())
                    for field, message in errors.items()
                ]
                raise CommandError(
                    f"Nothing published from line {first_line} on: " + "; ".join(problems[:20])
                ) from error
            new = sum(answer.created for answer in answers)
            created += new
            duplicates += len(answers) - new
            elapsed = max(time.monotonic() - started, 1e-9)
            self.stderr.write(
                f"{created + duplicates} events ({created} new, {duplicates} duplicates), "
                f"{(created + duplicates) / elapsed:,.0f}/s"
            )
        self.stdout.write(
            f"Published {created + duplicates} events into {tenant.slug}: "
            f"{created} new, {duplicates} already published."
        )


def _batches(
    stream: IO[bytes], batch_size: int, max_events: int, max_bytes: int
) -> Iterator[tuple[int, list[tuple[int, dict[str, Any]]]]]:
    """(first line number, [(line number, service item), ...]) per batch; bounded input."""
    line_limit = settings.WEBHOOK_MAX_EVENT_BYTES + 64 * 1024  # the payload and its fields
    total = count = 0
    batch: list[tuple[int, dict[str, Any]]] = []
    number = 0
    while True:
        line = stream.readline(line_limit + 1)
        if not line:
            break
        number += 1
        total += len(line)
        if len(line) > line_limit:
            raise CommandError(f"line {number}: longer than {line_limit} bytes.")
        if total > max_bytes:
            raise CommandError(f"The input is larger than --max-bytes ({max_bytes}).")
        if not line.strip():
            continue
        count += 1
        if count > max_events:
            raise CommandError(f"The input has more than --max-events ({max_events}) events.")
        try:
            data = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CommandError(f"line {number}: not valid JSON: {error}") from error
        if not isinstance(data, dict):
            raise CommandError(f"line {number}: each line must be a JSON object.")
        batch.append((number, _service_item(data)))
        if len(batch) >= batch_size:
            yield batch[0][0], batch
            batch = []
    if batch:
        yield batch[0][0], batch
    if not count:
        raise CommandError("The input has no events.")


def _service_item(data: dict[str, Any]) -> dict[str, Any]:
    """An API-shaped event (`event` holds the payload) as event_publish_many takes it."""
    return {
        "event_id": data.get("event_id"),
        "event_type": data.get("event_type"),
        "severity": data.get("severity"),
        "event_time": data.get("event_time"),
        "payload": data.get("event"),
    }
