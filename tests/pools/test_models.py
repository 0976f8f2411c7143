"""Every SPEC rule for a coupon pool, checked through the service on PostgreSQL."""

import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from pools import services
from pools.models import CouponPool, CouponType, ModuleSettings, PoolSource
from pools.models.terms import period_text
from tests.factories import BulkPoolFactory, PoolFactory, ProductFactory, StoreFactory

pytestmark = pytest.mark.django_db

BASE = {"name": "Spring", "source": PoolSource.UPLOADED, "coupon_type": CouponType.AMOUNT,
        "value": Decimal("10.00")}


def create(**overrides):
    return services.pool_create(actor=None, **{**BASE, **overrides})


def refusal(**overrides) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as error:
        create(**overrides)
    assert not CouponPool.objects.filter(name=overrides.get("name", "Spring")).exists()
    return error.value.message_dict


def test_runs_on_postgresql():
    assert connection.vendor == "postgresql"


def test_a_complete_gift_card_pool_is_stored_with_every_field():
    store, product = StoreFactory(), ProductFactory()
    pool = create(
        external_id="GIFT-2026", source=PoolSource.BULK, pattern="GC-$$$$$$$$",
        excluded_characters="O, 0, I,1, O", excluded_phrases="Bad\nbad\nWORD",
        coupon_type=CouponType.GIFT_CARD, value=Decimal("100.00"), currency="EUR",
        minimum_value=Decimal("1.00"), minimum_redemption_value=Decimal("15.00"),
        purchase_minimum=Decimal("20.00"), expiration_period_count=2,
        expiration_period_unit="month", stores=[store], products=[product],
        aggregated=True, pass_template="gift-card-v2",
    )
    pool.refresh_from_db()
    assert pool.excluded_characters == "O,0,I,1"
    assert pool.excluded_phrases == "bad\nword"
    assert list(pool.stores.all()) == [store] and list(pool.products.all()) == [product]
    assert pool.compiled_pattern().combinations == 32**8
    assert pool.expiration_period_display == "2 months"
    claimed = datetime.datetime(2026, 1, 31, tzinfo=datetime.UTC)
    assert pool.expires_at(claimed) == datetime.datetime(2026, 3, 31, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        ({"value": None}, "value", "Enter the value"),
        ({"value": Decimal("0.00")}, "value", "at least 0.01"),
        ({"value": Decimal("1.234")}, "value", "2 decimal places"),
        ({"coupon_type": CouponType.PERCENTAGE, "value": Decimal("100.01")}, "value",
         "cannot be more than 100"),
        ({"coupon_type": CouponType.FREE_SHIPPING, "value": Decimal("5")}, "value",
         "Free shipping coupons have no value"),
        ({"currency": "EUR"}, "currency", "applies to gift cards only"),
        ({"minimum_value": Decimal("1")}, "minimum_value", "applies to gift cards only"),
        ({"minimum_redemption_value": Decimal("1")}, "minimum_redemption_value",
         "applies to gift cards only"),
        ({"coupon_type": CouponType.GIFT_CARD, "currency": "eur"}, "currency",
         "three capital letters"),
        ({"coupon_type": CouponType.GIFT_CARD, "currency": "XYZ"}, "currency",
         "not an ISO 4217 currency"),
        ({"coupon_type": CouponType.GIFT_CARD, "minimum_value": Decimal("10.00")},
         "minimum_value", "below the card's value"),
        ({"coupon_type": CouponType.GIFT_CARD, "minimum_redemption_value": Decimal("10.01")},
         "minimum_redemption_value", "cannot be more than the card's value"),
        ({"purchase_minimum": Decimal("0")}, "purchase_minimum", "at least 0.01"),
        ({"external_id": "abc"}, "external_id", "6 to 24 characters"),
        ({"external_id": "a" * 25}, "external_id", "at most 24 characters"),
        ({"external_id": "has space"}, "external_id", "6 to 24 characters"),
        ({"name": ""}, "name", "cannot be blank"),
        ({"source": "magic"}, "source", "not a valid choice"),
        ({"pattern": "AB-####"}, "pattern", "Only generated and bulk generation pools"),
        ({"source": PoolSource.GENERATED}, "pattern", "needs a pattern"),
        ({"source": PoolSource.BULK, "pattern": "AB-###"}, "pattern",
         "at least 4 placeholders"),
        ({"source": PoolSource.BULK, "pattern": "AB-####", "excluded_characters": "OI"},
         "excluded_characters", "not a single character"),
        ({"source": PoolSource.BULK, "pattern": "AB-####", "excluded_characters": "0,1,2,3,4,5,6,7,8,9"},
         "excluded_characters", "remove every character"),
        ({"source": PoolSource.BULK, "pattern": "SPRING-####", "excluded_phrases": "ring"},
         "excluded_phrases", "part of the pattern's fixed text"),
        ({"source": PoolSource.GENERATED, "pattern": "A#"}, "pattern",
         "not even one coupon fits"),
        ({"excluded_characters": "O"}, "excluded_characters", "bulk generation pools only"),
        ({"source": PoolSource.GENERATED, "pattern": "G-######", "excluded_phrases": "x"},
         "excluded_phrases", "bulk generation pools only"),
        ({"source": PoolSource.REMOTE}, "callback_url", "needs a callback URL"),
        ({"source": PoolSource.REMOTE, "callback_url": "https://shop.example/coupons"},
         "callback_api_key", "needs a callback API key"),
        ({"source": PoolSource.REMOTE, "callback_url": "ftp://x.example/", "callback_api_key": "k"},
         "callback_url", "Enter a valid http:// or https:// URL"),
        ({"callback_url": "https://shop.example/coupons"}, "callback_url",
         "Only remote pools have a callback URL"),
        ({"expiration_period_count": 30}, "expiration_period_unit", "Choose days"),
        ({"expiration_period_unit": "day"}, "expiration_period_count", "Enter how many"),
        ({"expiration_period_count": 0, "expiration_period_unit": "day"},
         "expiration_period_count", "greater than or equal to 1"),
        ({"expiration_period_count": 101, "expiration_period_unit": "year"},
         "expiration_period_count", "At most 100 years"),
        ({"expiration_period_count": 1201, "expiration_period_unit": "month"},
         "expiration_period_count", "At most 1,200 months"),
        ({"name": "   "}, "name", "Enter a name"),
    ],
)
def test_spec_rules_are_refused_with_a_clear_message(overrides, field, message):
    errors = refusal(**overrides)
    assert any(message in m for m in errors.get(field, [])), errors


