"""Tests of the local webhook receiver itself (no database, no delivery code)."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
import time
import uuid

import pytest
import requests
from django.core.management import CommandError, call_command

from devtools.management.commands import demo_receiver
from devtools.receiver import (
    Received,
    ReceiverServer,
    verify_signature,
    verify_splunk_authorization,
)

TIMEOUT = 3.0


def sign(body: bytes, secret: str) -> str:
    """sha256=<hex> of the body with the secret, computed independently here."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def batch(*event_ids: str, event_type: str = "detection.alert") -> bytes:
    """A OneProtect batch body."""
    events = [
        {
            "event_id": eid,
            "event_type": event_type,
            "event_time": 1_700_000_000_000,
            "severity": "high",
            "tenant": "acme",
            "event": {"subject": "hello"},
        }
        for eid in event_ids
    ]
    return json.dumps({"events": events}).encode()


def post(url: str, body: bytes, signature: str | None = None, **kwargs) -> requests.Response:
    """POST a batch with the OneProtect headers."""
    headers = {
        "Content-Type": "application/json",
        "X-OneProtect-Timestamp": str(int(time.time())),
        "X-OneProtect-Delivery": str(uuid.uuid4()),
    }
    if signature is not None:
        headers["X-OneProtect-Signature"] = signature
    session = kwargs.pop("session", requests)
    timeout = kwargs.pop("timeout", TIMEOUT)
    # Never follow a redirect: a scripted Location may point off the machine.
    return session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)


# verify_signature ---------------------------------------------------------------------------
def test_verify_signature_good_and_bad() -> None:
    body = batch("e1")
    assert verify_signature(body, sign(body, "s3cret"), ["s3cret"])
    assert verify_signature(
        body, sign(body, "s3cret").upper().replace("SHA256=", "sha256="), ["s3cret"]
    )
    assert not verify_signature(body, sign(body, "other"), ["s3cret"])
    assert not verify_signature(body + b" ", sign(body, "s3cret"), ["s3cret"])
    assert not verify_signature(body, sign(body, "s3cret")[len("sha256=") :], ["s3cret"])
    assert not verify_signature(body, "sha1=" + sign(body, "s3cret")[7:], ["s3cret"])
    assert not verify_signature(body, "", ["s3cret"])
    assert not verify_signature(body, None, ["s3cret"])
    assert not verify_signature(body, sign(body, "s3cret"), [])
    assert not verify_signature(body, sign(body, ""), [""])
    assert not verify_signature(body, "sha256=zzzz,sha256=é", ["s3cret"])


def test_verify_signature_rotation_overlap() -> None:
    body = batch("e1", "e2")
    header = f"{sign(body, 'new')},{sign(body, 'old')}"
    assert verify_signature(body, header, ["new"])
    assert verify_signature(body, header, ["old"])
    assert verify_signature(body, header, ["unrelated", "old"])
    assert verify_signature(body, f"{sign(body, 'new')}, {sign(body, 'old')}", ["old"])
    assert not verify_signature(body, header, ["unrelated"])


def test_verify_splunk_authorization() -> None:
    assert verify_splunk_authorization("Splunk tok", ["tok"]) is True
    assert verify_splunk_authorization("Splunk nope", ["tok"]) is False
    assert verify_splunk_authorization("Bearer tok", ["tok"]) is False
    assert verify_splunk_authorization(None, ["tok"]) is None


