"""Basket validation: can a coupon be used on a basket, and what does it take off?
The same rule for the API's validate and its checkout event."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.utils import timezone

from pools.models import CouponType, PoolSource, Product, Store

from .models import Coupon, CouponStatus
from .services import RULES

S = CouponStatus


@dataclass
class Validation:
    coupon: Coupon
    reasons: list[tuple[str, str]]
    discount: Decimal
    free_shipping: bool

    @property
    def valid(self) -> bool:
        return not self.reasons


CENT = Decimal("0.01")


def coupon_check(coupon: Coupon, basket: dict) -> Validation:
    """Whether ``coupon`` can be used on ``basket`` (total, customer, currency, store,
    products), every reason why not, and the discount it would give. Changes nothing:
    validate and checkout both ask here."""
    terms = coupon.effective_terms
    total: Decimal = basket["total"]
    reasons: list[tuple[str, str]] = []
    now = timezone.now()
    usable = RULES["redeem_gift_card" if terms.is_gift_card else "redeem"].allowed
    if coupon.status == S.UNASSIGNED and coupon.pool.source == PoolSource.UPLOADED:
        pass  # an uploaded coupon can be redeemed directly with a customer (SPEC 2)
    elif coupon.status not in usable:
        reasons.append(("status", f"The coupon is {CouponStatus(coupon.status).label.lower()}."))
    if coupon.expires_at is not None and coupon.expires_at <= now:
        reasons.append(("expired", f"The coupon expired on {timezone.localtime(coupon.expires_at):%Y-%m-%d %H:%M}."))
    wanted = (basket.get("customer") or "").strip()
    if wanted and coupon.customer_id and coupon.customer.external_id != wanted:
        reasons.append(("customer", f"The coupon belongs to another customer than {wanted}."))
    if terms.purchase_minimum is not None and total < terms.purchase_minimum:
        reasons.append(("purchase_minimum", f"The basket total {total} is below the minimum purchase of {terms.purchase_minimum}."))
    store_ids = list(terms.store_ids or [])
    if store_ids:
        store = (basket.get("store") or "").strip()
        allowed = set(Store.objects.filter(pk__in=store_ids).values_list("external_id", flat=True))
        if store not in allowed:
            reasons.append(("store", "The coupon is not valid in this store." if store else "The coupon is valid only in some stores; name the store."))
    product_ids = list(terms.product_ids or [])
    if product_ids:
        skus = set(Product.objects.filter(pk__in=product_ids).values_list("sku", flat=True))
        if not skus & set(basket.get("products") or []):
            reasons.append(("products", "The basket holds none of the products the coupon is valid for."))
    currency = (basket.get("currency") or "").strip().upper()
    if terms.currency_required and currency and currency != terms.currency_required:
        reasons.append(("currency", f"The gift card is in {terms.currency_required}; the basket is in {currency}."))
    discount, free_shipping = _discount(coupon, terms, total)
    return Validation(coupon=coupon, reasons=reasons, discount=discount if not reasons else Decimal("0.00"), free_shipping=free_shipping and not reasons)


def _discount(coupon: Coupon, terms, total: Decimal) -> tuple[Decimal, bool]:
    if terms.coupon_type == CouponType.FREE_SHIPPING:
        return Decimal("0.00"), True
    if terms.coupon_type == CouponType.PERCENTAGE:
        return (total * (terms.value or 0) / 100).quantize(CENT, rounding=ROUND_HALF_UP), False
    if terms.coupon_type == CouponType.GIFT_CARD:
        return min(coupon.current_balance or Decimal("0"), total).quantize(CENT), False
    return min(terms.value or Decimal("0"), total).quantize(CENT), False
