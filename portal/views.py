"""Sign-in, tenant switching, the home redirect and the health check."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import DatabaseError, connection
from django.http import HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from portal.forms import EmailAuthenticationForm
from portal.middleware import TENANT_SESSION_KEY
from portal.redirects import redirect_to_next


class LoginView(auth_views.LoginView):
    form_class = EmailAuthenticationForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True


@login_required
def home(request):
    if request.membership is None:
        return render(request, "portal/no_tenant.html", status=403)
    return redirect("integrations:index")


@require_POST
@login_required
def switch_tenant(request):
    """Make another of the user's tenants the current one; refuse tenants they are not in."""
    slug = request.POST.get("tenant", "")
    membership = next((m for m in request.memberships if m.tenant.slug == slug), None)
    if membership is None:
        return HttpResponseForbidden("You are not a member of that tenant.")
    request.session[TENANT_SESSION_KEY] = membership.tenant_id
    messages.info(request, f"Now working in {membership.tenant.name}.")
    return redirect_to_next(request, reverse("home"))


@never_cache
@require_GET
def healthz(request) -> HttpResponse:
    """200 when the database answers, 503 when it does not."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return JsonResponse({"status": "unavailable", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


def permission_denied(request, exception=None):
    return render(request, "403.html", {"reason": str(exception or "")}, status=403)


def page_not_found(request, exception=None):
    return render(request, "404.html", status=404)


def server_error(request):
    return render(request, "500.html", status=500)
