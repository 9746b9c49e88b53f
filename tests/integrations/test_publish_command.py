"""manage.py publish_event: one event, or NDJSON from a file or stdin (bounded, with progress)."""

from __future__ import annotations

import io
import json
import sys
import uuid

import pytest
from django.core.management import CommandError, call_command

from integrations.catalogue import EventType
from integrations.models import Event

pytestmark = pytest.mark.django_db


def line(n: int, **overrides) -> str:
    data = {
        "event_id": str(uuid.uuid4()),
        "event_type": "detection.alert",
        "severity": "high",
        "event": {"n": n},
        **overrides,
    }
    return json.dumps(data)


def alerts() -> list[Event]:
    return list(Event.objects.filter(event_type=EventType.DETECTION_ALERT).order_by("id"))


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("publish_event", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_one_event_as_before(tenant_a):
    event_id = str(uuid.uuid4())
    out, _ = run("--tenant", tenant_a.tenant.slug, "--type", "detection.alert",
                 "--event-id", event_id, "--payload", '{"a": 1}')  # fmt: skip
    assert out.strip() == f"{event_id} published"
    again, _ = run("--tenant", tenant_a.tenant.slug, "--type", "detection.alert",
                   "--event-id", event_id)  # fmt: skip
    assert again.strip() == f"{event_id} already published"


def test_an_ndjson_file_is_published_in_batches_with_progress(tenant_a, tmp_path):
    lines = [line(n) for n in range(7)]
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n")
    out, err = run("--tenant", tenant_a.tenant.slug, "--file", str(path), "--batch-size", "3")
    assert [str(e.event_id) for e in alerts()] == [json.loads(x)["event_id"] for x in lines]
    assert "Published 7 events into tenant-a: 7 new, 0 already published." in out
    progress = err.strip().splitlines()
    assert len(progress) == 3  # one line per batch: 3 + 3 + 1
    assert progress[-1].startswith("7 events (7 new, 0 duplicates)")
    # Running it again publishes nothing twice.
    out, _ = run("--tenant", tenant_a.tenant.slug, "--file", str(path))
    assert "7 events into tenant-a: 0 new, 7 already published." in out
    assert len(alerts()) == 7


def test_ndjson_from_stdin(tenant_a, monkeypatch):
    data = ("\n".join(line(n) for n in range(4)) + "\n").encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    out, err = run("--tenant", tenant_a.tenant.slug, "--file", "-")
    assert "4 new" in out
    assert [e.payload for e in alerts()] == [{"n": n} for n in range(4)]
    assert "4 events" in err


def test_a_bad_line_is_named_and_its_batch_is_not_stored(tenant_a, tmp_path):
    path = tmp_path / "events.ndjson"
    lines = [line(0), line(1), line(2, severity="apocalyptic"), line(3, event_type="nope")]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CommandError) as error:
        run("--tenant", tenant_a.tenant.slug, "--file", str(path), "--batch-size", "2")
    message = str(error.value)
    assert message.startswith("Nothing published from line 3 on: line 3: severity: ")
    assert "line 4: event_type: Unknown event type" in message
    assert len(alerts()) == 2  # the first batch went out; run again once fixed


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"event_type": ', "line 1: not valid JSON"),
        ("[1, 2]", "line 1: each line must be a JSON object."),
        ("\n\n", "The input has no events."),
        (b"\xff\xfe", "line 1: not valid JSON"),
    ],
)
def test_unreadable_input_is_refused(tenant_a, tmp_path, content, message):
    path = tmp_path / "events.ndjson"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(CommandError, match=message):
        run("--tenant", tenant_a.tenant.slug, "--file", str(path))
    assert alerts() == []


def test_the_input_is_bounded(tenant_a, tmp_path, settings):
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(line(n) for n in range(5)) + "\n")
    slug = tenant_a.tenant.slug
    with pytest.raises(CommandError, match=r"more than --max-events \(4\) events"):
        run("--tenant", slug, "--file", str(path), "--max-events", "4", "--batch-size", "10")
    with pytest.raises(CommandError, match=r"larger than --max-bytes \(200\)"):
        run("--tenant", slug, "--file", str(path), "--max-bytes", "200", "--batch-size", "10")
    assert alerts() == []
    settings.WEBHOOK_MAX_EVENT_BYTES = 100
    path.write_text(line(0, event={"big": "x" * 70_000}) + "\n")
    with pytest.raises(CommandError, match="line 1: longer than 65636 bytes"):
        run("--tenant", slug, "--file", str(path))


def test_options_are_checked(tenant_a, tmp_path, settings):
    slug = tenant_a.tenant.slug
    path = tmp_path / "events.ndjson"
    path.write_text(line(0) + "\n")
    with pytest.raises(CommandError, match="--batch-size must be between 1 and 1000"):
        run("--tenant", slug, "--file", str(path), "--batch-size", "1001")
    with pytest.raises(CommandError, match="drop --type"):
        run("--tenant", slug, "--file", str(path), "--type", "audit_log")
    with pytest.raises(CommandError, match="Give --type"):
        run("--tenant", slug)
    with pytest.raises(CommandError, match="Cannot read"):
        run("--tenant", slug, "--file", str(tmp_path / "missing.ndjson"))
    with pytest.raises(CommandError, match="No tenant"):
        run("--tenant", "nobody", "--file", str(path))


def test_the_simulator_command_publishes_in_batches(tenant_a):
    out = io.StringIO()
    call_command(
        "simulate_events", "--tenant", tenant_a.tenant.slug, "--count", "25",
        "--rate", "10000", "--seed", "1", stdout=out,
    )  # fmt: skip
    assert "published 25 events" in out.getvalue()
    assert Event.objects.exclude(event_type=EventType.AUDIT_LOG).count() == 25
