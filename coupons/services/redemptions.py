"""Redeeming and unredeeming: a plain coupon's usage, a gift card's amounts and balance
(each redemption kept, so the newest can be undone)."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from pools.models import PoolSource

from ..models import Coupon, Customer, EventAction, GiftCardRedemption
from .events import write_event
from .rules import RULES, Actor, CouponActionError, S, check_not_past_expiry, give, lock_coupon, voided_below_minimum


@transaction.atomic
def coupon_redeem(
    *, coupon: Coupon, actor: Actor, amount: Decimal | None = None, customer: Customer | None = None,
    up_to: Decimal | None = None,
) -> Coupon:
    """Redeem a coupon; a gift card uses ``amount`` of its balance (all of it if None), or
    with ``up_to`` (a checkout's amount left to pay) as much of it as that, decided from
    the balance under the lock. The gift card's ``redeemed_amount`` says what was taken.

    ``customer`` (API redeem events) lets an unassigned coupon of an uploaded pool be
    redeemed directly: it is assigned to that customer at the same time.
    """
    coupon = lock_coupon(coupon)
    terms = coupon.effective_terms
    now = timezone.now()
    check_not_past_expiry(coupon, now)
    if (
        coupon.status == S.UNASSIGNED
        and customer is not None
        and coupon.pool.source == PoolSource.UPLOADED
    ):
        give(coupon, customer, terms, now)
        write_event(EventAction.CLAIM, coupon=coupon, customer_id=customer.pk, actor=actor, now=now, on_redeem=True)
    elif customer is not None and coupon.customer_id and coupon.customer_id != customer.pk:
        raise CouponActionError(
            f"The coupon belongs to another customer than {customer.external_id}.", code="wrong_customer"
        )
    if terms.is_gift_card:
        if up_to is not None:
            amount = min(Decimal(up_to), coupon.current_balance)
        return _redeem_gift_card(coupon, terms, actor, amount, now)
    if amount is not None:
        raise CouponActionError("Only gift cards are redeemed with an amount.", code="amount_not_allowed")
    RULES["redeem"].check(coupon)
    coupon.status = S.REDEEMED
    coupon.usages += 1
    coupon.save(update_fields=["status", "usages", "customer", "claimed_at", "expires_at", "claims"])
    if coupon.customer_id:
        write_event(EventAction.REDEEM, coupon=coupon, customer_id=coupon.customer_id, actor=actor, now=now)
    return coupon


def _redeem_gift_card(coupon: Coupon, terms, actor: Actor, amount, now) -> Coupon:
    RULES["redeem_gift_card"].check(coupon)
    balance = coupon.current_balance
    if amount is None:
        amount = balance
    amount = Decimal(amount).quantize(Decimal("0.01"))
    if amount <= 0:
        raise CouponActionError("Enter an amount of at least 0.01.", code="amount_invalid")
    if amount > balance:
        raise CouponActionError(
            f"The gift card's balance is {balance}; {amount} cannot be taken from it.", code="insufficient_balance"
        )
    if terms.minimum_redemption_value and amount < terms.minimum_redemption_value and amount != balance:
        raise CouponActionError(
            f"Each redemption must use at least {terms.minimum_redemption_value} of this gift card.",
            code="below_minimum_redemption",
        )
    GiftCardRedemption.objects.create(
        coupon=coupon, amount=amount, balance_before=balance, status_before=coupon.status
    )
    coupon.redeemed_amount = amount
    coupon.balance = balance - amount
    coupon.usages += 1
    if coupon.balance == 0:
        coupon.status = S.REDEEMED
    elif terms.minimum_value and coupon.balance < terms.minimum_value:
        coupon.status = S.INVALID  # SPEC: a balance below the minimum value voids the card
    else:
        coupon.status = S.PARTIALLY_REDEEMED
    coupon.save(update_fields=["status", "usages", "balance", "customer", "claimed_at", "expires_at", "claims"])
    if coupon.customer_id:
        write_event(
            EventAction.REDEEM, coupon=coupon, customer_id=coupon.customer_id, actor=actor, now=now,
            amount=amount, balance=coupon.balance,
        )
    return coupon


@transaction.atomic
def coupon_unredeem(*, coupon: Coupon, actor: Actor) -> Coupon:
    """Undo a redemption (a gift card: its newest one, restoring the balance)."""
    coupon = lock_coupon(coupon)
    now = timezone.now()
    if not coupon.effective_terms.is_gift_card:
        RULES["unredeem"].check(coupon)
        coupon.status = S.CLAIMED
        coupon.usages = max(coupon.usages - 1, 0)
        coupon.save(update_fields=["status", "usages"])
        data = {}
    else:
        last = (
            GiftCardRedemption.objects.select_for_update()
            .filter(coupon=coupon, reversed_at__isnull=True)
            .order_by("-id")
            .first()
        )
        if not _voided_by(coupon, last):
            RULES["unredeem_gift_card"].check(coupon)
        if last is None:
            raise CouponActionError("This gift card has no redemption to undo.", code="nothing_to_undo")
        last.reversed_at = now
        last.save(update_fields=["reversed_at"])
        coupon.balance = last.balance_before
        coupon.status = last.status_before if last.status_before != S.UNASSIGNED else S.CLAIMED
        coupon.usages = max(coupon.usages - 1, 0)
        coupon.save(update_fields=["status", "usages", "balance"])
        data = {"amount": last.amount, "balance": coupon.balance}
    if coupon.customer_id:
        write_event(EventAction.UNREDEEM, coupon=coupon, customer_id=coupon.customer_id, actor=actor, now=now, **data)
    return coupon


def _voided_by(coupon: Coupon, last: GiftCardRedemption | None) -> bool:
    """True if ``last`` is the redemption that voided this gift card (minimum value); a
    card a manager invalidated after its last redemption stays void."""
    return (
        last is not None
        and voided_below_minimum(coupon)
        and last.status_before != S.INVALID
        and coupon.balance == last.balance_before - last.amount
    )
