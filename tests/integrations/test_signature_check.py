"""The signature check on the destination page."""

from __future__ import annotations

import json

import pytest

from integrations.delivery.signing import sign
from integrations.services import destination_rotate_secret
from tests.integrations.engine_helpers import SECRET
from tests.integrations.page_helpers import (
    ROLES,
    action_url,
    check,
    main_html,
    other_destination,
    result_of,
    section,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("quiet_queue")]


@pytest.mark.parametrize("role", ROLES)
def test_every_role_can_verify_a_raw_body(role, tenant_a, client_for, hook, received):
    body, signature = received
    response = check(client_for(tenant_a.user(role)), hook, body, signature)
    assert response.status_code == 200
    assert "Verified with the current secret" in result_of(response)
    assert SECRET not in response.content.decode()
    assert "no-store" in response["Cache-Control"]


def test_a_re_serialized_body_is_detected(tenant_a, client_for, hook, received):
    body, signature = received
    pretty = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    result = result_of(check(client_for(tenant_a.operator), hook, pretty, signature))
    assert result.startswith("<p><strong>Does not verify</strong>")
    assert "re-serialized the JSON before verifying" in result and "verify the raw bytes" in result
    assert "With that change undone, the body verifies with the current secret." in result


def test_an_ascii_escaped_body_is_detected_as_re_serialized(tenant_a, client_for, hook, received):
    body, signature = received
    escaped = json.dumps(json.loads(body), separators=(",", ":"))  # café → caf\u00e9
    assert escaped != body
    result = result_of(check(client_for(tenant_a.admin), hook, escaped, signature))
    assert "re-serialized the JSON" in result


def test_a_trailing_newline_is_detected(tenant_a, client_for, hook, received):
    body, signature = received
    result = result_of(check(client_for(tenant_a.admin), hook, body + "\n", signature))
    assert "Does not verify" in result and "A trailing newline was added" in result


def test_a_removed_trailing_newline_is_detected(tenant_a, client_for, hook):
    body = '{"events":[]}\n'
    signature = sign(body.encode(), SECRET)
    result = result_of(check(client_for(tenant_a.admin), hook, body.rstrip("\n"), signature))
    assert "A trailing newline was removed" in result


def test_crlf_from_the_browser_is_compared_as_lf(tenant_a, client_for, hook):
    body = '{"a":1}\n{"b":2}'  # a Splunk HEC body has one event per line
    signature = sign(body.encode(), SECRET)
    submitted = body.replace("\n", "\r\n")  # what a browser posts from a textarea
    result = result_of(check(client_for(tenant_a.admin), hook, submitted, signature))
    assert "Verified with the current secret" in result
    assert "Line breaks were compared as LF" in result


def test_a_body_signed_over_crlf_is_explained(tenant_a, client_for, hook):
    body = '{"a":1}\n{"b":2}'
    signature = sign(body.replace("\n", "\r\n").encode(), SECRET)
    result = result_of(check(client_for(tenant_a.admin), hook, body, signature))
    assert "Line endings were converted (LF ↔ CRLF)" in result


def test_the_previous_secret_verifies_during_the_overlap(tenant_a, client_for, hook, received):
    body, signature = received
    destination_rotate_secret(destination=hook, actor=None, new_secret="n" * 40, overlap_hours=24)
    client = client_for(tenant_a.admin)
    result = result_of(check(client, hook, body, signature))
    assert "Verified with the previous secret (rotation overlap)" in result
    both = f"{sign(body.encode(), 'n' * 40)},{signature}"
    assert "Verified with the current secret" in result_of(check(client, hook, body, both))
    destination_rotate_secret(destination=hook, actor=None, new_secret="m" * 40, overlap_hours=0)
    assert "Does not verify" in result_of(check(client, hook, body, signature))


def test_a_wrong_secret_does_not_verify(tenant_a, client_for, hook, received):
    body, _ = received
    response = check(client_for(tenant_a.admin), hook, body, sign(body.encode(), "not-the-secret"))
    result = result_of(response)
    assert "Does not verify" in result and "uses a different secret" in result
    assert SECRET not in response.content.decode()


def test_a_pasted_header_line_is_accepted(tenant_a, client_for, hook, received):
    body, signature = received
    line = f"X-OneProtect-Signature: {signature.upper().replace('SHA256=', 'sha256=')}"
    assert "Verified with the current secret" in result_of(
        check(client_for(tenant_a.admin), hook, body, line)
    )


@pytest.mark.parametrize(
    "body, signature, message",
    [
        ("{}", "not a signature", "sha256=&lt;64 hex digits&gt;"),
        ("{}", "", "This field is required."),
        ("", "sha256=" + "0" * 64, "This field is required."),
        ("x" * (1024 * 1024 + 1), "sha256=" + "0" * 64, "larger than 1 MiB"),
        ("{}", "sha256=" + "0" * 5000, "Ensure this value has at most 4096 characters"),
    ],
)
def test_unusable_signature_input_is_400(body, signature, message, tenant_a, client_for, hook):
    response = check(client_for(tenant_a.operator), hook, body, signature)
    assert response.status_code == 400
    html = section(main_html(response), "signature-check")
    assert message in html
    assert '<div class="result' not in html


def test_signature_check_over_htmx_returns_the_card(tenant_a, client_for, hook, received):
    body, signature = received
    client = client_for(tenant_a.auditor)
    response = check(client, hook, body, signature, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<section class="card" id="signature-check"')
    assert "<html" not in html and "Verified with the current secret" in html
    bad = check(client, hook, body, "nope", HTTP_HX_REQUEST="true")
    assert bad.status_code == 400 and "sha256=&lt;64 hex digits&gt;" in bad.content.decode()


def test_another_tenants_destination_cannot_be_checked(tenant_a, tenant_b, client_for):
    destination = other_destination(tenant_b.tenant)
    response = check(client_for(tenant_a.admin), destination, "{}", sign(b"{}", SECRET))
    assert response.status_code == 404


def test_signature_check_requires_post(tenant_a, client_for, hook):
    response = client_for(tenant_a.operator).get(action_url("destination_verify_signature", hook))
    assert response.status_code == 405
