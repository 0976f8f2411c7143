"""Coupon pools, the store and product catalogs, and the module settings."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pycountry
from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import (
    MaxValueValidator,
    MinValueValidator,
    RegexValidator,
    URLValidator,
)
from django.db import models

from couponsite import outbound

from . import patterns

# How messages about a remote pool's callback name the URL and the other side.
CALLBACK_WHAT = "pool's callback URL"
CALLBACK_PEER = "remote coupon system"


class Store(models.Model):
    """An offline store a coupon can be restricted to."""

    name = models.CharField(max_length=200)
    external_id = models.CharField("external ID", max_length=64, unique=True, null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    """A catalog product a coupon can be restricted to."""

    name = models.CharField(max_length=200)
    sku = models.CharField("SKU", max_length=64, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"


class ModuleSettings(models.Model):
    """Installation-wide coupon settings: exactly one row (pk=1)."""

    auto_redeem = models.BooleanField(
        default=False,
        help_text="A checkout event that names a coupon code redeems that coupon, "
        "without a separate coupon redeem event.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "module settings"
        verbose_name_plural = "module settings"

    def __str__(self) -> str:
        return "Coupon module settings"

    def save(self, *args, **kwargs):
        self.pk = 1
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> ModuleSettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj


class PoolSource(models.TextChoices):
    UPLOADED = "uploaded", "Uploaded"
    GENERATED = "generated", "Generated"
    REMOTE = "remote", "Remote"
    BULK = "bulk", "Bulk generation"


class CouponType(models.TextChoices):
    AMOUNT = "amount", "Fixed amount"
    PERCENTAGE = "percentage", "Percentage off"
    FREE_SHIPPING = "free_shipping", "Free shipping"
    GIFT_CARD = "gift_card", "Gift card"


class PeriodUnit(models.TextChoices):
    DAY = "day", "days"
    WEEK = "week", "weeks"
    MONTH = "month", "months"
    YEAR = "year", "years"


PATTERN_SOURCES = (PoolSource.GENERATED, PoolSource.BULK)
MAX_PERIOD = {"day": 36_500, "week": 5_200, "month": 1_200, "year": 100}
GIFT_CARD_ONLY_FIELDS = ("currency", "minimum_value", "minimum_redemption_value")
BULK_ONLY_FIELDS = ("excluded_characters", "excluded_phrases")
REMOTE_ONLY_FIELDS = ("callback_url", "callback_api_key")
_AT_LEAST_A_CENT = MinValueValidator(Decimal("0.01"), "Enter an amount of at least 0.01.")


def money_field(*, help_text: str) -> models.DecimalField:
    """An optional amount with 2 decimals, at least 0.01."""
    return models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[_AT_LEAST_A_CENT],
        help_text=help_text,
    )

external_id_validator = RegexValidator(
    r"^[A-Za-z0-9._-]{6,24}$",
    "The external ID must be 6 to 24 characters long and use only letters, digits, "
    "dots, dashes and underscores.",
)


def validate_currency(value: str) -> None:
    if not value or len(value) != 3 or not value.isalpha() or not value.isupper():
        raise ValidationError("Enter a currency as three capital letters, such as EUR or USD.")
    if pycountry.currencies.get(alpha_3=value) is None:
        raise ValidationError(f"{value} is not an ISO 4217 currency code.")


class CouponTerms(models.Model):
    """An immutable snapshot of the properties a pool gives its coupons.

    Coupons point to a terms version instead of carrying a copy of the pool's
    properties, so a pool edit writes one new row instead of rewriting every coupon.
    ``effective`` is the version the coupon actually uses: itself for a version that
    is still in force, or the newer version it was rolled forward to by an
    "update all coupons" edit (kept flat: always one hop).
    """

    pool = models.ForeignKey("CouponPool", on_delete=models.PROTECT, related_name="terms_versions")
    version = models.PositiveIntegerField()
    effective = models.ForeignKey("self", on_delete=models.PROTECT, null=True, related_name="+")
    coupon_type = models.CharField(max_length=16, choices=CouponType.choices)
    value = models.DecimalField(max_digits=12, decimal_places=2, null=True)
    currency = models.CharField(max_length=3, blank=True)
    minimum_value = models.DecimalField(max_digits=12, decimal_places=2, null=True)
    minimum_redemption_value = models.DecimalField(max_digits=12, decimal_places=2, null=True)
    purchase_minimum = models.DecimalField(max_digits=12, decimal_places=2, null=True)
    expiration_period_count = models.PositiveIntegerField(null=True)
    expiration_period_unit = models.CharField(max_length=8, choices=PeriodUnit.choices, blank=True)
    pass_template = models.CharField(max_length=200, blank=True)
    store_ids = models.JSONField(default=list)
    product_ids = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    SNAPSHOT_FIELDS = (
        "coupon_type", "value", "currency", "minimum_value", "minimum_redemption_value",
        "purchase_minimum", "expiration_period_count", "expiration_period_unit",
        "pass_template",
    )

    class Meta:
        verbose_name = "coupon terms version"
        constraints = [
            models.UniqueConstraint(fields=["pool", "version"], name="terms_version_per_pool"),
        ]

    def __str__(self) -> str:
        return f"{self.pool} v{self.version}"

    def snapshot(self) -> dict:
        return {
            **{name: getattr(self, name) for name in self.SNAPSHOT_FIELDS},
            "store_ids": sorted(self.store_ids),
            "product_ids": sorted(self.product_ids),
        }

    @property
    def is_gift_card(self) -> bool:
        return self.coupon_type == CouponType.GIFT_CARD

    @property
    def currency_required(self) -> str:
        """The currency a customer (to receive one) and a basket (to pay with one) must
        be in: a gift card's, when it names one; "" when any will do. The one rule."""
        return self.currency if self.is_gift_card and self.currency else ""

    def expires_at(self, claimed_at: datetime.datetime) -> datetime.datetime | None:
        return period_end(claimed_at, self.expiration_period_count, self.expiration_period_unit)


