"""Settings → API tokens: people list, create and revoke their own tokens in the current tenant.

A new token is shown once, in the response to the POST that created it: it is never put in
the session, the messages framework or a URL, and only its hash is stored.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers

from portal.models import ApiToken
from portal.permissions import Capability, require_capability
from portal.tokens import api_token_create, api_token_revoke


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        label="Token name",
        max_length=100,
        help_text="What the token is for, e.g. “SIEM sync script”.",
        error_messages={"required": "Give the token a name, e.g. “SIEM sync script”."},
    )
    expires_in_days = forms.TypedChoiceField(
        label="Expires after",
        coerce=int,
        choices=[
            (7, "7 days"),
            (30, "30 days"),
            (90, "90 days"),
            (180, "180 days"),
            (365, "1 year"),
        ],
        initial=90,
        help_text="A token stops working then; create a new one before.",
    )


def _own_tokens(request: HttpRequest):
    """The signed-in user's tokens in the current tenant: nobody sees another's tokens."""
    return ApiToken.objects.for_tenant(request.tenant).filter(user=request.user)


def _render(
    request: HttpRequest,
    *,
    form: ApiTokenForm | None = None,
    created: ApiToken | None = None,
    token: str | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "form": form or ApiTokenForm(),
        "tokens": list(_own_tokens(request)),
        "created": created,
        "token": token,
    }
    response = render(request, "portal/api_tokens.html", context, status=status)
    if token:
        add_never_cache_headers(response)  # a page that shows a token must not be kept
    return response


@require_capability(Capability.USE_API_TOKENS)
def api_tokens(request: HttpRequest) -> HttpResponse:
    """The user's tokens in this tenant and the form to create one."""
    return _render(request)


@require_capability(Capability.USE_API_TOKENS, post_only=True)
def api_token_create_view(request: HttpRequest) -> HttpResponse:
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
def api_token_revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
    """Revoke one of the user's own tokens (anyone else's is 404)."""
    api_token = get_object_or_404(_own_tokens(request), pk=token_id)
    api_token_revoke(api_token=api_token, actor=request.user)
    messages.success(request, f"Token “{api_token.name}” revoked.")
    return redirect("api_tokens")
