"""API-side services: keys, customers seen first through the API, events and validate
(bulk operations: ``api.bulk``). Coupon state changes go through coupons.services, basket
validation through coupons.baskets."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from coupons import services as coupon_services
from coupons.baskets import Validation, coupon_check
from coupons.models import ActorKind, Coupon, CouponStatus, Customer
from coupons.selectors import code_q
from coupons.services import Actor, CouponActionError, customer_get_or_create
from couponsite.rawsql import fetch_instance, select_list
from pools.access import is_unrestricted, pool_sql, pools_visible
from pools.models import CouponPool, ModuleSettings
from pools.selectors import terms_get

from .auth import hash_key, new_key
from .models import ApiKey

log = logging.getLogger(__name__)
S = CouponStatus


def actor_of(api_key: ApiKey) -> Actor:
    return Actor(ActorKind.API_KEY, None, f"API key {api_key.name}")


# --- keys ----------------------------------------------------------------------------


def api_key_create(*, name: str, groups=(), user=None) -> tuple[ApiKey, str]:
    """A new key; returns (row, key). The key is not stored: show it now or never."""
    prefix, key = new_key()
    api_key = ApiKey.objects.create(
        name=name, prefix=prefix, key_hash=hash_key(key),
        created_by=user if user is not None and getattr(user, "is_authenticated", False) else None,
    )
    api_key.groups.set(groups)
    return api_key, key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key.refresh_from_db()
    return api_key


# --- reads -----------------------------------------------------------------------------


def pools_for_key(api_key: ApiKey):
    return pools_visible(api_key).select_related("current_terms")


def pool_for_key(api_key: ApiKey, reference: str) -> CouponPool | None:
    """A pool by id or external id, if the key may see it (with its current terms).

    Raw queries: every claim runs this, and the ORM's query building cost more than the
    database did.
    """
    visible, params = pool_sql(api_key)
    visible = f" AND {visible}" if visible else ""
    pool, select = None, f"SELECT {select_list(CouponPool)} FROM pools_couponpool"
    if reference.isascii() and reference.isdigit() and int(reference) < 2**63:
        pool = fetch_instance(CouponPool, f"{select} WHERE id = %s{visible}", [int(reference), *params])
    if pool is None and reference:
        pool = fetch_instance(CouponPool, f"{select} WHERE external_id = %s{visible}", [reference, *params])
    if pool is not None and pool.current_terms_id:
        pool.current_terms = terms_get(pool.current_terms_id, pool_id=pool.pk)
    return pool


def coupon_for_key(api_key: ApiKey, code: str, customer: Customer | None = None) -> Coupon:
    """The coupon with this code in a pool the key may see.

    A generic code is held by many customers: then the customer says whose.
    """
    coupons = (
        Coupon.objects.filter(code_q(code), pool__in=pools_for_key(api_key))
        .select_related("pool", "customer", "terms__effective")
    )
    found = list(coupons.order_by("-id")[:2])
    if len(found) > 1 and customer is not None:
        found = list(coupons.filter(customer=customer).order_by("-id")[:2])
    if not found:
        raise CouponActionError(f"No coupon has the code {code}.", code="coupon_not_found")
    if len(found) > 1:
        raise CouponActionError(
            f"The code {code} is a generic code held by several customers; name the customer.",
            code="coupon_ambiguous",
        )
    return found[0]


def codes_held_elsewhere(api_key: ApiKey, codes: list[str]) -> bool:
    """Whether any of ``codes`` is a coupon of a pool the key may not see."""
    if is_unrestricted(api_key):
        return False
    held = Coupon.objects.filter(Q(shared_code=False, code__in=codes) | Q(shared_code=True, code__in=codes))  # see code_q
    return held.exclude(pool__in=pools_visible(api_key)).exists()


def customer_put(*, api_key: ApiKey, external_id: str, email: str | None, currency: str | None) -> tuple[Customer, bool]:
    """Create the customer, or update one the key may see (``coupons.services.customer_put``,
    the one home of a customer's fields' rules); another group's customer is "not found"."""
    return coupon_services.customer_put(principal=api_key, external_id=external_id, email=email, currency=currency)


# --- events ----------------------------------------------------------------------------


@dataclass
class EventResult:
    code: str
    result: str  # redeemed, refused, not_processed
    message: str = ""
    coupon: Coupon | None = None


@dataclass
class EventOutcome:
    action: str
    auto_redeem: bool | None = None
    results: list[EventResult] = field(default_factory=list)


