"""Basket validation (``coupons.baskets``) on its own: the rule validate and checkout share."""

from decimal import Decimal

import pytest

from coupons.baskets import coupon_check
from coupons.models import CouponStatus
from pools.models import CouponType
from tests.factories import CouponFactory, CustomerFactory, GiftCardPoolFactory, PoolFactory

pytestmark = pytest.mark.django_db
S = CouponStatus


def test_a_gift_card_pays_up_to_its_balance_in_its_own_currency_only():
    anna = CustomerFactory(external_id="anna", currency="EUR")
    card = CouponFactory(pool=GiftCardPoolFactory(value="100.00", currency="EUR"), status=S.CLAIMED, customer=anna)
    assert card.effective_terms.currency_required == "EUR"
    ok = coupon_check(card, {"total": Decimal("30.00"), "currency": "eur", "customer": "anna"})
    assert ok.valid and ok.discount == Decimal("30.00")
    wrong = coupon_check(card, {"total": Decimal("30.00"), "currency": "USD"})
    assert [code for code, _ in wrong.reasons] == ["currency"] and wrong.discount == Decimal("0.00")
    assert "in EUR; the basket is in USD" in wrong.reasons[0][1]


def test_other_coupons_take_any_currency_and_give_their_discount():
    pool = PoolFactory(coupon_type=CouponType.PERCENTAGE, value="15", currency="")
    coupon = CouponFactory(pool=pool, status=S.CLAIMED)
    assert coupon.effective_terms.currency_required == ""
    result = coupon_check(coupon, {"total": Decimal("80.00"), "currency": "JPY"})
    assert result.valid and result.discount == Decimal("12.00")
    other = coupon_check(coupon, {"total": Decimal("80.00"), "customer": "someone-else"})
    assert [code for code, _ in other.reasons] == ["customer"]
