"""Coupon lifecycle: every status change goes through here.

Each single-coupon service locks the coupon row (``lock_coupon``), checks the current
status against ``RULES`` and raises ``CouponActionError`` naming the refusal, then
changes the row and writes the customer event(s) in the same transaction. Set-based
versions for many coupons live in ``coupons.bulk``; the list of actions a manager can
take (labels, menus, bulk or not) in ``coupons.actions``.

- ``rules``: the refusal, the actor, the status rules and shared checks;
- ``events``: the customer event writes;
- ``customers``: finding, creating and editing customers (their fields' rules);
- ``claims``: issuing coupons (claim, assign);
- ``transitions``: invalidate, unassign, transfer, expire;
- ``redemptions``: redeem and unredeem, gift cards included.
"""

from .claims import EXACT_GUESSING_CHECK, coupon_assign, coupon_claim, coupon_claim_for
from .customers import customer_clean, customer_create, customer_find, customer_get_or_create, customer_put, customer_update
from .redemptions import coupon_redeem, coupon_unredeem
from .rules import RULES, Actor, CouponActionError, Rule, voided_below_minimum
from .transitions import coupon_expire, coupon_invalidate, coupon_transfer, coupon_unassign

__all__ = [
    "EXACT_GUESSING_CHECK", "RULES", "Actor", "CouponActionError", "Rule", "coupon_assign", "coupon_claim",
    "coupon_claim_for", "coupon_expire", "coupon_invalidate", "coupon_redeem", "coupon_transfer",
    "coupon_unassign", "coupon_unredeem", "customer_clean", "customer_create", "customer_find",
    "customer_get_or_create", "customer_put", "customer_update", "voided_below_minimum",
]
