"""Status changes that are not a claim or a redemption: invalidate, unassign, transfer,
expire."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from ..models import ActorKind, Coupon, EventAction
from .customers import customer_find
from .events import write_event
from .rules import RULES, Actor, CouponActionError, S, check_currency, check_not_past_expiry, lock_coupon


def _set_status(coupon: Coupon, *, rule: str, status: int, event: str, actor: Actor) -> Coupon:
    """Lock, check the rule, write the holder's event (if any), set the new status."""
    coupon = lock_coupon(coupon)
    RULES[rule].check(coupon)
    if coupon.customer_id:
        write_event(event, coupon=coupon, customer_id=coupon.customer_id, actor=actor, now=timezone.now())
    coupon.status = status
    coupon.save(update_fields=["status"])
    return coupon


@transaction.atomic
def coupon_invalidate(*, coupon: Coupon, actor: Actor) -> Coupon:
    return _set_status(coupon, rule="invalidate", status=S.INVALID, event=EventAction.INVALIDATE, actor=actor)


@transaction.atomic
def coupon_unassign(*, coupon: Coupon, actor: Actor) -> Coupon:
    coupon = lock_coupon(coupon)
    RULES["unassign"].check(coupon)
    now = timezone.now()
    write_event(EventAction.UNASSIGN, coupon=coupon, customer_id=coupon.customer_id, actor=actor, now=now)
    coupon.status = S.UNASSIGNED
    coupon.customer = None
    coupon.claimed_at = coupon.expires_at = None
    coupon.claims = 0
    coupon.save(update_fields=["status", "customer", "claimed_at", "expires_at", "claims"])
    return coupon


@transaction.atomic
def coupon_transfer(*, coupon: Coupon, actor: Actor, customer_id: str = "", email: str = "") -> Coupon:
    principal = actor.user if actor.kind == ActorKind.USER else None
    target = customer_find(external_id=customer_id, email=email, principal=principal)
    coupon = lock_coupon(coupon)
    RULES["transfer"].check(coupon)
    now = timezone.now()
    check_not_past_expiry(coupon, now)
    if target.pk == coupon.customer_id:
        raise CouponActionError(f"The coupon already belongs to customer {target.external_id}.", code="same_customer")
    check_currency(coupon.effective_terms, target)
    previous = coupon.customer
    write_event(EventAction.TRANSFER, coupon=coupon, customer_id=previous.pk, actor=actor, now=now, to=target.external_id)
    write_event(EventAction.RECEIVE, coupon=coupon, customer_id=target.pk, actor=actor, now=now, **{"from": previous.external_id})
    coupon.customer = target
    coupon.save(update_fields=["customer"])
    return coupon


@transaction.atomic
def coupon_expire(*, coupon: Coupon, actor: Actor) -> Coupon:
    return _set_status(coupon, rule="expire", status=S.EXPIRED, event=EventAction.EXPIRE, actor=actor)
