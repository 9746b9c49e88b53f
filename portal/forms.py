"""Forms of the portal: sign-in and API tokens."""

from django import forms
from django.contrib.auth.forms import AuthenticationForm


class EmailAuthenticationForm(AuthenticationForm):
    """Sign-in with email and password."""

    username = forms.EmailField(
        label="Email",
        widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}),
    )

    def clean_username(self) -> str:
        return self.cleaned_data["username"].strip().lower()


class ApiTokenForm(forms.Form):
    """A new API token: what it is for and how long it lasts."""

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
