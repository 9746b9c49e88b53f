"""The audit page: tenant scoping, filters, keyset pagination and hostile filter input."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit import services
from audit.models import AuditEntry
from audit.services import record
from tests.factories import MembershipFactory, TenantFactory, UserFactory

URL = reverse("audit:index")


def _add(tenant, action: str = "destination.updated", **fields) -> AuditEntry:
    return record(tenant=tenant, action=action, actor_name=fields.pop("actor_name", "x"), **fields)


def _add_at(monkeypatch, when: datetime, tenant, **fields) -> AuditEntry:
    """An entry written at a chosen time (entries cannot be updated afterwards)."""
    with monkeypatch.context() as patch:
        patch.setattr(services, "timezone", SimpleNamespace(now=lambda: when))
        return _add(tenant, **fields)


def _sequences(response) -> list[int]:
    return [entry.sequence for entry in response.context["page"].entries]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["admin", "operator", "auditor"])
def test_every_role_sees_the_audit_page(role, tenant_a, client_for):
    _add(tenant_a.tenant, target_repr="Own destination")
    response = client_for(tenant_a.user(role)).get(URL)
    assert response.status_code == 200
    assert "Own destination" in response.content.decode()


@pytest.mark.django_db
def test_page_lists_only_the_current_tenants_entries(tenant_a, tenant_b, client_for):
    _add(tenant_a.tenant, target_repr="Ours")
    _add(tenant_b.tenant, target_repr="Theirs", actor_name="admin@tenant-b.test")
    html = client_for(tenant_a.admin).get(URL).content.decode()
    assert "Ours" in html
    assert "Theirs" not in html
    assert "admin@tenant-b.test" not in html


@pytest.mark.django_db
def test_entries_are_newest_first_with_their_details(tenant_a, client_for):
    client = client_for(tenant_a.admin)  # signing in writes entry #1
    _add(tenant_a.tenant, action="destination.created", target_repr="First")
    _add(
        tenant_a.tenant,
        action="destination.updated",
        actor_name="admin@tenant-a.test",
        target_repr="Second",
        before={"url": "https://old.example/hook"},
        after={"url": "https://new.example/hook", "secret": "changed"},
    )
    response = client.get(URL)
    assert _sequences(response) == [3, 2, 1]
    html = response.content.decode()
    assert "destination.updated" in html
    assert "admin@tenant-a.test" in html
    assert "https://old.example/hook" in html
    assert "https://new.example/hook" in html
    assert "→" in html


@pytest.mark.django_db
def test_change_values_are_escaped(tenant_a, client_for):
    _add(tenant_a.tenant, target_repr="<b>bold</b>", after={"name": "<script>alert(1)</script>"})
    html = client_for(tenant_a.admin).get(URL).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>bold</b>" not in html


@pytest.mark.django_db
def test_empty_state(client_for):
    user = UserFactory()
    client = client_for(user)  # signed in before joining, so the new tenant has no entries
    MembershipFactory(user=user, tenant=TenantFactory(), role="auditor")
    html = client.get(URL).content.decode()
    assert "No audit entries yet. Configuration changes and sign-ins will appear here." in html


@pytest.mark.django_db
def test_filter_without_matches_says_so(tenant_a, client_for):
    _add(tenant_a.tenant)
    html = client_for(tenant_a.admin).get(URL, {"actor": "nobody"}).content.decode()
    assert "No entries match these filters." in html


@pytest.mark.django_db
def test_filter_by_actor_matches_part_of_the_name(tenant_a, client_for):
    client = client_for(tenant_a.admin)  # entry #1: admin@tenant-a.test signed in
    _add(tenant_a.tenant, actor_name="alice@tenant-a.test")
    _add(tenant_a.tenant, actor_name="bob@tenant-a.test")
    assert _sequences(client.get(URL, {"actor": "ALICE"})) == [2]
    assert _sequences(client.get(URL, {"actor": "tenant-a"})) == [3, 2, 1]
    assert _sequences(client.get(URL, {"actor": "bob@"})) == [3]


@pytest.mark.django_db
def test_filter_by_action(tenant_a, client_for):
    client = client_for(tenant_a.admin)
    _add(tenant_a.tenant, action="destination.created")
    _add(tenant_a.tenant, action="destination.deleted")
    _add(tenant_a.tenant, action="destination.created")
    response = client.get(URL, {"action": "destination.created"})
    assert _sequences(response) == [4, 2]
    assert _sequences(client.get(URL, {"action": "auth.signed_in"})) == [1]
    assert '<option value="auth.sign_in_failed">' in response.content.decode()


@pytest.mark.django_db
def test_filter_by_target(tenant_a, client_for):
    client = client_for(tenant_a.admin)
    _add(tenant_a.tenant, target_repr="Splunk production")
    _add(tenant_a.tenant, target_repr="Sentinel staging")
    assert _sequences(client.get(URL, {"target": "splunk"})) == [2]


@pytest.mark.django_db
def test_filter_by_date_range_includes_both_end_days(tenant_a, client_for, monkeypatch):
    for day in (1, 2, 3, 4):
        _add_at(monkeypatch, datetime(2025, 3, day, 23, 59, tzinfo=UTC), tenant_a.tenant)
    client = client_for(tenant_a.admin)  # entry #5, signed in today
    response = client.get(URL, {"date_from": "2025-03-02", "date_to": "2025-03-03"})
    assert _sequences(response) == [3, 2]
    assert _sequences(client.get(URL, {"date_from": "2025-03-04", "date_to": "2025-03-31"})) == [4]
    assert _sequences(client.get(URL, {"date_to": "2025-03-01"})) == [1]
    assert _sequences(client.get(URL, {"date_from": "2025-03-04"})) == [5, 4]


@pytest.mark.django_db
def test_filters_combine(tenant_a, client_for):
    client = client_for(tenant_a.admin)
    _add(tenant_a.tenant, action="destination.created", actor_name="alice@a.test", target_repr="A")
    _add(tenant_a.tenant, action="destination.created", actor_name="bob@a.test", target_repr="A")
    _add(tenant_a.tenant, action="destination.deleted", actor_name="alice@a.test", target_repr="A")
    params = {"action": "destination.created", "actor": "alice", "target": "a"}
    assert _sequences(client.get(URL, params)) == [2]


@pytest.mark.django_db
def test_keyset_pages_walk_older_and_newer(tenant_a, client_for):
    client = client_for(tenant_a.auditor)  # entry #1
    entries = [_add(tenant_a.tenant, target_repr=f"entry {n}") for n in range(2, 121)]
    ids = {entry.sequence: entry.id for entry in entries}

    first = client.get(URL)
    assert _sequences(first) == list(range(120, 70, -1))
    assert first.context["page"].newer_cursor is None
    assert first.context["page"].older_cursor == ids[71]
    assert f"before={ids[71]}" in first.content.decode()

    second = client.get(URL, {"before": ids[71]})
    assert _sequences(second) == list(range(70, 20, -1))
    assert second.context["page"].newer_cursor == ids[70]

    third = client.get(URL, {"before": ids[21]})
    assert _sequences(third) == list(range(20, 0, -1))  # the last one is the sign-in
    assert third.context["page"].older_cursor is None
    assert "Older →" not in third.content.decode()

    back = client.get(URL, {"after": ids[20]})
    assert _sequences(back) == list(range(70, 20, -1))
    assert back.context["page"].older_cursor == ids[21]
    assert back.context["page"].newer_cursor == ids[70]

    top = client.get(URL, {"after": ids[70]})
    assert _sequences(top) == list(range(120, 70, -1))
    assert top.context["page"].newer_cursor is None


@pytest.mark.django_db
def test_pager_links_keep_the_filters(tenant_a, client_for):
    client = client_for(tenant_a.admin)  # entry #1
    for _ in range(55):
        _add(tenant_a.tenant, action="destination.created")  # entries #2 to #56
    _add(tenant_a.tenant, action="destination.deleted")
    response = client.get(URL, {"action": "destination.created"})
    assert _sequences(response) == list(range(56, 6, -1))
    older = response.context["page"].older_cursor
    assert f"action=destination.created&amp;before={older}" in response.content.decode()
    response = client.get(URL, {"action": "destination.created", "before": older})
    assert _sequences(response) == list(range(6, 1, -1))


@pytest.mark.django_db
def test_a_cursor_past_the_end_shows_no_more_entries(tenant_a, client_for):
    client = client_for(tenant_a.admin)
    first = AuditEntry.objects.for_tenant(tenant_a.tenant).get(sequence=1)
    response = client.get(URL, {"before": first.id})
    assert response.status_code == 200
    assert "No more entries." in response.content.decode()
    assert response.context["page"].newer_cursor == first.id - 1


@pytest.mark.django_db
def test_query_count_does_not_grow_with_rows_or_depth(
    tenant_a, client_for, django_assert_max_num_queries
):
    client = client_for(tenant_a.admin)
    _add(tenant_a.tenant)
    with CaptureQueriesContext(connection) as one_row:
        client.get(URL)
    entries = [_add(tenant_a.tenant, after={"n": n}) for n in range(120)]
    with CaptureQueriesContext(connection) as full_page:
        client.get(URL)
    assert len(full_page) == len(one_row)
    with django_assert_max_num_queries(6):
        client.get(URL, {"before": entries[60].id})
    with django_assert_max_num_queries(6):
        client.get(URL, {"after": entries[10].id})


@pytest.mark.django_db
def test_pages_never_use_offset_or_count(tenant_a, client_for):
    entries = [_add(tenant_a.tenant) for _ in range(60)]
    with CaptureQueriesContext(connection) as queries:
        client_for(tenant_a.admin).get(URL, {"before": entries[-1].id})
    sql = " ".join(query["sql"].upper() for query in queries)
    assert "OFFSET" not in sql
    assert "COUNT(" not in sql


@pytest.mark.django_db
def test_post_to_the_page_is_not_allowed(tenant_a, client_for):
    assert client_for(tenant_a.admin).post(URL).status_code == 405


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["admin", "auditor"])
def test_export_and_verify_buttons_shown_to_roles_that_may_use_them(role, tenant_a, client_for):
    html = client_for(tenant_a.user(role)).get(URL).content.decode()
    assert reverse("audit:export") in html
    assert reverse("audit:verify") in html


@pytest.mark.django_db
def test_operator_sees_no_export_or_verify_buttons(tenant_a, client_for):
    html = client_for(tenant_a.operator).get(URL).content.decode()
    assert reverse("audit:export") not in html
    assert reverse("audit:verify") not in html


HOSTILE = [
    {"actor": "a" * 20_000},
    {"target": "t" * 20_000},
    {"action": "x" * 20_000},
    {"actor": "ali\x00ce"},
    {"target": "\x00"},
    {"action": "destination.created\x00"},
    {"date_from": "\x00"},
    {"date_from": "2025-13-45"},
    {"date_to": "yesterday"},
    {"date_to": "9" * 5000},
    {"date_from": "2025-03-02", "date_to": "2025-03-01"},
    {"before": "-1"},
    {"before": "1e9"},
    {"before": "99999999999999999999999999"},
    {"after": "abc\x00"},
    {"before": "5", "after": "3"},
    {"before": "5", "after": "0"},
]


@pytest.mark.django_db
@pytest.mark.parametrize("params", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_filters_give_a_form_error_not_a_server_error(params, tenant_a, client_for):
    _add(tenant_a.tenant, target_repr="Visible only when filters are valid")
    response = client_for(tenant_a.admin).get(URL, params)
    assert response.status_code == 400
    html = response.content.decode()
    assert "The filters could not be applied" in html
    assert "Visible only when filters are valid" not in html


@pytest.mark.django_db
def test_nul_bytes_are_refused_and_not_echoed(tenant_a, client_for):
    response = client_for(tenant_a.admin).get(URL, {"actor": "ali\x00ce", "target": "\x00"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "\x00" not in html
    assert html.count("Null characters are not allowed.") == 2
    assert 'value="alice"' in html


LENIENT = [
    {"actor": "%_\\'\"; DROP TABLE audit_auditentry; --"},
    {"target": "<script>alert(1)</script>"},
    {"date_from": "0001-01-01", "date_to": "9999-12-31"},
    {"date_to": "9999-12-30"},
    {"after": "0"},
    {"before": str(2**63 - 1)},
]


@pytest.mark.django_db
@pytest.mark.parametrize("params", LENIENT, ids=range(len(LENIENT)))
def test_odd_but_valid_filters_work(params, tenant_a, client_for):
    _add(tenant_a.tenant)
    response = client_for(tenant_a.admin).get(URL, params)
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in response.content.decode()
