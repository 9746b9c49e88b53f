"""The base of list filter forms: keyset cursors, a from/to range, NUL bytes refused."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import forms
from django.db.models import QuerySet

# Ids are bigint: a larger cursor would make PostgreSQL raise instead of returning nothing.
MAX_ID = 2**63 - 1


class KeysetFilterForm(forms.Form):
    """Filters plus the keyset cursor (`before` / `after`) of a newest-first list."""

    before = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_ID,
        label="Page cursor (before)",
        widget=forms.HiddenInput,
    )
    after = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_ID,
        label="Page cursor (after)",
        widget=forms.HiddenInput,
    )
    # The query parameters read, and the (start, end) pair that must be in order.
    field_names: tuple[str, ...] = ()
    range_fields: tuple[str, str] = ("", "")
    range_error = "The end is before the start."

    def __init__(self, data: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        # PostgreSQL text cannot hold NUL: refuse it, without echoing it back into the page.
        self.fields_with_nul: list[str] = []
        if data is not None:
            names = self.field_names or tuple(self.base_fields)
            values = {name: data[name] for name in names if name in data}
            for name, value in values.items():
                if "\x00" in value:
                    self.fields_with_nul.append(name)
                    values[name] = value.replace("\x00", "")
            data = values
        super().__init__(data, **kwargs)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data  # what Form.clean returns (typed there as optional)
        for name in self.fields_with_nul:
            if not self.has_error(name):
                self.add_error(name, "Null characters are not allowed.")
        start_name, end_name = self.range_fields
        start, end = data.get(start_name), data.get(end_name)
        if start and end and start > end:
            self.add_error(end_name, self.range_error)
        if data.get("before") is not None and data.get("after") is not None:
            raise forms.ValidationError("Page with either “before” or “after”, not both.")
        return data


def nearest_id(rows: QuerySet, order: str) -> int | None:
    """The first id in keyset order: unlike exists(), the ORDER BY keeps PostgreSQL on an index."""
    return rows.order_by(order).values_list("id", flat=True).first()


def keyset_page(
    rows: QuerySet, *, before: int | None, after: int | None, size: int
) -> tuple[list, int | None, int | None]:
    """One newest-first page by keyset on id, as (rows, newer_cursor, older_cursor): a fixed
    number of queries however deep the page is (no OFFSET, no COUNT)."""
    if after is not None:
        newer_first = list(rows.filter(id__gt=after).order_by("id")[: size + 1])
        if len(newer_first) > size:
            page = newer_first[:size][::-1]
            older = nearest_id(rows.filter(id__lt=page[-1].id), "-id") is not None
            return page, page[0].id, page[-1].id if older else None
        # Fewer than a page of newer rows: show the newest page rather than a short one.
    older_first = rows.filter(id__lt=before) if before is not None else rows
    fetched = list(older_first.order_by("-id")[: size + 1])
    page = fetched[:size]
    older_cursor = page[-1].id if len(fetched) > size else None
    newer_cursor = None
    if before is not None and nearest_id(rows.filter(id__gte=before), "id") is not None:
        newer_cursor = page[0].id if page else before - 1
    return page, newer_cursor, older_cursor
