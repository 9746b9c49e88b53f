"""The receiver guide: the headers sent, the Splunk form, the Python snippet."""

from __future__ import annotations

import os
import time

import pytest

from integrations.verification import receiver_snippets
from tests.integrations.engine_helpers import SECRET
from tests.integrations.page_helpers import (
    HEADER_VALUE,
    detail_url,
    main_html,
    other_destination,
    section,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("quiet_queue")]


def test_receiver_guide_lists_the_headers_this_destination_sends(tenant_a, client_for, settings):
    destination = other_destination(
        tenant_a.tenant,
        signature_header="X-Acme-Sig",
        custom_headers={"X-Api-Key": HEADER_VALUE, "X-Env": "prod-value-hidden"},
    )
    response = client_for(tenant_a.operator).get(detail_url(destination))
    guide = section(main_html(response), "receiver-guide")
    for name in ("Content-Type", "X-Acme-Sig", "X-OneProtect-Timestamp", "X-OneProtect-Delivery"):
        assert f"<td><code>{name}</code></td>" in guide
    assert settings.WEBHOOK_USER_AGENT in guide
    assert "<td><code>X-Api-Key</code></td>" in guide and "<td><code>X-Env</code></td>" in guide
    assert "Authorization" not in guide
    assert "SIGNATURE_HEADER = &quot;X-Acme-Sig&quot;" in guide  # in both snippets
    assert guide.count("X-Acme-Sig") >= 4
    assert "timingSafeEqual" in guide and "hmac.compare_digest" in guide
    assert HEADER_VALUE not in response.content.decode()
    assert "prod-value-hidden" not in response.content.decode()


def test_receiver_guide_for_splunk_shows_the_authorization_form(tenant_a, client_for):
    destination = other_destination(tenant_a.tenant, provider="splunk_hec")
    guide = section(
        main_html(client_for(tenant_a.admin).get(detail_url(destination))), "receiver-guide"
    )
    assert (
        "<td><code>Authorization</code></td><td><code>Splunk &lt;HEC token&gt;</code></td>" in guide
    )


def test_the_python_snippet_verifies_a_real_delivery(tenant_a, hook, received, monkeypatch):
    body, signature = received
    monkeypatch.setenv("ONEPROTECT_WEBHOOK_SECRET", SECRET)
    code = receiver_snippets(hook)["python"].split("# Flask")[0]
    namespace: dict = {}
    exec(compile(code, "snippet", "exec"), namespace)  # noqa: S102 - our own snippet
    assert namespace["SIGNATURE_HEADER"] == "X-OneProtect-Signature"
    stamp = str(int(time.time()))
    is_valid = namespace["signature_is_valid"]
    assert is_valid(body.encode(), signature, stamp)
    assert is_valid(body.encode(), f"sha256={'0' * 64}, {signature}", stamp)  # rotation overlap
    assert not is_valid(body.encode() + b"\n", signature, stamp)
    assert not is_valid(body.encode(), "", stamp)
    assert os.environ["ONEPROTECT_WEBHOOK_SECRET"] == SECRET
