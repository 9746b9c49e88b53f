"""Forms of the integrations app: destination validation, shared by the portal form and the API
(no rule written twice), the filters of a destination's deliveries and the signature check."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinLengthValidator
from django.db.models import QuerySet

from integrations import verification
from integrations.catalogue import EventType, Severity
from integrations.delivery.signing import generate_secret_for, whsec_is_valid
from integrations.models import (
    DEFAULT_SIGNATURE_HEADER,
    Batching,
    DeliveryState,
    Destination,
    Provider,
    SignatureScheme,
)
from integrations.redaction import origin
from integrations.url_safety import validate_endpoint_url
from portal.filters import KeysetFilterForm

# RFC 9110 token characters.
HEADER_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
RESERVED_HEADERS = {
    "x-oneprotect-signature",
    "x-oneprotect-timestamp",
    "x-oneprotect-delivery",
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "authorization-splunk",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    # hop-by-hop
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
WHSEC_ERROR = (
    "Standard Webhooks secrets are whsec_ followed by the base64 of 24 to 64 random bytes: "
    "enter one in that form, or leave blank to generate."
)
ORIGIN_CHANGE_HELP = (
    "Changing the scheme, host or port clears the custom header values and the Splunk token "
    "unless you enter them again in the same change, so they never go to a server they were "
    "not meant for."
)
# Splunk index names: lower-case letters, digits, "_" and "-", not starting with "_" or "-".
SPLUNK_INDEX = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")
HEC_REQUIRED_MESSAGE = "Enter the HEC token of your Splunk HTTP Event Collector input."
MAX_CUSTOM_HEADERS = 20
MAX_HEADER_VALUE = 4096


def _no_control_characters(value: str) -> None:
    if any(ord(ch) < 32 and ch != "\t" or ord(ch) == 127 for ch in value):
        raise ValidationError("Remove line breaks and control characters.")


class DestinationForm(forms.Form):
    """Every field of a destination (docs/design.md#destinations). `custom_headers` is given
    as a dict (name → value)."""

    name = forms.CharField(
        label="Name",
        max_length=120,
        error_messages={"required": "Give the destination a name, e.g. “SOC webhook”."},
        validators=[_no_control_characters],
    )
    endpoint_url = forms.CharField(
        label="Endpoint URL (https)",
        max_length=2000,
        error_messages={"required": "Enter the https:// URL that should receive events."},
    )
    secret = forms.CharField(
        label="Secret",
        required=False,
        max_length=256,
        min_length=16,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave blank to generate a strong secret (shown once).",
        error_messages={"min_length": "Use at least 16 characters, or leave blank to generate."},
    )
    provider = forms.ChoiceField(
        label="Provider", choices=Provider.choices, initial=Provider.CUSTOM
    )
    hec_token = forms.CharField(
        label="HEC token",
        required=False,
        max_length=256,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="The token of your HTTP Event Collector input (Settings → Data inputs → "
        "HTTP Event Collector). Sent as Authorization: Splunk <token>.",
    )
    splunk_index = forms.CharField(
        label="Index",
        required=False,
        max_length=80,
        help_text="Optional. Leave blank to use the token's default index.",
    )
    batching = forms.ChoiceField(
        label="Batching",
        required=False,  # left out: batched, the default
        choices=Batching.choices,
        initial=Batching.BATCHED,
        widget=forms.RadioSelect,
        help_text="One event per request suits receivers that handle one alert per POST.",
    )
    event_types = forms.MultipleChoiceField(
        label="Events to forward",
        choices=EventType.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=list(EventType.values),
        error_messages={"required": "Select at least one event type to forward."},
    )
    min_severity = forms.ChoiceField(
        label="Minimum severity",
        choices=[("", "Any severity")] + list(Severity.choices),
        required=False,
    )
    include_child_tenants = forms.BooleanField(
        label="Include child accounts' events", required=False
    )
    signature_header = forms.CharField(
        label="Signature header name", max_length=100, initial=DEFAULT_SIGNATURE_HEADER
    )
    timeout_seconds = forms.IntegerField(
        label="Timeout (seconds)",
        min_value=1,
        max_value=300,
        initial=30,
        error_messages={
            "min_value": "Use a timeout between 1 and 300 seconds.",
            "max_value": "Use a timeout between 1 and 300 seconds.",
        },
    )
    rate_limit_per_second = forms.FloatField(
        label="Rate limit (requests per second)",
        required=False,
        min_value=0.1,
        max_value=10000,
        help_text="Optional. Leave blank for no limit.",
    )
    skip_tls_verify = forms.BooleanField(label="Skip TLS verification", required=False)
    active = forms.BooleanField(label="Active", required=False, initial=True)
    signature_scheme = forms.ChoiceField(
        label="Signature scheme",
        choices=SignatureScheme.choices,
        initial=SignatureScheme.ONEPROTECT,
        required=False,
        help_text=(
            "Standard Webhooks signs the message id and timestamp with the body, so a captured "
            "request cannot be replayed later. Changing the scheme generates a new secret "
            "(shown once) unless you enter one."
        ),
    )

    def __init__(
        self,
        *args,
        tenant,
        instance: Destination | None = None,
        custom_headers=None,
        partial: bool = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.tenant = tenant
        self.instance = instance
        self.partial = partial
        self.custom_headers_input = custom_headers
        if not tenant.has_children() and not (instance and instance.include_child_tenants):
            del self.fields["include_child_tenants"]
        self.cleared_on_origin_change: list[str] = []
        if instance is not None:
            self.fields["secret"].help_text = "Leave blank to keep the current secret."
            self.fields["endpoint_url"].help_text = ORIGIN_CHANGE_HELP
            if instance.provider == Provider.SPLUNK_HEC:
                self.fields["hec_token"].help_text = "Leave blank to keep the current token."
        if partial:
            for field in self.fields.values():
                field.required = False

    # Field checks ---------------------------------------------------------------------------
    def clean_name(self) -> str:
        name = self.cleaned_data.get("name", "").strip()
        if not name and self.partial:
            return name
        if self.instance is None:
            cap = settings.WEBHOOK_MAX_DESTINATIONS_PER_TENANT
            if Destination.objects.for_tenant(self.tenant).count() >= cap:
                raise ValidationError(
                    f"This tenant already has {cap} destinations, the most allowed: delete one "
                    "you no longer use first."
                )
        duplicates = Destination.objects.for_tenant(self.tenant).filter(name__iexact=name)
        if self.instance is not None:
            duplicates = duplicates.exclude(pk=self.instance.pk)
        if duplicates.exists():
            raise ValidationError("A destination with this name already exists. Choose another.")
        return name

    def clean_endpoint_url(self) -> str:
        url = self.cleaned_data.get("endpoint_url", "").strip()
        if url or not self.partial:
            validate_endpoint_url(url)
        return url

    def clean_signature_header(self) -> str:
        value = self.cleaned_data.get("signature_header", "").strip()
        if not value:
            return "" if self.partial else DEFAULT_SIGNATURE_HEADER
        if not HEADER_TOKEN.match(value):
            raise ValidationError(
                "Use a valid header name: letters, digits and - only, e.g. X-OneProtect-Signature."
            )
        if value.lower() in RESERVED_HEADERS - {"x-oneprotect-signature"}:
            raise ValidationError(f"{value} is reserved. Choose another header name.")
        return value

    def clean_signature_scheme(self) -> str:
        """Left out: the stored scheme on edit, the default on create."""
        value = self.cleaned_data.get("signature_scheme", "")
        if not value and self.instance is not None:
            return self.instance.signature_scheme
        return value or SignatureScheme.ONEPROTECT

    def clean_batching(self) -> str:
        return self.cleaned_data.get("batching") or Batching.BATCHED

    def clean_splunk_index(self) -> str:
        value = self.cleaned_data.get("splunk_index", "").strip()
        if value and not SPLUNK_INDEX.match(value):
            raise ValidationError(
                "Use a Splunk index name: lower-case letters, digits, _ and -, e.g. main."
            )
        return value

    def clean_hec_token(self) -> str:
        value = self.cleaned_data.get("hec_token", "")
        _no_control_characters(value)
        if any(ch.isspace() for ch in value):
            raise ValidationError("Paste the HEC token alone, without spaces.")
        return value

    def provider_choice(self) -> str:
        """The provider this form describes: posted, else the instance's, else custom."""
        if self.is_bound:
            value = self.data.get("provider")
            if value in Provider.values:
                return value
        if self.instance is not None and not self.is_bound:
            return self.initial.get("provider") or self.instance.provider
        return self.initial.get("provider") or Provider.CUSTOM

    def _clean_splunk(self, cleaned: dict) -> None:
        """A Splunk destination needs its HEC token (it becomes the secret); elsewhere the
        Splunk-only fields are cleared."""
        provider = cleaned.get("provider") or (self.instance.provider if self.instance else "")
        if provider != Provider.SPLUNK_HEC:
            cleaned["splunk_index"] = ""
            cleaned.pop("hec_token", None)
            return
        token = cleaned.pop("hec_token", "") or cleaned.get("secret", "")
        had_token = self.instance is not None and self.instance.provider == Provider.SPLUNK_HEC
        if not token and not had_token and not self.partial:
            self.add_error(
                "hec_token" if "hec_token" in self.data else "secret", HEC_REQUIRED_MESSAGE
            )
        cleaned["secret"] = token

    def clean(self):
        cleaned = super().clean()
        self._clean_splunk(cleaned)
        scheme = cleaned.get("signature_scheme") or (
            self.instance.signature_scheme if self.instance is not None else ""
        )
        secret = cleaned.get("secret") or ""
        is_splunk = (cleaned.get("provider") or getattr(self.instance, "provider", "")) == (
            Provider.SPLUNK_HEC
        )
        if (
            secret
            and not is_splunk
            and scheme == SignatureScheme.STANDARD_WEBHOOKS
            and not whsec_is_valid(secret)
        ):
            self.add_error("secret", WHSEC_ERROR)
        if self.instance is not None and self.origin_changed():
            self._clear_for_new_origin(cleaned, scheme, self.instance)
        if self.custom_headers_input is not None:
            try:
                cleaned["custom_headers"] = self._clean_custom_headers(self.custom_headers_input)
            except ValidationError as error:
                self.add_error(None, error)
        return cleaned

    def origin_changed(self) -> bool:
        """Whether an edit moves the endpoint to another scheme, host or port."""
        url = self.cleaned_data.get("endpoint_url")
        if self.instance is None or not url:
            return False
        return origin(url) != origin(self.instance.endpoint_url)

    def _clear_for_new_origin(self, cleaned: dict, scheme: str, instance: Destination) -> None:
        """Stored header values and the Splunk token are not carried to a new origin."""
        if instance.custom_header_names:
            if self.custom_headers_input is None:
                cleaned["custom_headers"] = {}
            self.cleared_on_origin_change.append("custom header values")
        provider = cleaned.get("provider") or instance.provider
        if provider == Provider.SPLUNK_HEC and not cleaned.get("secret"):
            # Replaced by a random value: the old token is never sent to the new server.
            cleaned["secret"] = generate_secret_for(scheme)
            self.cleared_on_origin_change.append("the Splunk token")

    def _is_splunk(self) -> bool:
        provider = self.cleaned_data.get("provider")
        if not provider and self.instance is not None:
            provider = self.instance.provider
        return provider == Provider.SPLUNK_HEC

    def _clean_custom_headers(self, headers) -> dict[str, str]:
        if not isinstance(headers, dict):
            raise ValidationError("Custom headers must be name/value pairs.")
        if len(headers) > MAX_CUSTOM_HEADERS:
            raise ValidationError(f"Use at most {MAX_CUSTOM_HEADERS} custom headers.")
        moving = self.origin_changed()
        existing = self.instance.custom_headers() if self.instance is not None else {}
        signature = (self.cleaned_data.get("signature_header") or DEFAULT_SIGNATURE_HEADER).lower()
        cleaned: dict[str, str] = {}
        seen: set[str] = set()
        for raw_name, raw_value in headers.items():
            name = str(raw_name).strip()
            value = "" if raw_value is None else str(raw_value)
            if not name:
                raise ValidationError("Give every custom header a name.")
            if not HEADER_TOKEN.match(name) or len(name) > 100:
                raise ValidationError(
                    f"“{name[:40]}” is not a valid header name: use letters, digits and - only."
                )
            if name.lower() in RESERVED_HEADERS or name.lower() == signature:
                raise ValidationError(f"{name} is set by OneProtect and cannot be a custom header.")
            if name.lower() == "authorization" and self._is_splunk():
                raise ValidationError(
                    "Authorization carries the HEC token on a Splunk destination: remove this "
                    "custom header and enter the token as the HEC token."
                )
            if name.lower() in seen:
                raise ValidationError(f"{name} is listed twice.")
            seen.add(name.lower())
            if any(ch in value for ch in "\r\n\x00"):
                raise ValidationError(f"The value of {name} must not contain line breaks.")
            if len(value) > MAX_HEADER_VALUE:
                raise ValidationError(f"The value of {name} is too long (at most 4096).")
            if value == "" and moving and name in existing:
                continue  # a new origin: a stored value is not carried over (cleared)
            if value == "" and name in existing:
                value = existing[name]  # blank on edit keeps the stored (masked) value
            if value == "":
                raise ValidationError(f"Give {name} a value.")
            cleaned[name] = value
        return cleaned


def custom_headers_from_post(post) -> dict[str, str]:
    """The add/remove rows of the portal form (header_name / header_value lists)."""
    names = post.getlist("header_name")
    values = post.getlist("header_value")
    headers: dict[str, str] = {}
    for index, name in enumerate(names):
        value = values[index] if index < len(values) else ""
        if name.strip() or value.strip():
            headers[name.strip() or " "] = value
    return headers


class RotateSecretForm(forms.Form):
    """A new secret and the overlap; for Splunk, a new HEC token (required, no overlap: the
    HEC input accepts one token, so the old one stops working when it is replaced)."""

    secret = forms.CharField(
        label="New secret",
        required=False,
        min_length=16,
        max_length=256,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave blank to generate one.",
    )
    overlap_hours = forms.IntegerField(
        label="Keep the previous secret valid for (hours)",
        min_value=0,
        max_value=168,
        initial=24,
    )

    def __init__(
        self,
        *args,
        scheme: str = SignatureScheme.ONEPROTECT,
        provider: str = Provider.CUSTOM,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.scheme = scheme
        self.splunk = provider == Provider.SPLUNK_HEC
        if self.splunk:
            secret = self.fields["secret"]
            assert isinstance(secret, forms.CharField)  # as declared above
            secret.label = "New HEC token"
            secret.required = True
            secret.min_length = None
            secret.validators = [
                v for v in secret.validators if not isinstance(v, MinLengthValidator)
            ]
            secret.validators.append(_no_control_characters)
            secret.help_text = "The token of your new HEC input. The current one stops being used."
            secret.error_messages["required"] = HEC_REQUIRED_MESSAGE
            secret.widget.attrs["autocomplete"] = "off"
            del self.fields["overlap_hours"]

    def clean(self):
        cleaned = super().clean()
        if self.splunk:
            cleaned["overlap_hours"] = 0
        return cleaned

    def clean_secret(self) -> str:
        secret = self.cleaned_data.get("secret") or ""
        if secret and not self.splunk and self.scheme == SignatureScheme.STANDARD_WEBHOOKS:
            if not whsec_is_valid(secret):
                raise ValidationError(WHSEC_ERROR)
        return secret


# Deliveries filter and signature check (the destination page) -------------------------------
STATE_FILTERS: dict[str, tuple[str, ...]] = {
    "delivered": (DeliveryState.DELIVERED,),
    "retrying": (DeliveryState.RETRYING,),
    "failed": (DeliveryState.FAILED,),
    "pending": (DeliveryState.PENDING, DeliveryState.DELIVERING),
}
STATE_CHOICES = [
    ("", "All"),
    ("delivered", "Delivered"),
    ("retrying", "Retrying"),
    ("failed", "Failed"),
    ("pending", "Pending"),  # waiting for its turn or being sent
]
FILTER_FIELDS = ("state", "from", "to")


def _time_field(label: str, example: str) -> forms.DateTimeField:
    return forms.DateTimeField(
        required=False,
        label=label,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        error_messages={"invalid": f"Enter the {example} as YYYY-MM-DD HH:MM."},
    )


class DeliveryFilterForm(KeysetFilterForm):
    """State and time-range filters of a destination's deliveries, plus the keyset cursor."""

    # Offered as links (state tabs) above the list; the time form carries it as a hidden field.
    state = forms.ChoiceField(
        required=False,
        choices=STATE_CHOICES,
        widget=forms.HiddenInput,
        error_messages={"invalid_choice": "Choose one of the states shown."},
    )
    field_names = ("state", "from", "to", "before", "after")
    range_fields = ("from", "to")

    def __init__(self, data: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        # "from" is a Python keyword, so these two are added by name rather than declared.
        self.fields["from"] = _time_field("From", "start")
        self.fields["to"] = _time_field("To", "end")
        self.order_fields(self.field_names)

    def has_filters(self) -> bool:
        return any(self.cleaned_data.get(name) for name in FILTER_FIELDS)

    def state_tabs(self) -> list[dict[str, Any]]:
        """A link per state, keeping the time range; the current one is marked."""
        params = self.filter_params() if self.is_valid() else {}
        current = params.pop("state", "")
        tabs = []
        for value, label in STATE_CHOICES:
            query = urlencode({"state": value, **params} if value else params)
            tabs.append({"label": label, "query": query, "current": value == current})
        return tabs

    def filter_params(self) -> dict[str, str]:
        """The active filters as query parameters, for pager and live-refresh links."""
        params = {}
        for name in FILTER_FIELDS:
            value = self.cleaned_data.get(name)
            if isinstance(value, datetime):
                # As typed (and valid): a date alone must keep meaning the whole day.
                value = self.data[name].strip()
            if value:
                params[name] = value
        return params

    def apply(self, deliveries: QuerySet) -> QuerySet:
        data = self.cleaned_data
        if data.get("state"):
            deliveries = deliveries.filter(state__in=STATE_FILTERS[data["state"]])
        if data.get("from"):
            deliveries = deliveries.filter(created_at__gte=data["from"])
        if data.get("to"):
            end = self._exclusive_end(data["to"])
            if end is not None:
                deliveries = deliveries.filter(created_at__lt=end)
        return deliveries

    def _exclusive_end(self, end: datetime) -> datetime | None:
        """The end is inclusive: a date alone means the whole day, a minute the whole minute.
        None when that runs past the last representable time (no upper bound then)."""
        try:
            if len(self.data.get("to", "").strip()) <= len("YYYY-MM-DD"):
                return end + timedelta(days=1)
            if end.second == 0 and end.microsecond == 0:
                return end + timedelta(minutes=1)
        except OverflowError:
            return None
        return end


class SignatureCheckForm(forms.Form):
    """A received body and signature header value to verify with the destination's secrets."""

    body = forms.CharField(
        label="Request body, exactly as received",
        strip=False,  # a trailing newline is part of what was signed
        widget=forms.Textarea(
            attrs={
                "rows": 6,
                "spellcheck": "false",
                "autocomplete": "off",
                "maxlength": verification.MAX_BODY_BYTES,
            }
        ),
    )
    signature = forms.CharField(
        label="Signature header value",
        max_length=verification.MAX_SIGNATURE_CHARS,
        widget=forms.TextInput(
            attrs={"placeholder": "sha256=…", "spellcheck": "false", "autocomplete": "off"}
        ),
    )
    # Standard Webhooks destinations only: the id and timestamp are signed with the body.
    webhook_id = forms.CharField(
        label="webhook-id header value",
        required=False,
        max_length=verification.MAX_MESSAGE_ID_CHARS,
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
    )
    webhook_timestamp = forms.CharField(
        label="webhook-timestamp header value",
        required=False,
        max_length=20,
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
    )
