"""Writes to tenants and memberships."""

from __future__ import annotations

from django.db import transaction

from audit.services import record
from portal.models import Membership, Role, Tenant, User


@transaction.atomic
def tenant_create(
    *, name: str, slug: str, parent: Tenant | None = None, actor: User | None = None
) -> Tenant:
    """Create a tenant, or update the name and parent of the one with that slug (audited)."""
    tenant = Tenant.objects.select_for_update().filter(slug=slug).first()
    if tenant is None:
        tenant = Tenant(slug=slug)
    tenant.name = name
    tenant.parent = parent
    return tenant_save(tenant=tenant, actor=actor)


@transaction.atomic
def tenant_save(*, tenant: Tenant, actor: User | None = None) -> Tenant:
    """Save a new or changed tenant; creation, renaming and re-parenting are audited in the
    tenant's chain (a re-parent also in the old and new parents' chains)."""
    stored = Tenant.objects.filter(pk=tenant.pk).first() if tenant.pk else None
    tenant.save()
    after = {"name": tenant.name, "slug": tenant.slug, "parent": _slug(tenant.parent_id)}
    if stored is None:
        record(tenant=tenant, actor=actor, action="tenant.created", target=tenant, after=after)
        return tenant
    before = {"name": stored.name, "slug": stored.slug, "parent": _slug(stored.parent_id)}
    changed = [key for key in after if before[key] != after[key]]
    if not changed:
        return tenant
    diff_before = {key: before[key] for key in changed}
    diff_after = {key: after[key] for key in changed}
    action = "tenant.reparented" if "parent" in changed else "tenant.changed"
    record(
        tenant=tenant,
        actor=actor,
        action=action,
        target=tenant,
        before=diff_before,
        after=diff_after,
    )
    if "parent" in changed:
        for parent_id in {stored.parent_id, tenant.parent_id}:
            if parent_id is None:
                continue
            record(
                tenant=Tenant.objects.get(pk=parent_id),
                actor=actor,
                action=action,
                target=tenant,
                before=diff_before,
                after=diff_after,
            )
    return tenant


def _slug(tenant_id: int | None) -> str | None:
    if tenant_id is None:
        return None
    return Tenant.objects.filter(pk=tenant_id).values_list("slug", flat=True).first()


USER_FLAGS = ("is_active", "is_staff", "is_superuser")


@transaction.atomic
def user_save(*, user: User, actor: User | None = None) -> User:
    """Save a user; a change of the active, staff or superuser flag is audited in every tenant
    the user belongs to (each tenant's auditors see what happened to their members)."""
    stored = User.objects.filter(pk=user.pk).values(*USER_FLAGS).first() if user.pk else None
    user.save()
    if stored is None:
        return user
    changed = [flag for flag in USER_FLAGS if stored[flag] != getattr(user, flag)]
    if not changed:
        return user
    tenants = Tenant.objects.filter(memberships__user=user).order_by("pk").distinct()
    for tenant in tenants:
        record(
            tenant=tenant,
            actor=actor,
            action="user.flags_changed",
            target=user,
            target_repr=user.email,
            before={flag: stored[flag] for flag in changed},
            after={flag: getattr(user, flag) for flag in changed},
        )
    return user


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
    record(
        tenant=membership.tenant,
        actor=actor,
        action=action,
        target=membership,
        target_repr=f"{membership.user.email} ({membership.tenant.slug})",
        before=before,
        after=after,
    )
