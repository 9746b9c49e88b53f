"""The CSV export: who may export, filters, tenant scoping and formula injection."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from audit.services import record

URL = reverse("audit:export")


def _rows(response) -> list[dict[str, str]]:
    assert response.streaming
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    head = rows.pop()  # the export ends with the chain head (issue 13)
    assert head["sequence"] == "chain head"
    assert head["time"].startswith("oneprotect-audit-head:")
    return rows


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["admin", "auditor"])
def test_admin_and_auditor_can_export(role, tenant_a, client_for):
    client = client_for(tenant_a.user(role))
    record(tenant=tenant_a.tenant, action="destination.created", target_repr="Splunk")
    response = client.get(URL)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="audit-tenant-a-')
    assert "no-store" in response["Cache-Control"]
    rows = _rows(response)
    assert [row["action"] for row in rows] == ["destination.created", "auth.signed_in"]
    assert rows[0]["target"] == "Splunk"
    assert rows[0]["sequence"] == "2"


@pytest.mark.django_db
def test_operator_cannot_export(tenant_a, client_for):
    assert client_for(tenant_a.operator).get(URL).status_code == 403


@pytest.mark.django_db
def test_export_has_a_header_row(tenant_a, client_for):
    body = b"".join(client_for(tenant_a.admin).get(URL).streaming_content).decode()
    header = body.splitlines()[0]
    assert header.startswith("sequence,time,actor,action,target_type,target_id,target,before,after")
    assert header.endswith("prev_hash,hash")


@pytest.mark.django_db
def test_export_applies_the_filters(tenant_a, client_for):
    client = client_for(tenant_a.auditor)
    record(tenant=tenant_a.tenant, action="destination.created", target_repr="Splunk prod")
    record(tenant=tenant_a.tenant, action="destination.deleted", target_repr="Splunk old")
    record(tenant=tenant_a.tenant, action="destination.created", target_repr="Sentinel")
    rows = _rows(client.get(URL, {"action": "destination.created", "target": "splunk"}))
    assert [row["target"] for row in rows] == ["Splunk prod"]
    rows = _rows(client.get(URL, {"actor": "auditor@"}))
    assert [row["action"] for row in rows] == ["auth.signed_in"]


@pytest.mark.django_db
def test_export_ignores_the_page_cursor(tenant_a, client_for):
    client = client_for(tenant_a.admin)
    entries = [record(tenant=tenant_a.tenant, action="destination.updated") for _ in range(60)]
    assert len(_rows(client.get(URL, {"before": entries[-1].id}))) == 61


@pytest.mark.django_db
def test_export_leaves_out_other_tenants(tenant_a, tenant_b, client_for):
    client = client_for(tenant_a.admin)
    record(tenant=tenant_b.tenant, action="destination.created", target_repr="Their secret")
    body = b"".join(client.get(URL).streaming_content).decode()
    assert "Their secret" not in body
    assert "tenant-b" not in body


@pytest.mark.django_db
def test_export_neutralises_formula_injection(tenant_a, client_for):
    client = client_for(tenant_a.admin)
    hostile = ['=HYPERLINK("http://evil.example")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]
    for text in hostile:
        record(tenant=tenant_a.tenant, action="destination.updated", target_repr=text)
    record(tenant=tenant_a.tenant, action="destination.updated", actor_name="=cmd|'/c calc'!A0")
    rows = _rows(client.get(URL, {"action": "destination.updated"}))
    assert rows[0]["actor"] == "'=cmd|'/c calc'!A0"
    assert sorted(row["target"] for row in rows[1:]) == sorted("'" + text for text in hostile)
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), row


@pytest.mark.django_db
def test_export_with_bad_filters_is_a_clear_400(tenant_a, client_for):
    response = client_for(tenant_a.admin).get(URL, {"date_from": "2025-02-30", "actor": "\x00"})
    assert response.status_code == 400
    assert "The filters could not be applied" in response.content.decode()


@pytest.mark.django_db
def test_export_streams_through_a_cursor(tenant_a, client_for, django_assert_max_num_queries):
    client = client_for(tenant_a.admin)
    for n in range(30):
        record(tenant=tenant_a.tenant, action="destination.updated", after={"n": n})
    with django_assert_max_num_queries(6):
        response = client.get(URL)
        assert len(_rows(response)) == 31


@pytest.mark.django_db
def test_post_to_export_is_not_allowed(tenant_a, client_for):
    assert client_for(tenant_a.admin).post(URL).status_code == 405