# Recording ----------------------------------------------------------------------------------
def test_records_signature_events_and_headers(receiver: ReceiverServer) -> None:
    receiver.secrets = ["new"]
    good, bad = batch("e1", "e2"), batch("e3")
    assert post(receiver.url, good, sign(good, "new")).status_code == 200
    assert post(receiver.url, bad, sign(bad, "wrong")).status_code == 200
    assert post(receiver.url, bad).status_code == 200
    first, second, third = receiver.received
    assert receiver.url.startswith("http://127.0.0.1:") and receiver.url.endswith("/hook")
    assert (first.signature_ok, second.signature_ok, third.signature_ok) == (True, False, False)
    assert first.event_ids == ["e1", "e2"]
    assert first.event_types == ["detection.alert", "detection.alert"]
    assert first.body == good and first.json == json.loads(good)
    assert first.path == "/hook" and first.method == "POST" and first.status == 200
    assert first.delivery_id == first.header("x-oneprotect-delivery")
    assert first.header("CONTENT-TYPE") == "application/json"
    assert first.header("missing", "d") == "d"
    assert receiver.events_received() == ["e1", "e2", "e3", "e3"]
    assert receiver.duplicates() == 1
    receiver.clear()
    assert receiver.received == [] and receiver.events_received() == []


def test_rotated_secret_in_the_receiver(receiver: ReceiverServer) -> None:
    receiver.secrets = ["old"]
    body = batch("e1")
    post(receiver.url, body, f"{sign(body, 'new')},{sign(body, 'old')}")
    receiver.secrets = ["new"]
    post(receiver.url, body, f"{sign(body, 'new')},{sign(body, 'old')}")
    post(receiver.url, body, sign(body, "old"))
    assert [r.signature_ok for r in receiver.received] == [True, True, False]


def test_custom_signature_header(make_receiver) -> None:
    server = make_receiver(secrets=["k"], signature_header="X-Acme-Sig")
    body = batch("e1")
    requests.post(server.url, data=body, headers={"x-acme-sig": sign(body, "k")}, timeout=TIMEOUT)
    requests.post(
        server.url, data=body, headers={"X-OneProtect-Signature": sign(body, "k")}, timeout=TIMEOUT
    )
    assert [r.signature_ok for r in server.received] == [True, False]


