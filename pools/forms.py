from django import forms
from django.utils.functional import Promise

from couponsite.forms import BootstrapModelForm

from .access import groups_assignable
from .models import (
    BULK_ONLY_FIELDS,
    GIFT_CARD_ONLY_FIELDS,
    PATTERN_SOURCES,
    REMOTE_ONLY_FIELDS,
    CouponPool,
    CouponType,
    ModuleSettings,
    PoolSource,
)

SECTIONS: list[tuple[str, tuple[str, ...]]] = [
    (
        "Source",
        ("source", "pattern", "excluded_characters", "excluded_phrases", "callback_url",
         "callback_api_key"),
    ),
    ("General settings", ("name", "external_id", "coupon_type", "value", "currency")),
    (
        "Restrictions",
        ("minimum_value", "minimum_redemption_value", "purchase_minimum",
         "expiration_period_count", "expiration_period_unit", "stores", "products",
         "aggregated"),
    ),
    ("Pass template", ("pass_template",)),
    ("User group", ("user_group",)),
]

# Which fields apply to which source / type: the page hides (and disables) the rest,
# the model's clean() refuses them on the server.
APPLIES_TO_SOURCES = {
    "pattern": [str(s) for s in PATTERN_SOURCES],
    **{name: [PoolSource.BULK.value] for name in BULK_ONLY_FIELDS},
    **{name: [PoolSource.REMOTE.value] for name in REMOTE_ONLY_FIELDS},
}
APPLIES_TO_TYPES = {
    "value": [t.value for t in CouponType if t != CouponType.FREE_SHIPPING],
    **{name: [CouponType.GIFT_CARD.value] for name in GIFT_CARD_ONLY_FIELDS},
}

EXTRA_TEMPLATES = {"pattern": "pools/_combinations_slot.html"}

# The form's grid: sections in two columns on wide screens (``columns()``; a title no
# form has, like the edit's "Updating coupons" on create, is skipped), fields side by side
# within a section (Bootstrap column classes; a field not named here takes the whole row).
COLUMNS: tuple[tuple[str, ...], ...] = (
    ("Source", "General settings", "Updating coupons"),
    ("Restrictions", "Pass template", "User group"),
)
FIELD_WIDTHS = {
    "excluded_characters": "col-md-5", "excluded_phrases": "col-md-7",
    "name": "col-md-7", "external_id": "col-md-5",
    "coupon_type": "col-md-5", "value": "col-md-4", "currency": "col-md-3",
    "minimum_value": "col-md-6", "minimum_redemption_value": "col-md-6",
    "purchase_minimum": "col-md-5", "expiration_period_count": "col-md-7",
}


class WhenShown(Promise):
    """A help text made when the page shows it: the lock's count ("holds 31 coupons")
    runs only for a page that renders it, never for a save that redirects. True without
    making it (``BoundField`` asks ``help_text or ""``)."""

    def __init__(self, text):
        self._text = text

    def __bool__(self) -> bool:
        return True

    def __str__(self) -> str:
        return self._text()