def test_free_shipping_needs_no_value_and_percentage_can_be_100():
    assert create(coupon_type=CouponType.FREE_SHIPPING, value=None).value is None
    assert create(name="Full", coupon_type=CouponType.PERCENTAGE, value=Decimal("100")).value == 100


def test_generated_pool_with_literal_pattern_is_a_generic_code():
    pool = create(source=PoolSource.GENERATED, pattern="SPRINGCOUPON")
    assert pool.compiled_pattern().is_generic


def test_pattern_is_unique_across_all_pools():
    BulkPoolFactory(pattern="SHARED-$$$$")
    errors = refusal(source=PoolSource.GENERATED, pattern="SHARED-$$$$")
    assert errors["pattern"] == ["Another coupon pool already uses this pattern: each pool needs its own."]


def test_external_id_is_unique():
    PoolFactory(external_id="SPRING-2026")
    assert "already has this external ID" in refusal(external_id="SPRING-2026")["external_id"][0]


def test_database_refuses_a_generated_pool_without_pattern():
    from django.db import IntegrityError

    with pytest.raises(IntegrityError):
        CouponPool.objects.create(name="x", source=PoolSource.BULK, coupon_type="amount", value=1)


def test_source_and_pattern_are_locked_once_generation_started():
    pool = BulkPoolFactory(pattern="LOCK-$$$$")
    CouponPool.objects.filter(pk=pool.pk).update(generation_started_at=timezone.now())
    pool.refresh_from_db()
    with pytest.raises(ValidationError) as error:
        services.pool_change(pool=pool, pattern="LOCK-$$$$$")
    assert "cannot change once bulk generation has started" in error.value.message_dict["pattern"][0]
    pool.refresh_from_db()
    with pytest.raises(ValidationError) as error:
        services.pool_change(pool=pool, source=PoolSource.UPLOADED, pattern=None)
    assert "source" in error.value.message_dict
    pool.refresh_from_db()
    assert (pool.source, pool.pattern) == (PoolSource.BULK, "LOCK-$$$$")
    # Excluded characters too: they decide which codes the pattern makes.
    with pytest.raises(ValidationError) as error:
        services.pool_change(pool=pool, excluded_characters="O")
    assert "excluded characters cannot change" in error.value.message_dict["excluded_characters"][0]
    pool.refresh_from_db()
    # Everything else can still change.
    services.pool_change(pool=pool, name="Renamed", excluded_phrases="bad")
    pool.refresh_from_db()
    assert (pool.name, pool.excluded_characters) == ("Renamed", "")


def test_source_and_pattern_can_change_before_generation():
    pool = BulkPoolFactory(pattern="FREE-$$$$")
    services.pool_change(pool=pool, pattern="FREE-$$$$$")
    pool.refresh_from_db()
    assert pool.pattern == "FREE-$$$$$"


def test_module_settings_is_a_single_row():
    services.module_settings_update(auto_redeem=True)
    services.module_settings_update(auto_redeem=False)
    services.module_settings_update(auto_redeem=True)
    assert ModuleSettings.objects.count() == 1
    assert ModuleSettings.load().auto_redeem is True


@pytest.mark.parametrize("count, unit, text", [
    (1, "day", "1 day"), (30, "day", "30 days"), (1, "week", "1 week"), (2, "week", "2 weeks"),
    (1, "month", "1 month"), (6, "month", "6 months"), (1, "year", "1 year"), (2, "year", "2 years"), (None, "day", ""),
])
def test_an_expiry_period_reads_in_the_singular_and_the_plural(count, unit, text):
    assert period_text(count, unit) == text
