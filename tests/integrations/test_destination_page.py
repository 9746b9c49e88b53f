"""A destination's page: its configuration and, for admins, its actions."""

from __future__ import annotations

import re

import pytest

from integrations.services import destination_set_active
from tests.integrations.destination_helpers import (
    GIVEN_SECRET,
    HEADER_VALUE,
    ROLES_WITHOUT_MANAGE,
    card,
    make_destination,
    url,
)
from tests.integrations.page_helpers import main_html

pytestmark = pytest.mark.usefixtures("no_network")


# Destination page ------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("role", ["admin", "operator", "auditor"])
def test_every_role_sees_the_configuration(role, tenant_a, client_for):
    destination = make_destination(
        tenant_a, min_severity="medium", rate_limit_per_second=3.0, timeout_seconds=45
    )
    response = client_for(tenant_a.user(role)).get(url("destination_detail", destination))
    assert response.status_code == 200
    config = card(response, "configuration")
    assert '<dl class="config">' in config
    assert "https://hooks.example.com/existing" in config
    assert "Custom webhook" in config
    assert "Detection alerts" in config
    assert "Medium" in config
    assert "<code>X-Api-Key: ••••••••</code>" in config
    assert "45 seconds" in config and "3 requests per second" in config
    assert "set on " in config
    assert HEADER_VALUE not in response.content.decode()
    assert GIVEN_SECRET not in response.content.decode()
    assert ">Deliveries</h2>" in response.content.decode()


@pytest.mark.django_db
def test_admin_sees_the_actions(tenant_a, client_for):
    destination = make_destination(tenant_a)
    html = main_html(client_for(tenant_a.admin).get(url("destination_detail", destination)))
    assert f'href="{url("destination_edit", destination)}">Edit</a>' in html
    assert f'action="{url("destination_pause", destination)}"' in html
    assert f'action="{url("destination_activate", destination)}"' not in html
    assert f'action="{url("destination_rotate_secret", destination)}"' in html
    assert f'action="{url("destination_delete", destination)}"' in html
    assert 'data-confirm="Delete this destination? This cannot be undone."' in html
    assert 'name="confirm" value="yes" required' in html
    assert 'name="overlap_hours" value="24"' in html


@pytest.mark.django_db
def test_a_paused_destination_offers_activate(tenant_a, client_for):
    destination = make_destination(tenant_a)
    destination_set_active(destination=destination, actor=tenant_a.admin, active=False)
    html = main_html(client_for(tenant_a.admin).get(url("destination_detail", destination)))
    assert f'action="{url("destination_activate", destination)}"' in html
    assert f'action="{url("destination_pause", destination)}"' not in html


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES_WITHOUT_MANAGE)
def test_operator_and_auditor_see_no_action_buttons_or_forms(role, tenant_a, client_for):
    destination = make_destination(tenant_a)
    html = main_html(client_for(tenant_a.user(role)).get(url("destination_detail", destination)))
    # Read-only tools are for everyone: the deliveries filter (GET), the signature check (a POST
    # that only computes) and copy buttons. Nothing that changes data is offered.
    post_actions = re.findall(r'<form method="post" action="([^"]+)"', html)
    assert post_actions == [url("destination_verify_signature", destination)]
    buttons = re.findall(r"<button[^>]*>([^<]*)</button>", html)
    assert set(buttons) <= {"Filter", "Check signature", "Copy"}, buttons
    assert ">Edit</a>" not in html
    assert "Rotate secret" not in html and "Delete destination" not in html


@pytest.mark.django_db
def test_another_tenants_destination_page_is_404(tenant_a, tenant_b, client_for):
    destination = make_destination(tenant_b)
    response = client_for(tenant_a.admin).get(url("destination_detail", destination))
    assert response.status_code == 404
