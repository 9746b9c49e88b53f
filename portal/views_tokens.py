"""Settings → API tokens: people list, create and revoke their own tokens in the current tenant.

A new token is shown once, in the response to the POST that created it: it is never put in
the session, the messages framework or a URL, and only its hash is stored.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers

from portal.forms import ApiTokenForm
from portal.http import TenantRequest
from portal.models import ApiToken
from portal.permissions import Capability, require_capability
from portal.selectors import api_token_get, api_token_list
from portal.tokens import api_token_create, api_token_revoke


def _render(
    request: TenantRequest,
    *,
    form: ApiTokenForm | None = None,
    created: ApiToken | None = None,
    token: str | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "form": form or ApiTokenForm(),
        "tokens": api_token_list(tenant=request.tenant, user=request.user),
        "created": created,
        "token": token,
    }
    response = render(request, "portal/api_tokens.html", context, status=status)
    if token:
        add_never_cache_headers(response)  # a page that shows a token must not be kept
    return response


@require_capability(Capability.USE_API_TOKENS)
def api_tokens(request: TenantRequest) -> HttpResponse:
    """The user's tokens in this tenant and the form to create one."""
    return _render(request)


@require_capability(Capability.USE_API_TOKENS, post_only=True)
def api_token_create_view(request: TenantRequest) -> HttpResponse:
    """Create a token; the page is the response, so the token is shown once, here."""
    # Posted without a choice (older clients), the default applies.
    form = ApiTokenForm({"expires_in_days": "90", **request.POST.dict()})
    if not form.is_valid():
        return _render(request, form=form, status=400)
    created, token = api_token_create(
        user=request.user,
        tenant=request.tenant,
        name=form.cleaned_data["name"],
        expires_in_days=form.cleaned_data["expires_in_days"],
    )
    return _render(request, created=created, token=token, status=201)


@require_capability(Capability.USE_API_TOKENS, post_only=True)
def api_token_revoke_view(request: TenantRequest, token_id: int) -> HttpResponse:
    """Revoke one of the user's own tokens (anyone else's is 404)."""
    api_token = api_token_get(tenant=request.tenant, user=request.user, pk=token_id)
    api_token_revoke(api_token=api_token, actor=request.user)
    messages.success(request, f"Token “{api_token.name}” revoked.")
    return redirect("api_tokens")