def period_end(start, count: int | None, unit: str) -> datetime.datetime | None:
    if not count or not unit:
        return None
    return start + relativedelta(**{f"{unit}s": count})


class WebURLField(models.URLField):
    """A URL field whose form assumes https:// for a URL typed without a scheme."""

    def formfield(self, **kwargs):
        return super().formfield(**{"assume_scheme": "https", **kwargs})


class CouponPool(models.Model):
    name = models.CharField(max_length=200)
    external_id = models.CharField(
        "external ID",
        max_length=24,
        unique=True,
        null=True,
        blank=True,
        validators=[external_id_validator],
        error_messages={"unique": "Another coupon pool already has this external ID."},
        help_text="Optional key for integrations: 6 to 24 letters, digits, dots, dashes "
        "or underscores.",
    )
    source = models.CharField(max_length=16, choices=PoolSource.choices)
    pattern = models.CharField(
        max_length=patterns.MAX_CODE_LENGTH,
        unique=True,
        null=True,
        blank=True,
        error_messages={
            "unique": "Another coupon pool already uses this pattern: each pool needs its own."
        },
        help_text="# digit, @ lowercase letter, ^ capital letter, * letter or digit, "
        "$ capital letter or digit; any other character is kept as written. "
        "Literals only (e.g. SPRINGCOUPON) give every customer the same code.",
    )
    excluded_characters = models.CharField(
        max_length=500,
        blank=True,
        help_text="Comma-separated, case-sensitive: O, 0, I, 1. List lowercase and capital "
        "letters separately.",
    )
    excluded_phrases = models.TextField(
        blank=True,
        help_text="One phrase per line; no code will contain one, whatever its case.",
    )
    callback_url = WebURLField(
        "callback URL",
        max_length=500,
        blank=True,
        validators=[URLValidator(schemes=["http", "https"], message="Enter a valid http:// or https:// URL.")],
        help_text="Receives a POST for each coupon to issue and answers {\"code\": ...}.",
    )
    callback_api_key = models.CharField(
        "callback API key",
        max_length=200,
        blank=True,
        help_text="Sent as api_key in every request, so the remote system can check it.",
    )
    coupon_type = models.CharField("type", max_length=16, choices=CouponType.choices)
    value = money_field(
        help_text="The amount, the percentage, or the gift card's starting balance.",
    )
    currency = models.CharField(
        max_length=3,
        blank=True,
        validators=[validate_currency],
        help_text="ISO 4217 code. Only customers with this currency can get these gift cards.",
    )
    minimum_value = money_field(
        help_text="A gift card whose balance falls below this amount is voided.",
    )
    minimum_redemption_value = money_field(
        help_text="Each redemption must use at least this much of the gift card.",
    )
    purchase_minimum = money_field(
        help_text="Minimum basket value for using the coupon.",
    )
    expiration_period_count = models.PositiveIntegerField(
        "expires after",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(36500)],
    )
    expiration_period_unit = models.CharField(
        "unit", max_length=8, choices=PeriodUnit.choices, blank=True
    )
    stores = models.ManyToManyField(
        Store,
        blank=True,
        related_name="coupon_pools",
        help_text="Only valid in these stores; none selected: every store. "
        "Ctrl/Cmd-click to pick several.",
    )
    products = models.ManyToManyField(
        Product,
        blank=True,
        related_name="coupon_pools",
        help_text="Only for these products; none selected: every product.",
    )
    aggregated = models.BooleanField(
        "aggregated coupon",
        default=False,
        help_text="A customer always gets the same code from this pool.",
    )
    pass_template = models.CharField(
        max_length=200, blank=True, help_text="Wallet pass template for these coupons."
    )
    user_group = models.ForeignKey(
        Group,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="coupon_pools",
        help_text="Only members of this group (and superusers) can see and manage the pool.",
    )
    current_terms = models.ForeignKey(
        CouponTerms,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
        help_text="The terms version new coupons of this pool get.",
    )
    generation_started_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Set when the first bulk generation batch starts; source and pattern "
        "are locked from then on.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, editable=False
    )

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(source__in=PATTERN_SOURCES) | models.Q(pattern__isnull=False),
                name="pool_pattern_for_generated_sources",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    # --- derived -----------------------------------------------------------------

    @property
    def has_pattern(self) -> bool:
        return self.source in PATTERN_SOURCES

    @property
    def is_gift_card(self) -> bool:
        return self.coupon_type == CouponType.GIFT_CARD

    @property
    def source_locked(self) -> bool:
        return self.generation_started_at is not None

    def compiled_pattern(self) -> patterns.Pattern | None:
        if not self.has_pattern or not self.pattern:
            return None
        phrases = self.excluded_phrases if self.source == PoolSource.BULK else None
        excluded = self.excluded_characters if self.source == PoolSource.BULK else None
        return patterns.parse_pattern(self.pattern, excluded, phrases)

    def expires_at(self, claimed_at: datetime.datetime) -> datetime.datetime | None:
        return period_end(claimed_at, self.expiration_period_count, self.expiration_period_unit)

    def terms_snapshot(self) -> dict:
        """The pool's current coupon-facing properties, as a terms version holds them."""
        return {
            **{name: getattr(self, name) for name in CouponTerms.SNAPSHOT_FIELDS},
            "store_ids": sorted(self.stores.values_list("pk", flat=True)),
            "product_ids": sorted(self.products.values_list("pk", flat=True)),
        }

    @property
    def expiration_period_display(self) -> str:
        if not self.expiration_period_count:
            return ""
        unit = self.get_expiration_period_unit_display()
        if self.expiration_period_count == 1:
            unit = unit.rstrip("s")
        return f"{self.expiration_period_count} {unit}"

    # --- validation --------------------------------------------------------------

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}

        def refuse(field: str, message: str) -> None:
            errors.setdefault(field, []).append(message)

        if self.name is not None and not self.name.strip():
            refuse("name", "Enter a name.")
        self._clean_source_fields(refuse)
        self._clean_type_fields(refuse)
        self._clean_expiration(refuse)
        self._clean_locked_fields(refuse)
        if errors:
            raise ValidationError(errors)

    def _clean_source_fields(self, refuse) -> None:
        source_name = dict(PoolSource.choices).get(self.source, "").lower()
        if self.has_pattern:
            if not self.pattern:
                refuse("pattern", f"A {source_name} pool needs a pattern.")
        elif self.pattern:
            refuse("pattern", "Only generated and bulk generation pools have a pattern.")
        if self.source != PoolSource.BULK:
            for field in BULK_ONLY_FIELDS:
                if getattr(self, field).strip():
                    label = self._meta.get_field(field).verbose_name.capitalize()
                    refuse(field, f"{label} apply to bulk generation pools only.")
        if self.source == PoolSource.REMOTE:
            for field in REMOTE_ONLY_FIELDS:
                if not getattr(self, field):
                    label = self._meta.get_field(field).verbose_name
                    refuse(field, f"A remote pool needs a {label}.")
        else:
            for field in REMOTE_ONLY_FIELDS:
                if getattr(self, field):
                    label = self._meta.get_field(field).verbose_name
                    refuse(field, f"Only remote pools have a {label}.")
        if self.has_pattern and self.pattern:
            self._clean_pattern(refuse)
        if self.source == PoolSource.REMOTE and self.callback_url:
            self._clean_callback_url(refuse)

    def _clean_callback_url(self, refuse) -> None:
        """The outbound address guard, at save (it runs again at every call: a name may
        resolve elsewhere later). A host name that does not resolve is refused for a new
        or changed URL only, so a passing DNS failure does not block editing a pool."""
        try:
            self._meta.get_field("callback_url").run_validators(self.callback_url)
        except ValidationError:
            return  # the field's own error says it
        if self.__dict__.get("_accepted_callback_url") == self.callback_url:
            return  # checked already by this save (the form, then the service)
        try:
            outbound.check_url(self.callback_url, what=CALLBACK_WHAT, peer=CALLBACK_PEER)
        except outbound.OutboundError as error:
            if error.code == outbound.REFUSED_ADDRESS or self.callback_url != self._stored_callback_url():
                refuse("callback_url", str(error))
                return
        self._accepted_callback_url = self.callback_url

    def _stored_callback_url(self) -> str | None:
        if self.pk is None:
            return None
        return type(self).objects.filter(pk=self.pk).values_list("callback_url", flat=True).first()

    def _clean_pattern(self, refuse) -> None:
        bulk = self.source == PoolSource.BULK
        try:
            excluded = patterns.parse_excluded_characters(self.excluded_characters if bulk else "")
            phrases = patterns.parse_excluded_phrases(self.excluded_phrases if bulk else "")
        except patterns.PatternError as exc:
            refuse(exc.field, str(exc))
            return
        if bulk:
            self.excluded_characters = ",".join(dict.fromkeys(
                item.strip() for item in self.excluded_characters.split(",") if item.strip()
            ))
            self.excluded_phrases = "\n".join(phrases)
        try:
            compiled = patterns.parse_pattern(self.pattern, excluded, phrases)
        except patterns.PatternError as exc:
            refuse(exc.field, str(exc))
            return
        if bulk and compiled.placeholder_count < patterns.MIN_BULK_PLACEHOLDERS:
            refuse(
                "pattern",
                f"A bulk generation pattern needs at least {patterns.MIN_BULK_PLACEHOLDERS} "
                f"placeholders (# @ ^ * $); this one has {compiled.placeholder_count}.",
            )
        elif not compiled.is_generic and compiled.max_coupons < 1:
            refuse(
                "pattern",
                f"This pattern has only {compiled.combinations:,} combinations, so not even "
                "one coupon fits under the 1% guessing protection. Add placeholders.",
            )

    def _clean_type_fields(self, refuse) -> None:
        if not self.coupon_type:
            return
        if self.coupon_type == CouponType.FREE_SHIPPING:
            if self.value is not None:
                refuse("value", "Free shipping coupons have no value; leave it empty.")
        elif self.value is None:
            refuse("value", "Enter the value of the coupons.")
        elif self.coupon_type == CouponType.PERCENTAGE and self.value > 100:
            refuse("value", "A percentage cannot be more than 100.")
        if not self.is_gift_card:
            for field in GIFT_CARD_ONLY_FIELDS:
                if getattr(self, field) not in (None, ""):
                    label = self._meta.get_field(field).verbose_name.capitalize()
                    refuse(field, f"{label} applies to gift cards only.")
            return
        if self.value is not None:
            if self.minimum_value is not None and self.minimum_value >= self.value:
                refuse("minimum_value", "The minimum value must be below the card's value.")
            if (
                self.minimum_redemption_value is not None
                and self.minimum_redemption_value > self.value
            ):
                refuse(
                    "minimum_redemption_value",
                    "The minimum redemption value cannot be more than the card's value.",
                )

    def _clean_expiration(self, refuse) -> None:
        count, unit = self.expiration_period_count, self.expiration_period_unit
        if count and not unit:
            refuse("expiration_period_unit", "Choose days, weeks, months or years.")
        if unit and not count:
            refuse("expiration_period_count", "Enter how many, or clear the unit.")
        if count and unit in MAX_PERIOD and count > MAX_PERIOD[unit]:
            refuse(
                "expiration_period_count",
                f"At most {MAX_PERIOD[unit]:,} {PeriodUnit(unit).label}: a coupon cannot be valid "
                "for more than 100 years.",
            )

    def _clean_locked_fields(self, refuse) -> None:
        if not self.pk or not self.source_locked:
            return
        # Excluded characters too: they define which codes the pattern makes, and so the
        # pool's capacity under the 1% rule.
        locked = ("source", "pattern", "excluded_characters")
        stored = type(self).objects.filter(pk=self.pk).values(*locked).first()
        if stored is None:
            return
        for field in locked:
            if getattr(self, field) != stored[field]:
                label = self._meta.get_field(field).verbose_name
                refuse(
                    field,
                    f"The {label} cannot change once bulk generation has started "
                    f"(it is {stored[field]!r}).",
                )
