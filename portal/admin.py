from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from portal.models import ApiToken, Membership, Tenant, User
from portal.services import membership_remove, membership_set, tenant_save, user_save
from portal.tokens import api_token_revoke


class AuditedMembershipAdminMixin:
    """Membership changes made in the admin go through the audited services."""

    def save_membership(self, request, membership: Membership) -> None:
        if membership.pk:
            # A changed tenant or user is a removal plus an addition, both audited.
            stored = Membership.objects.get(pk=membership.pk)
            if (stored.user_id, stored.tenant_id) != (membership.user_id, membership.tenant_id):
                membership_remove(membership=stored, actor=request.user)
                membership.pk = None
        saved = membership_set(
            user=membership.user,
            tenant=membership.tenant,
            role=membership.role,
            actor=request.user,
        )
        membership.pk = saved.pk

    def delete_membership(self, request, membership: Membership) -> None:
        membership_remove(membership=membership, actor=request.user)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["tenant"]


@admin.register(User)
class UserAdmin(AuditedMembershipAdminMixin, BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "is_staff", "is_active"]
    search_fields = ["email", "first_name", "last_name"]
    inlines = [MembershipInline]
    actions = ["deactivate"]

    def save_model(self, request, obj, form, change):
        """Through the audited service: active, staff and superuser changes are audited."""
        user_save(user=obj, actor=request.user)

    def has_delete_permission(self, request, obj=None):
        # Users are deactivated, never deleted: their audit entries must keep pointing at them
        # (and the append-only audit table refuses the update a delete would cause).
        return False

    @admin.action(description="Deactivate selected users")
    def deactivate(self, request, queryset):
        for user in queryset.filter(is_active=True):
            user.is_active = False
            user_save(user=user, actor=request.user)

    def save_formset(self, request, form, formset, change):
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        memberships = formset.save(commit=False)
        for membership in formset.deleted_objects:
            self.delete_membership(request, membership)
        for membership in memberships:
            membership.user = form.instance
            self.save_membership(request, membership)
        formset.save_m2m()

    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "parent", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ("name",)}

    def save_model(self, request, obj, form, change):
        """Through the audited service: creation and re-parenting are audited."""
        tenant_save(tenant=obj, actor=request.user)


@admin.register(Membership)
class MembershipAdmin(AuditedMembershipAdminMixin, admin.ModelAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role", "tenant"]
    search_fields = ["user__email", "tenant__name"]

    def save_model(self, request, obj, form, change):
        self.save_membership(request, obj)

    def delete_model(self, request, obj):
        self.delete_membership(request, obj)

    def delete_queryset(self, request, queryset):
        for membership in queryset.select_related("user", "tenant"):
            self.delete_membership(request, membership)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Staff may see and revoke tokens; the token itself is never stored, only its hash."""

    list_display = ["name", "prefix", "user", "tenant", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["tenant"]
    search_fields = ["name", "prefix", "user__email"]
    readonly_fields = [
        "user",
        "tenant",
        "prefix",
        "token_hash",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        """Revoking is audited; `revoked_at` is read-only so it cannot be set or cleared by hand."""
        for api_token in queryset.filter(revoked_at__isnull=True):
            api_token_revoke(api_token=api_token, actor=request.user)
