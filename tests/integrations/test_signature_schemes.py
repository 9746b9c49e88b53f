"""Replay-safe signing (issue 13 §1): the Standard Webhooks scheme, verified with the
`standardwebhooks` package from PyPI on real deliveries to a loopback receiver."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time

import pytest
from django.urls import reverse
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from integrations.catalogue import EventType
from integrations.delivery import drain
from integrations.delivery.signing import prepare, sign_standard, whsec_is_valid
from integrations.events import event_publish
from integrations.models import Destination, SignatureScheme
from integrations.services import destination_create, destination_rotate_secret
from integrations.verification import receiver_snippets
from tests.api import API, api_client
from tests.integrations.engine_helpers import advance_retries, allow_receiver, make_destination
from tests.network import block_network

pytestmark = pytest.mark.django_db

WHSEC = "whsec_" + base64.b64encode(b"k" * 32).decode()
WHSEC_NEXT = "whsec_" + base64.b64encode(b"n" * 32).decode()
ONEPROTECT_LABEL = "OneProtect: HMAC-SHA256 of the body (sha256=&lt;hex&gt;)"
STANDARD_LABEL = "Standard Webhooks (replay-protected)"


def standard_destination(tenant, receiver, secret: str = WHSEC) -> Destination:
    destination = make_destination(
        tenant,
        receiver,
        secret=secret,
        signature_scheme=SignatureScheme.STANDARD_WEBHOOKS,
        event_types=[EventType.DETECTION_ALERT],
    )
    receiver.secrets = []  # its sha256= check does not apply: the tests verify with the package
    return destination


def publish(tenant) -> None:
    event_publish(
        tenant=tenant, event_type=EventType.DETECTION_ALERT, severity="high", payload={"n": "é"}
    )


@pytest.fixture
def admin_api(tenant_a, no_network):
    return api_client(tenant_a.admin, tenant_a.tenant)


@pytest.fixture
def sw(tenant_a, receiver, settings):
    allow_receiver(settings, receiver)
    settings.WEBHOOK_RETRY_JITTER = 0
    return standard_destination(tenant_a.tenant, receiver), receiver


# Signing ------------------------------------------------------------------------------------
def test_prepare_signs_id_timestamp_and_body_as_standard_webhooks(sw):
    destination, _ = sw
    prepared = prepare(destination, b'{"events":[]}', message_id="msg_42")
    headers = prepared.headers
    assert headers["webhook-id"] == "msg_42"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", headers["webhook-signature"])
    assert "X-OneProtect-Signature" not in headers
    assert Webhook(WHSEC).verify(prepared.body, headers) == {"events": []}
    with pytest.raises(WebhookVerificationError):
        Webhook(WHSEC).verify(prepared.body, {**headers, "webhook-id": "msg_43"})


def test_prepare_derives_a_stable_id_for_the_same_batch(sw):
    destination, _ = sw
    first = prepare(destination, b'{"events":[1]}').headers["webhook-id"]
    assert first == prepare(destination, b'{"events":[1]}').headers["webhook-id"]
    assert first != prepare(destination, b'{"events":[2]}').headers["webhook-id"]


def test_a_replayed_standard_request_is_refused_after_five_minutes(sw, monkeypatch):
    destination, _ = sw
    old = time.time() - 301
    monkeypatch.setattr("integrations.delivery.signing.time.time", lambda: old)
    prepared = prepare(destination, b"{}", message_id="msg_1")
    monkeypatch.undo()
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(WHSEC).verify(prepared.body, prepared.headers)


def test_the_default_scheme_is_unchanged(tenant_a, receiver, settings):
    allow_receiver(settings, receiver)
    destination = make_destination(tenant_a.tenant, receiver)
    assert destination.signature_scheme == SignatureScheme.ONEPROTECT
    headers = prepare(destination, b"{}").headers
    assert headers["X-OneProtect-Signature"].startswith("sha256=")
    assert "webhook-signature" not in headers


# Real deliveries ----------------------------------------------------------------------------
def test_real_deliveries_verify_with_the_standardwebhooks_package(sw, tenant_a):
    destination, receiver = sw
    publish(tenant_a.tenant)
    drain.drain(destination.pk)
    assert len(receiver.received) == 1
    request = receiver.received[0]
    payload = Webhook(WHSEC).verify(request.body, request.headers)
    assert payload["events"][0]["event"] == {"n": "é"}


def test_retries_keep_the_id_and_carry_both_signatures_during_a_rotation(sw, tenant_a):
    destination, receiver = sw
    receiver.script([500])
    publish(tenant_a.tenant)
    drain.deliver_one(destination.pk)
    destination_rotate_secret(
        destination=destination, actor=None, new_secret=WHSEC_NEXT, overlap_hours=1
    )
    advance_retries(destination)
    drain.deliver_one(destination.pk)
    first, retry = receiver.received
    assert first.header("webhook-id") == retry.header("webhook-id")
    assert len(retry.header("webhook-signature").split(" ")) == 2
    Webhook(WHSEC).verify(first.body, first.headers)
    Webhook(WHSEC_NEXT).verify(retry.body, retry.headers)  # receivers already switched
    Webhook(WHSEC).verify(retry.body, retry.headers)  # receivers not yet switched
    with pytest.raises(WebhookVerificationError):
        Webhook(WHSEC_NEXT).verify(first.body, first.headers)


def test_a_generated_secret_is_whsec_and_rotation_keeps_the_format(tenant_a):
    destination, generated = destination_create(
        tenant=tenant_a.tenant,
        actor=tenant_a.admin,
        data={
            "name": "sw",
            "endpoint_url": "https://hooks.example.com/sw",
            "event_types": list(EventType.values),
            "signature_scheme": SignatureScheme.STANDARD_WEBHOOKS,
        },
    )
    assert whsec_is_valid(generated) and len(base64.b64decode(generated[6:])) == 32
    _, rotated = destination_rotate_secret(destination=destination, actor=tenant_a.admin)
    assert whsec_is_valid(rotated) and rotated != generated


# Portal and API -----------------------------------------------------------------------------
def test_the_form_offers_both_schemes_with_their_labels(tenant_a, client_for):
    html = client_for(tenant_a.admin).get(reverse("integrations:index")).content.decode()
    assert f'<option value="oneprotect" selected>{ONEPROTECT_LABEL}</option>' in html
    assert f'<option value="standard_webhooks">{STANDARD_LABEL}</option>' in html


def test_switching_scheme_in_the_portal_shows_a_new_whsec_secret_once(
    tenant_a, client_for, monkeypatch, settings
):
    block_network(monkeypatch, settings)
    destination, _ = destination_create(
        tenant=tenant_a.tenant,
        actor=tenant_a.admin,
        data={
            "name": "hook",
            "endpoint_url": "https://hooks.example.com/x",
            "event_types": list(EventType.values),
            "secret": "a" * 32,
        },
    )
    url = reverse("integrations:destination_edit", kwargs={"destination_id": destination.pk})
    response = client_for(tenant_a.admin).post(
        url,
        {
            "name": "hook",
            "endpoint_url": "https://hooks.example.com/x",
            "provider": "custom",
            "event_types": list(EventType.values),
            "signature_header": "X-OneProtect-Signature",
            "timeout_seconds": "30",
            "active": "on",
            "signature_scheme": "standard_webhooks",
        },
    )
    assert response.status_code == 200
    shown = re.search(r'id="generated-secret">(whsec_[^<]+)<', response.content.decode())
    destination.refresh_from_db()
    assert shown and destination.secret() == shown.group(1)
    assert destination.signature_scheme == SignatureScheme.STANDARD_WEBHOOKS
    assert "no-store" in response["Cache-Control"]


def test_the_api_reads_and_writes_signature_scheme(admin_api, tenant_a):
    response = admin_api.post(
        f"{API}/integrations/destinations",
        {
            "name": "sw api",
            "endpoint_url": "https://hooks.example.com/sw",
            "signature_scheme": "standard_webhooks",
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["signature_scheme"] == "standard_webhooks" and whsec_is_valid(body["secret"])
    url = f"{API}/integrations/destinations/{body['id']}"
    patched = admin_api.patch(url, {"signature_scheme": "oneprotect"})
    assert patched.status_code == 200
    assert patched.json()["signature_scheme"] == "oneprotect"
    assert re.fullmatch(r"[0-9a-f]{64}", patched.json()["secret"])
    assert "secret" not in admin_api.get(url).json()
    refused = admin_api.patch(url, {"signature_scheme": "hmac"})
    assert refused.status_code in (400, 422)


def test_a_standard_webhooks_secret_must_be_whsec(admin_api):
    response = admin_api.post(
        f"{API}/integrations/destinations",
        {
            "name": "sw bad",
            "endpoint_url": "https://hooks.example.com/sw",
            "signature_scheme": "standard_webhooks",
            "secret": "not-a-whsec-secret-at-all",
        },
    )
    assert response.status_code == 400
    assert "whsec_" in json.dumps(response.json())


# Signature checker --------------------------------------------------------------------------
def _check(client, destination, **data):
    url = reverse(
        "integrations:destination_verify_signature", kwargs={"destination_id": destination.pk}
    )
    return client.post(url, data)


def _result(response) -> str:
    match = re.search(r'<div class="result[^"]*" role="status">(.*?)</div>', response.text, re.S)
    assert match, response.text[-1500:]
    return " ".join(match.group(1).split())


def test_the_checker_verifies_standard_webhooks_with_current_and_previous(sw, tenant_a, client_for):
    destination, _ = sw
    old = prepare(destination, b'{"events":[]}', message_id="msg_9")
    destination_rotate_secret(
        destination=destination, actor=None, new_secret=WHSEC_NEXT, overlap_hours=1
    )
    client = client_for(tenant_a.operator)
    fields = {
        "body": '{"events":[]}',
        "signature": old.headers["webhook-signature"],
        "webhook_id": "msg_9",
        "webhook_timestamp": old.headers["webhook-timestamp"],
    }
    assert "Verified with the previous secret" in _result(_check(client, destination, **fields))
    new = prepare(Destination.objects.get(pk=destination.pk), b'{"events":[]}', message_id="m")
    fields.update(
        signature=new.headers["webhook-signature"],
        webhook_id="m",
        webhook_timestamp=new.headers["webhook-timestamp"],
    )
    assert "Verified with the current secret" in _result(_check(client, destination, **fields))
    fields["webhook_id"] = "other"
    assert "Does not verify" in _result(_check(client, destination, **fields))


def test_the_checker_flags_an_old_timestamp_and_odd_input_never_500(sw, tenant_a, client_for):
    destination, _ = sw
    stamp = str(int(time.time()) - 3600)
    signature = sign_standard("msg_1", stamp, b"{}", WHSEC)
    client = client_for(tenant_a.operator)
    fields = {"body": "{}", "signature": signature, "webhook_id": "msg_1"}
    response = _check(client, destination, webhook_timestamp=stamp, **fields)
    assert "more than 5 minutes" in _result(response)
    for odd in ("١٢٣", "", "12e3", "9" * 19):
        response = _check(client, destination, **{**fields, "webhook_timestamp": odd})
        assert response.status_code == 400
    response = _check(client, destination, **{**fields, "webhook_id": "mség"})
    assert response.status_code == 400
    deep = "[" * 100_000 + "]" * 100_000
    response = _check(client, destination, **{**fields, "body": deep, "webhook_timestamp": stamp})
    assert response.status_code == 200
    assert "Does not verify" in _result(response)


# Receiver guide snippets --------------------------------------------------------------------
def _python_verifier(destination, name: str, monkeypatch, secret: str):
    monkeypatch.setenv("ONEPROTECT_WEBHOOK_SECRET", secret)
    code = receiver_snippets(destination)["python"].split("# Flask")[0]
    namespace: dict = {}
    exec(compile(code, "snippet", "exec"), namespace)  # noqa: S102 - our own snippet
    return namespace[name]


def test_the_standard_python_snippet_verifies_a_real_delivery(sw, tenant_a, monkeypatch):
    destination, receiver = sw
    publish(tenant_a.tenant)
    drain.drain(destination.pk)
    request = receiver.received[0]
    valid = _python_verifier(destination, "webhook_is_valid", monkeypatch, WHSEC)
    args = [request.header(n) for n in ("webhook-id", "webhook-timestamp", "webhook-signature")]
    assert valid(request.body, *args)
    assert not valid(request.body + b" ", *args)
    assert not valid(request.body, args[0], str(int(args[1]) - 301), args[2])  # replay
    assert not valid(request.body, "msg_é", args[1], args[2])  # non-ASCII: invalid, no error
    assert not valid(request.body, args[0], "١٢٣", args[2])
    assert not valid(request.body, args[0], args[1], "v1,ü" + args[2])


def test_the_oneprotect_python_snippet_refuses_old_timestamps_and_non_ascii(
    tenant_a, receiver, settings, monkeypatch
):
    allow_receiver(settings, receiver)
    destination = make_destination(tenant_a.tenant, receiver)
    prepared = prepare(destination, b'{"events":[]}')
    valid = _python_verifier(destination, "signature_is_valid", monkeypatch, destination.secret())
    signature = prepared.headers["X-OneProtect-Signature"]
    stamp = prepared.headers["X-OneProtect-Timestamp"]
    assert valid(prepared.body, signature, stamp)
    assert not valid(prepared.body, signature, str(int(stamp) - 301))
    assert not valid(prepared.body, signature + "é", stamp)
    assert not valid(prepared.body, signature, "١٢٣")


NODE_CHECK = """
const cases = JSON.parse(process.argv[1]);
console.log(JSON.stringify(cases.map((c) => VERIFY(Buffer.from(c.body), ...c.args))));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
@pytest.mark.parametrize("scheme", ["oneprotect", "standard_webhooks"])
def test_the_node_snippets_verify_and_refuse_without_throwing(scheme, tenant_a, receiver, settings):
    allow_receiver(settings, receiver)
    if scheme == "standard_webhooks":
        destination = standard_destination(tenant_a.tenant, receiver)
    else:
        destination = make_destination(tenant_a.tenant, receiver)
    prepared = prepare(destination, '{"events":["é"]}'.encode())
    headers = prepared.headers
    if scheme == "standard_webhooks":
        verify = "webhookIsValid"
        args = [headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"]]
        stamp_index = 1
    else:
        verify = "signatureIsValid"
        args = [headers["X-OneProtect-Signature"], headers["X-OneProtect-Timestamp"]]
        stamp_index = 1
    old = list(args)
    old[stamp_index] = str(int(old[stamp_index]) - 301)
    non_ascii = [args[0] + "é", *args[1:]]
    code = receiver_snippets(destination)["node"]
    code = code.replace('const express = require("express");', "").split("const app =")[0]
    code += NODE_CHECK.replace("VERIFY", verify)
    body = prepared.body.decode()
    cases = [
        {"body": body, "args": args},
        {"body": body + " ", "args": args},
        {"body": body, "args": old},
        {"body": body, "args": non_ascii},
    ]
    result = subprocess.run(
        ["node", "-e", code, json.dumps(cases)],
        env={"ONEPROTECT_WEBHOOK_SECRET": destination.secret(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [True, False, False, False]


def test_the_receiver_guide_explains_the_standard_scheme(sw, tenant_a, client_for):
    destination, _ = sw
    url = reverse("integrations:destination_detail", kwargs={"destination_id": destination.pk})
    html = client_for(tenant_a.operator).get(url).text
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        assert f"<td><code>{name}</code></td>" in html
    assert "5 minutes" in html and "whsec_" in html
    assert "webhook_is_valid" in html and "webhookIsValid" in html
    assert WHSEC not in html
