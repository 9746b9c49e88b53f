"""The audit page's filters, shared by the page and the CSV export."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from portal.filters import KeysetFilterForm

KNOWN_ACTIONS = (
    "destination.created",
    "destination.updated",
    "destination.deleted",
    "destination.paused",
    "destination.activated",
    "destination.secret_rotated",
    "destination.test_sent",
    "delivery.resend",
    "delivery.resend_all",
    "api_token.created",
    "api_token.revoked",
    "membership.added",
    "membership.changed",
    "membership.removed",
    "auth.signed_in",
    "auth.signed_out",
    "auth.sign_in_failed",
)

FILTER_FIELDS = ("actor", "action", "target", "date_from", "date_to")


class AuditFilterForm(KeysetFilterForm):
    """Actor, action, target and date filters plus the keyset cursor (`before` / `after`)."""

    actor = forms.CharField(
        required=False,
        max_length=254,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Name or email contains"}),
    )
    action = forms.ChoiceField(
        required=False,
        choices=[("", "Any action"), *((action, action) for action in KNOWN_ACTIONS)],
        error_messages={"invalid_choice": "Choose an action from the list."},
    )
    target = forms.CharField(
        required=False,
        max_length=300,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Target contains"}),
    )
    date_from = forms.DateField(
        required=False,
        label="From",
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter the start date as YYYY-MM-DD."},
    )
    date_to = forms.DateField(
        required=False,
        label="To",
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter the end date as YYYY-MM-DD."},
    )
    range_fields = ("date_from", "date_to")
    range_error = "The end date is before the start date."

    def has_filters(self) -> bool:
        """Whether any filter (not the page cursor) narrows the entries."""
        return any(self.cleaned_data.get(name) for name in FILTER_FIELDS)

    def filter_params(self) -> dict[str, str]:
        """The active filters as query parameters, for pager and export links."""
        params = {}
        for name in FILTER_FIELDS:
            value = self.cleaned_data.get(name)
            if value:
                params[name] = value.isoformat() if isinstance(value, date) else value
        return params

    def apply(self, entries: QuerySet) -> QuerySet:
        """Narrow a tenant's entries by the valid filters (the cursor is the view's business)."""
        data = self.cleaned_data
        if data.get("actor"):
            entries = entries.filter(actor_name__icontains=data["actor"])
        if data.get("action"):
            entries = entries.filter(action=data["action"])
        if data.get("target"):
            entries = entries.filter(target_repr__icontains=data["target"])
        if data.get("date_from"):
            entries = entries.filter(created_at__gte=_start_of(data["date_from"]))
        if data.get("date_to") and data["date_to"] < date.max:
            # Inclusive end date: everything before the start of the next day.
            entries = entries.filter(created_at__lt=_start_of(data["date_to"] + timedelta(days=1)))
        return entries


def _start_of(day: date) -> datetime:
    """Midnight at the start of `day` in the current time zone."""
    return timezone.make_aware(datetime.combine(day, time.min))