@transaction.atomic
def event_record(*, api_key: ApiKey, customer_id: str, action: str, data: dict,
                 refused: Callable[[str], bool] = lambda code: False) -> EventOutcome:
    """A redeem or checkout event. A customer seen here first is created only if the
    event changes something for them: a refusal changes nothing, not even that.

    ``refused(error code)`` is told of every code a checkout refuses and answers whether
    code lookups are now locked out (``api.limits``): the codes after that are not looked up.
    """
    customer = customer_get_or_create(customer_id)
    actor = actor_of(api_key)
    if action == "coupon_redeem":
        coupon = coupon_for_key(api_key, data["code"], customer)
        coupon = coupon_services.coupon_redeem(coupon=coupon, actor=actor, amount=data.get("amount"), customer=customer)
        return EventOutcome(action, results=[EventResult(coupon.code, "redeemed", coupon=coupon)])
    outcome = _checkout(api_key, customer, actor, data, refused)
    if not any(result.result == "redeemed" for result in outcome.results):
        transaction.set_rollback(True)  # nothing redeemed: no new customer either
    return outcome


LOCKED_OUT = "Not looked up: this request made too many failed code lookups."


def _checkout(api_key: ApiKey, customer: Customer, actor: Actor, data: dict, refused: Callable[[str], bool]) -> EventOutcome:
    """Redeem the named coupons only when auto redeem is on, and only as the basket
    allows (the same checks as validate); gift cards pay what is left to pay, taken
    from their balance as it is under the coupon's lock (parallel checkouts of one card
    pay exactly its balance between them).

    Every coupon of the basket is locked first, in the order of its id, and only then
    redeemed in the basket's order: two checkouts naming the same coupons in another
    order wait for each other instead of deadlocking.
    """
    auto_redeem = ModuleSettings.load().auto_redeem
    outcome = EventOutcome("checkout", auto_redeem=auto_redeem)
    codes = list(dict.fromkeys(data.get("coupons") or []))
    if not auto_redeem:
        outcome.results = [EventResult(code, "not_processed", "Auto redeem is off.") for code in codes]
        return outcome
    found: dict[str, Coupon | str] = {}
    locked_out = False
    for code in codes:
        if locked_out:
            found[code] = LOCKED_OUT
            continue
        try:
            found[code] = coupon_for_key(api_key, code, customer)
        except CouponActionError as exc:
            found[code] = str(exc)
            locked_out = refused(exc.code)
    ids = sorted(c.pk for c in found.values() if isinstance(c, Coupon))
    list(Coupon.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", flat=True))
    # Read again once they are all locked (as ``coupons.services._lock`` does for one).
    fresh = Coupon.objects.select_related("pool", "customer", "terms__effective").in_bulk(ids)
    found = {code: fresh[c.pk] if isinstance(c, Coupon) else c for code, c in found.items()}
    left = data["total"]
    basket = {"customer": customer.external_id, **{k: data[k] for k in ("currency", "store", "products") if k in data}}
    for code, coupon in found.items():
        if not isinstance(coupon, Coupon):
            outcome.results.append(EventResult(code, "refused", coupon))
            continue
        if locked_out:
            outcome.results.append(EventResult(code, "refused", LOCKED_OUT))
            continue
        try:
            check = coupon_check(coupon, {**basket, "total": left})
            if not check.valid:
                raise CouponActionError(" ".join(message for _, message in check.reasons), code=check.reasons[0][0])
            gift_card = coupon.effective_terms.is_gift_card
            if gift_card and left <= 0:
                raise CouponActionError("Nothing is left to pay with this gift card.", code="nothing_to_pay")
            coupon = coupon_services.coupon_redeem(
                coupon=coupon, actor=actor, customer=customer, up_to=left if gift_card else None,
            )
        except CouponActionError as exc:
            outcome.results.append(EventResult(code, "refused", str(exc)))
            locked_out = refused(exc.code)
        else:
            paid = coupon.redeemed_amount if gift_card else check.discount
            left = max(Decimal("0.00"), left - paid)
            outcome.results.append(EventResult(code, "redeemed", coupon=coupon))
    return outcome




# --- basket validation (the rule: coupons.baskets) ----------------------------------


def coupon_validate(*, api_key: ApiKey, code: str, basket: dict) -> Validation:
    """Whether the coupon can be used on this basket, every reason why not, and the
    discount it would give. Changes nothing."""
    customer = Customer.objects.filter(external_id=(basket.get("customer") or "").strip()).first()
    return coupon_check(coupon_for_key(api_key, code, customer), basket)
