"""What every coupon action shares: the refusal, the actor, the status rules, the row
lock, and the checks a claim, a transfer and a redemption make."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone

from pools.models import CouponTerms

from ..models import ActorKind, Coupon, CouponStatus, Customer

S = CouponStatus


class CouponActionError(Exception):
    """A refused action; ``str()`` is the reason, fit to show a manager or an API client."""

    def __init__(self, message: str, code: str = "refused", retry_after: int | None = None):
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after  # seconds, when trying again later may work


@dataclass(frozen=True)
class Actor:
    """Who did it: a Management UI user, an API key, or the system (scheduled tasks)."""

    kind: str
    user: object | None = None
    label: str = ""

    @classmethod
    def of_user(cls, user) -> Actor:
        return cls(ActorKind.USER, user, user.get_username())

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(ActorKind.SYSTEM, None, label)

    def event_fields(self) -> dict:
        user = self.user if self.user is not None and getattr(self.user, "pk", None) else None
        return {"actor_kind": self.kind, "actor_user": user, "actor_label": self.label}


@dataclass(frozen=True)
class Rule:
    allowed: frozenset[int]
    verb: str  # "be invalidated"

    def check(self, coupon: Coupon) -> None:
        if coupon.status not in self.allowed:
            raise CouponActionError(self.reason(coupon.status), code=f"status_{S(coupon.status).slug}")

    def reason(self, status: int) -> str:
        names = [S(s).slug.replace("_", " ") for s in sorted(self.allowed)]
        names = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 2 else names)
        current = S(status).slug.replace("_", " ")
        return f"Only {names} coupons can {self.verb}; this one is {current}."


RULES = {
    "assign": Rule(frozenset({S.UNASSIGNED}), "be assigned"),
    # A gift card part spent can be voided too (a compromised card): only gift cards are
    # ever partially redeemed, so one rule serves both, single and bulk.
    "invalidate": Rule(frozenset({S.UNASSIGNED, S.CLAIMED, S.PARTIALLY_REDEEMED}), "be invalidated"),
    "unassign": Rule(frozenset({S.CLAIMED}), "be unassigned"),
    "transfer": Rule(frozenset({S.CLAIMED}), "be transferred"),
    "redeem": Rule(frozenset({S.CLAIMED}), "be redeemed"),
    "redeem_gift_card": Rule(frozenset({S.CLAIMED, S.PARTIALLY_REDEEMED}), "be redeemed"),
    "unredeem": Rule(frozenset({S.REDEEMED}), "be marked as unredeemed"),
    "unredeem_gift_card": Rule(frozenset({S.REDEEMED, S.PARTIALLY_REDEEMED}), "be marked as unredeemed"),
    "expire": Rule(frozenset({S.CLAIMED, S.PARTIALLY_REDEEMED}), "expire"),
}


def lock_coupon(coupon: Coupon) -> Coupon:
    """The coupon's row locked, then read as it is now with what it points to.

    Two reads, not one ``FOR UPDATE`` with joins: when another transaction changed the
    row meanwhile, PostgreSQL re-checks only the locked row and keeps the joined rows of
    its old version (a new holder came back as no holder at all).
    """
    Coupon.objects.select_for_update().filter(pk=coupon.pk).values_list("pk").get()
    return Coupon.objects.select_related("pool", "terms__effective", "customer").get(pk=coupon.pk)


def give(coupon: Coupon, customer: Customer, terms, now) -> None:
    """Make an unassigned coupon the customer's (claim, assign, redeem on an unassigned
    coupon); the caller saves it. The coupon's own terms decide the currency (an older
    coupon may keep an older one) and the expiry."""
    check_currency(terms, customer)
    coupon.status, coupon.customer, coupon.claimed_at, coupon.claims = S.CLAIMED, customer, now, 1
    coupon.expires_at = terms.expires_at(now)


def voided_below_minimum(coupon: Coupon) -> bool:
    """A gift card a redemption left under its minimum value (SPEC: it is void), which
    that redemption's undo may revive; not one a manager invalidated (its balance is at
    or above the minimum: below it, the card was void already)."""
    terms = coupon.effective_terms
    return (
        terms.is_gift_card and coupon.status == S.INVALID and coupon.balance is not None
        and terms.minimum_value is not None and coupon.balance < terms.minimum_value
    )


def check_not_past_expiry(coupon: Coupon, now) -> None:
    """A coupon past its date is expired, even if the scheduled task has not run yet."""
    if coupon.expires_at is not None and coupon.expires_at <= now and coupon.status in (S.CLAIMED, S.PARTIALLY_REDEEMED):
        raise CouponActionError(
            f"The coupon expired on {timezone.localtime(coupon.expires_at):%Y-%m-%d %H:%M}.", code="expired"
        )


def check_currency(terms, customer: Customer) -> None:
    required = terms.currency_required
    if required and customer.currency != required:
        held = customer.currency or "no currency"
        raise CouponActionError(
            f"These gift cards are in {required}; customer {customer.external_id} has "
            f"{held}, so they cannot receive one.",
            code="currency_mismatch",
        )


def check_currency_kept(customer: Customer, currency: str) -> None:
    """A customer holding a usable gift card of a currency keeps that currency: such
    cards are issued only to customers in it (``check_currency``), and a change would
    leave the card with a customer it could not be given to."""
    if currency == customer.currency:
        return
    held = (
        Coupon.objects.filter(customer=customer, status__in=(S.CLAIMED, S.PARTIALLY_REDEEMED))
        .values_list("terms_id", flat=True).distinct()
    )
    for terms in CouponTerms.objects.filter(pk__in=held).select_related("effective"):
        required = (terms.effective or terms).currency_required
        if required and required != currency:
            raise CouponActionError(
                f"Customer {customer.external_id} holds gift cards in {required}, so their currency stays "
                f"{required} while they do (redeem, invalidate or transfer those cards first).",
                code="currency_held",
            )
