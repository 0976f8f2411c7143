"""A pool's coupon terms: the kinds (source, type, period), the money and currency rules,
and ``CouponTerms``, the immutable version of the properties a coupon gets."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pycountry
from dateutil.relativedelta import relativedelta
from django.core.exceptions import ValidationError
from django.core.validators import (
    MinValueValidator,
)
from django.db import models

from couponsite.wording import counted


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

    @property
    def expiration_period_display(self) -> str:
        return period_text(self.expiration_period_count, self.expiration_period_unit)

    def value_display(self, balance=None) -> str:
        """The value these terms give (``value_text``), a gift card's with its ``balance``."""
        return value_text(self.coupon_type, self.value, self.currency, balance=balance)


def value_text(coupon_type: str, value, currency: str = "", *, balance=None) -> str:
    """The one way a value reads, for a pool (its list), a terms version (the overview, a
    coupon's terms) and a coupon (the coupon columns, its page): "15.00%", "10.00",
    "50.00 EUR", a gift card with its balance "30.00 / 50.00 EUR"; "" for no value."""
    if value is None:
        return ""
    if coupon_type == CouponType.PERCENTAGE:
        return f"{value}%"
    if balance is not None and coupon_type == CouponType.GIFT_CARD:
        return f"{balance} / {value} {currency}".strip()
    return f"{value} {currency}".strip()


def period_text(count: int | None, unit: str) -> str:
    """``(30, "day")`` as "30 days", ``(1, "month")`` as "1 month"; "" for no period."""
    if not count or unit not in PeriodUnit.values:
        return ""
    return counted(count, unit, PeriodUnit(unit).label)  # the value is the singular noun, the label the plural


def period_end(start, count: int | None, unit: str) -> datetime.datetime | None:
    if not count or not unit:
        return None
    return start + relativedelta(**{f"{unit}s": count})
