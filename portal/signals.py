"""Sign-in, failed sign-in and sign-out are audited in every tenant the user belongs to."""

from datetime import timedelta

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from audit.models import AuditEntry
from audit.services import lock_chain, record
from portal.models import User


def _record_for_user_tenants(user, action: str, actor) -> None:
    for membership in user.memberships.select_related("tenant"):
        record(
            tenant=membership.tenant,
            actor=actor,
            action=action,
            target=user,
            target_repr=user.email,
        )


@receiver(user_logged_in)
def on_logged_in(sender, request, user, **kwargs):
    _record_for_user_tenants(user, "auth.signed_in", user)


@receiver(user_logged_out)
def on_logged_out(sender, request, user, **kwargs):
    if user is not None:
        _record_for_user_tenants(user, "auth.signed_out", user)


FAILED_SIGN_IN_EVERY = timedelta(minutes=1)


@receiver(user_login_failed)
def on_login_failed(sender, credentials, request=None, **kwargs):
    """At most one entry per account per minute, none while it is locked out: a password
    guesser must not flood the audit log (nor, through `audit_log` events, the receivers)."""
    # The password is never looked at or stored; only a known account's tenants are told.
    email = str(credentials.get("username") or credentials.get("email") or "").strip().lower()
    user = User.objects.filter(email=email).first() if email else None
    if user is None:
        return
    if request is not None and _locked_out(request, credentials):
        return
    since = timezone.now() - FAILED_SIGN_IN_EVERY
    for membership in user.memberships.select_related("tenant"):
        with transaction.atomic():
            lock_chain(membership.tenant_id)  # check and write as one, per tenant
            recent = AuditEntry.objects.filter(
                tenant=membership.tenant,
                action="auth.sign_in_failed",
                target_type="user",
                target_id=str(user.pk),
                created_at__gte=since,
            )
            if recent.exists():
                continue
            record(
                tenant=membership.tenant,
                actor=None,
                action="auth.sign_in_failed",
                target=user,
                target_repr=user.email,
            )


def _locked_out(request, credentials) -> bool:
    from axes.handlers.proxy import AxesProxyHandler

    return bool(getattr(request, "axes_locked_out", False)) or AxesProxyHandler.is_locked(
        request, credentials
    )
