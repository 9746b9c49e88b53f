"""Writes to tenants and memberships."""

from __future__ import annotations

from django.db import transaction

from portal.models import Membership, Role, Tenant, User


@transaction.atomic
def tenant_create(*, name: str, slug: str, parent: Tenant | None = None) -> Tenant:
    """Create a tenant, or update the name and parent of the one with that slug."""
    tenant, _ = Tenant.objects.update_or_create(
        slug=slug, defaults={"name": name, "parent": parent}
    )
    return tenant


@transaction.atomic
def membership_set(
    *, user: User, tenant: Tenant, role: str, actor: User | None = None
) -> Membership:
    """Give the user the role in the tenant (adding or changing the membership)."""
    if role not in Role.values:
        raise ValueError(f"Unknown role {role!r}: choose one of {', '.join(Role.values)}.")
    membership = Membership.objects.filter(user=user, tenant=tenant).first()
    if membership is None:
        membership = Membership.objects.create(user=user, tenant=tenant, role=role)
        _record_membership(actor, membership, "membership.added", {}, {"role": role})
    elif membership.role != role:
        before = {"role": membership.role}
        membership.role = role
        membership.save(update_fields=["role"])
        _record_membership(actor, membership, "membership.changed", before, {"role": role})
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: User | None = None) -> None:
    """Remove a user's membership of a tenant."""
    _record_membership(actor, membership, "membership.removed", {"role": membership.role}, {})
    membership.delete()


def _record_membership(actor, membership, action, before, after) -> None:
    from audit.services import record

    record(
        tenant=membership.tenant,
        actor=actor,
        action=action,
        target=membership,
        target_repr=f"{membership.user.email} ({membership.tenant.slug})",
        before=before,
        after=after,
    )