class PoolForm(BootstrapModelForm):
    class Meta:
        model = CouponPool
        fields = [name for _, names in SECTIONS for name in names]
        widgets = {
            "source": forms.RadioSelect,
            "excluded_phrases": forms.Textarea(attrs={"rows": 3}),
            "callback_api_key": forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
            "stores": forms.SelectMultiple(attrs={"size": 4}),
            "products": forms.SelectMultiple(attrs={"size": 4}),
            "pattern": forms.TextInput(
                attrs={"autocomplete": "off", "spellcheck": "false", "class": "font-monospace"}
            ),
            "excluded_characters": forms.TextInput(
                attrs={"autocomplete": "off", "spellcheck": "false", "placeholder": "e.g. O0I1"}
            ),
        }

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source"].choices = PoolSource.choices
        for name in ("stores", "products"):  # with the external ID / SKU the API names them by
            self.fields[name].label_from_instance = lambda item: item.label
        self.fields["coupon_type"].choices = [("", "Choose a type")] + CouponType.choices
        self.fields["expiration_period_unit"].choices = [("", "unit")] + list(
            self.fields["expiration_period_unit"].choices
        )[1:]
        # Placeholders are examples ("e.g. ..."), muted in static/css/app.css, never a value.
        self.fields["pattern"].widget.attrs.setdefault("placeholder", "e.g. SUMMER-####")
        self.fields["expiration_period_count"].widget.attrs.update({"placeholder": "e.g. 30", "min": 1})
        currency = self.fields["currency"].widget.attrs
        currency.update({"maxlength": 3, "placeholder": "e.g. EUR", "class": f"{currency.get('class', '')} text-uppercase".strip()})
        self.fields["user_group"].queryset = groups_assignable(user)
        self.fields["user_group"].empty_label = "No group: every user can see this pool"
        for name in ("value", "minimum_value", "minimum_redemption_value", "purchase_minimum"):
            self.fields[name].widget.attrs.update({"step": "0.01", "min": "0.01"})
        if self.instance.pk and self.instance.callback_api_key:
            self.fields["callback_api_key"].help_text = (
                "A key is stored. Leave empty to keep it, or type a new one to replace it."
            )
        self.lock = self.instance.lock_state()  # the source lock (``pools.models.lock``)
        self.pattern_warning = ""
        if self.lock.source_locked:
            self._lock_fields()

    def _lock_fields(self) -> None:
        """Disabled fields keep the stored value on save (Django uses the initial one)."""
        self.fields["source"].disabled = True
        self.fields["source"].help_text = WhenShown(self.lock.source_reason)  # counted when shown
        if self.instance.source not in PATTERN_SOURCES:
            self.fields["pattern"].disabled = True  # it has none, and cannot get one
        elif self.instance.source == PoolSource.BULK:
            for name in ("pattern", "excluded_characters"):
                self.fields[name].disabled = True
                self.fields[name].help_text = WhenShown(self.lock.bulk_pattern_reason)
        elif self.instance.source == PoolSource.GENERATED and self.lock.holds_coupons:
            self.fields["pattern"].help_text = WhenShown(self._pattern_help)
            self.fields["confirm_pattern_change"] = forms.BooleanField(
                label="Change the pattern", required=False,
                widget=forms.CheckboxInput(attrs={"class": "form-check-input"}),
            )

    def _pattern_help(self) -> str:
        return (f"This pool issued {self.lock.held()}. A new pattern must not make codes like theirs, "
                "and must allow more than that under the 1% rule; they keep their codes.")

    @property
    def awaits_confirmation(self) -> bool:
        """Only the new pattern's confirmation is missing: a question, not an error."""
        return set(self.errors) == {"confirm_pattern_change"}

    def locked_fields(self) -> list:
        """The disabled source fields, whose stored values the page's scripts read."""
        return [self[name] for name in ("source", "pattern", "excluded_characters") if self.fields[name].disabled]

    def full_clean(self):
        super().full_clean()
        if "confirm_pattern_change" in self.fields:  # a question, not shown as a mistake
            widget = self.fields["confirm_pattern_change"].widget
            widget.attrs["class"] = widget.attrs.get("class", "").replace(" is-invalid", "")

    def _post_clean(self):
        super()._post_clean()  # the model's clean: the lock's refusals
        if "confirm_pattern_change" not in self.fields or self.has_error("pattern"):
            return
        change = self.instance.pattern_change()
        if change is None:
            return
        self.pattern_warning = change.warning()
        if not self.cleaned_data.get("confirm_pattern_change"):
            self.add_error("confirm_pattern_change", "Tick “Change the pattern” to save the new pattern.")

    def clean_callback_api_key(self):
        # The stored key is never sent back to the browser; empty on edit keeps it.
        value = self.cleaned_data.get("callback_api_key") or ""
        if not value and self.instance.pk:
            return self.instance.callback_api_key
        return value

    def clean_currency(self):
        return (self.cleaned_data.get("currency") or "").strip().upper()

    def clean_external_id(self):
        value = self.cleaned_data.get("external_id")
        return value.strip() or None if value else None

    def clean_pattern(self):
        return self.cleaned_data.get("pattern") or None

    def sections(self):
        """(title, [(bound field, sources, types, extra template, width)]) per section.

        ``sources``/``types`` list what the field applies to (None: always shown);
        ``width`` is its Bootstrap column class.
        """
        return [
            (
                title,
                [
                    (
                        self[name],
                        APPLIES_TO_SOURCES.get(name),
                        APPLIES_TO_TYPES.get(name),
                        EXTRA_TEMPLATES.get(name),
                        FIELD_WIDTHS.get(name, "col-12"),
                    )
                    for name in names
                ],
            )
            for title, names in SECTIONS
        ] + self.extra_sections()

    def columns(self) -> list[list]:
        """The sections laid out in ``COLUMNS``; one that ``COLUMNS`` does not name ends
        the first column, so every section appears exactly once."""
        sections = self.sections()
        columns = [[section for title in column for section in sections if section[0] == title] for column in COLUMNS]
        named = {title for column in COLUMNS for title in column}
        columns[0] += [section for section in sections if section[0] not in named]
        return columns

    def extra_sections(self) -> list:
        """More sections after the pool's own (``coupons.forms.PoolEditForm``)."""
        return []

    def pool_fields(self) -> dict:
        """cleaned_data restricted to the pool's own fields (for the services)."""
        return {name: self.cleaned_data[name] for name in self.Meta.fields if name in self.cleaned_data}


class ModuleSettingsForm(BootstrapModelForm):
    class Meta:
        model = ModuleSettings
        fields = ["auto_redeem"]
