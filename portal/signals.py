"""Sign-in, failed sign-in and sign-out are audited in every tenant the user belongs to."""

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from audit.services import record
from portal.models import Membership, User


def _record_for_user_tenants(user, action: str, actor) -> None:
    for membership in Membership.objects.filter(user=user).select_related("tenant"):
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


@receiver(user_login_failed)
def on_login_failed(sender, credentials, request=None, **kwargs):
    # The password is never looked at or stored; only a known account's tenants are told.
    email = str(credentials.get("username") or credentials.get("email") or "").strip().lower()
    user = User.objects.filter(email=email).first() if email else None
    if user is not None:
        _record_for_user_tenants(user, "auth.sign_in_failed", None)