def test_splunk_hec_body(receiver: ReceiverServer) -> None:
    receiver.secrets = ["tok"]
    lines = [
        {
            "time": 1_700_000_000.5,
            "source": "oneprotect",
            "sourcetype": f"oneprotect:{etype}",
            "event": {"event_id": eid, "subject": "x"},
        }
        for eid, etype in [("h1", "detection.alert"), ("h2", "inbound_protection.spam")]
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    headers = {"Authorization": "Splunk tok", "X-OneProtect-Signature": sign(body, "tok")}
    requests.post(receiver.url, data=body, headers=headers, timeout=TIMEOUT)
    requests.post(receiver.url, data=body, headers={"Authorization": "Splunk no"}, timeout=TIMEOUT)
    first, second = receiver.received
    assert first.json == lines
    assert first.event_ids == ["h1", "h2"]
    assert first.event_types == ["detection.alert", "inbound_protection.spam"]
    assert (first.signature_ok, first.auth_ok) == (True, True)
    assert (second.signature_ok, second.auth_ok) == (False, False)


def test_chunked_request_body(receiver: ReceiverServer) -> None:
    body = batch("c1", "c2")
    parts = iter([body[:10], body[10:]])
    requests.post(receiver.url, data=parts, timeout=TIMEOUT)
    (received,) = receiver.received
    assert received.body == body and received.event_ids == ["c1", "c2"]


# Scripting ----------------------------------------------------------------------------------
def test_scripted_statuses_in_order_then_default(receiver: ReceiverServer) -> None:
    receiver.script([500, 503, (429, {"Retry-After": "1"}), 200])
    responses = [post(receiver.url, batch(f"e{i}")) for i in range(5)]
    assert [r.status_code for r in responses] == [500, 503, 429, 200, 200]
    assert responses[2].headers["Retry-After"] == "1"
    assert [r.status for r in receiver.received] == [500, 503, 429, 200, 200]
    assert receiver.events_received() == ["e3", "e4"]
    assert receiver.pending_script() == []


def test_scripted_redirect_and_body(receiver: ReceiverServer) -> None:
    receiver.script([(301, {"Location": "https://example.com/"}), (400, {}, b"nope")])
    response = post(receiver.url, batch("e1"))
    assert response.status_code == 301 and response.headers["Location"] == "https://example.com/"
    assert response.history == []
    response = post(receiver.url, batch("e1"))
    assert (response.status_code, response.content) == (400, b"nope")


def test_script_rejects_unknown_items(receiver: ReceiverServer) -> None:
    for item in ["explode", 42, 700, "slow:x", "slow:999", (200, "not headers"), True, 1.5]:
        with pytest.raises(ValueError):
            receiver.script([item])
    assert receiver.pending_script() == []


def test_slow(receiver: ReceiverServer) -> None:
    receiver.script(["slow:0.3"])
    started = time.monotonic()
    assert post(receiver.url, batch("e1")).status_code == 200
    assert time.monotonic() - started >= 0.3
    assert receiver.received[0].action == "slow"


def test_slow_seconds_applies_to_every_answer(make_receiver) -> None:
    server = make_receiver(slow_seconds=0.2)
    started = time.monotonic()
    assert post(server.url, batch("e1")).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_reset_really_resets(receiver: ReceiverServer) -> None:
    receiver.script(["reset"])
    with pytest.raises(requests.ConnectionError):
        post(receiver.url, batch("e1"))
    assert post(receiver.url, batch("e2")).status_code == 200
    assert [r.status for r in receiver.received] == [None, 200]
    assert receiver.events_received() == ["e2"]


def test_hang_times_out_the_client(receiver: ReceiverServer) -> None:
    receiver.script(["hang"])
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        post(receiver.url, batch("e1"), timeout=0.5)
    assert time.monotonic() - started < 2.5
    assert receiver.received[0].action == "hang" and receiver.received[0].status is None
    assert receiver.events_received() == []


def test_endless_streams_more_than_64_kib(receiver: ReceiverServer) -> None:
    receiver.script(["endless"])
    response = requests.post(receiver.url, data=batch("e1"), timeout=TIMEOUT, stream=True)
    assert response.status_code == 200
    read = 0
    deadline = time.monotonic() + 5
    for chunk in response.iter_content(8192):
        read += len(chunk)
        if read > 64 * 1024 or time.monotonic() > deadline:
            break
    response.close()
    assert read > 64 * 1024


def test_keep_alive_reuses_one_connection(receiver: ReceiverServer) -> None:
    with requests.Session() as session:
        assert post(receiver.url, batch("e1"), session=session).status_code == 200
        assert post(receiver.url, batch("e2"), session=session).status_code == 200
    assert receiver.connection_count == 1
    assert len({r.connection_id for r in receiver.received}) == 1


def test_random_failures_are_reproducible(make_receiver) -> None:
    always = make_receiver(fail_rate=1.0, fail_statuses=[429], retry_after=7)
    response = post(always.url, batch("e1"))
    assert (response.status_code, response.headers["Retry-After"]) == (429, "7")
    assert always.received[0].action == "random"

    def statuses(server: ReceiverServer) -> list[int]:
        with requests.Session() as session:
            return [post(server.url, b"{}", session=session).status_code for _ in range(20)]

    first = statuses(make_receiver(fail_rate=0.5, fail_statuses=[500, 503], seed=7))
    second = statuses(make_receiver(fail_rate=0.5, fail_statuses=[500, 503], seed=7))
    assert first == second
    assert {200, 500, 503} >= set(first) and len(set(first)) > 1


def test_script_takes_precedence_over_random_failures(make_receiver) -> None:
    server = make_receiver(fail_rate=1.0, fail_statuses=[503])
    server.script([201])
    assert [post(server.url, b"{}").status_code for _ in range(2)] == [201, 503]


# Lifecycle and helpers ----------------------------------------------------------------------
def test_stop_is_bounded_with_open_and_hanging_connections() -> None:
    server = ReceiverServer().start()
    session = requests.Session()
    post(server.url, batch("e1"), session=session)  # leaves an idle keep-alive connection
    server.script(["hang"])
    outcome: list[BaseException] = []

    def hanging_client() -> None:
        try:
            post(server.url, b"{}", timeout=10)
        except requests.RequestException as error:
            outcome.append(error)

    thread = threading.Thread(target=hanging_client, daemon=True)
    thread.start()
    assert server.wait_for(lambda: len(server) == 2, timeout=TIMEOUT)
    url = server.url
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    thread.join(TIMEOUT)
    assert not thread.is_alive() and isinstance(outcome[0], requests.ConnectionError)
    assert server.open_connections == 0
    session.close()
    with pytest.raises(requests.ConnectionError):
        requests.post(url, timeout=0.5)


def test_wait_for_is_bounded(receiver: ReceiverServer) -> None:
    started = time.monotonic()
    assert receiver.wait_for(lambda: False, timeout=0.2) is False
    assert time.monotonic() - started < 1
    assert receiver.wait_for(lambda: True, timeout=0.2) is True


def test_not_started_has_no_url() -> None:
    with pytest.raises(RuntimeError):
        _ = ReceiverServer().url


# The demo command (with --secret: no database) ----------------------------------------------
class _Lines(io.StringIO):
    """A thread-safe StringIO for the command's output."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            return super().write(text)

    def text(self) -> str:
        with self.lock:
            return self.getvalue()


def test_demo_receiver_prints_one_line_per_batch() -> None:
    out = _Lines()
    command = demo_receiver.Command(stdout=out)
    args = ["--port", "0", "--secret", "k", "--max-seconds", "20"]
    thread = threading.Thread(target=call_command, args=(command, *args), daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while "listening on" not in out.text() and time.monotonic() < deadline:
        time.sleep(0.02)
    url = out.text().split("listening on ", 1)[1].split()[0]
    assert url.startswith("http://127.0.0.1:")
    body = batch("e1", "e2", "e3")
    body_types = json.loads(body)
    body_types["events"][2]["event_type"] = "inbound_protection.spam"
    body = json.dumps(body_types).encode()
    requests.post(
        url,
        data=body,
        headers={"X-OneProtect-Signature": sign(body, "k"), "X-OneProtect-Delivery": "3f2a9999"},
        timeout=TIMEOUT,
    )
    requests.post(url, data=body, headers={"X-OneProtect-Signature": "sha256=00"}, timeout=TIMEOUT)
    while out.text().count("→") < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    command.stop_event.set()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    lines = [line for line in out.text().splitlines() if "→" in line]
    assert "delivery 3f2a9999…  3 events (detection.alert, inbound_protection.spam)" in lines[0]
    assert lines[0].endswith("signature OK  → 200")
    assert lines[1].endswith("signature FAILED  → 200")
    assert "stopped" in out.text()


def test_demo_receiver_refuses_other_bind_addresses() -> None:
    for host in ["0.0.0.0", "localhost", "::1", "10.0.0.1"]:  # noqa: S104 - all refused
        with pytest.raises(CommandError):
            call_command("demo_receiver", "--host", host, "--port", "0", "--max-seconds", "0.1")
    with pytest.raises(CommandError):
        call_command("demo_receiver", "--port", "0", "--fail-statuses", "abc")


def test_demo_receiver_format_line_for_random_429() -> None:
    received = Received(
        time=time.time(),
        method="POST",
        path="/hook",
        headers={},
        body=b"{}",
        json={},
        signature_ok=True,
        event_ids=["a"],
        event_types=["detection.alert"],
        delivery_id=None,
        status=429,
        action="random",
    )
    line = demo_receiver.format_line(received)
    assert line.endswith(
        "1 event (detection.alert)  signature OK  → 429 (random failure, Retry-After: 5)"
    )
