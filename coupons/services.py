"""Coupon lifecycle: every status change goes through here.

Each single-coupon service locks the coupon row (``select_for_update``), checks the
current status against ``RULES`` and raises ``CouponActionError`` naming the refusal,
then changes the row and writes the customer event(s) in the same transaction.
Set-based versions for many coupons live in ``coupons.bulk``.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone

from couponsite.dberrors import is_deadlock
from couponsite.rawsql import fetch_instance, select_list
from pools.models import CouponPool, CouponTerms, PoolSource
from pools.patterns import PatternError
from pools.selectors import terms_get

from . import rows as row_sql
from .access import customer_visible, visible_customers
from .models import (
    ActorKind,
    Coupon,
    CouponStatus,
    Customer,
    EventAction,
    GiftCardRedemption,
)

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
        names = " and ".join(S(s).slug.replace("_", " ") for s in sorted(self.allowed))
        current = S(status).slug.replace("_", " ")
        return f"Only {names} coupons can {self.verb}; this one is {current}."


RULES = {
    "assign": Rule(frozenset({S.UNASSIGNED}), "be assigned"),
    "invalidate": Rule(frozenset({S.UNASSIGNED, S.CLAIMED}), "be invalidated"),
    "unassign": Rule(frozenset({S.CLAIMED}), "be unassigned"),
    "transfer": Rule(frozenset({S.CLAIMED}), "be transferred"),
    "redeem": Rule(frozenset({S.CLAIMED}), "be redeemed"),
    "redeem_gift_card": Rule(frozenset({S.CLAIMED, S.PARTIALLY_REDEEMED}), "be redeemed"),
    "unredeem": Rule(frozenset({S.REDEEMED}), "be marked as unredeemed"),
    "unredeem_gift_card": Rule(frozenset({S.REDEEMED, S.PARTIALLY_REDEEMED}), "be marked as unredeemed"),
    "expire": Rule(frozenset({S.CLAIMED, S.PARTIALLY_REDEEMED}), "expire"),
}


def allowed_actions(coupon: Coupon) -> list[str]:
    """The row actions a coupon's status allows (for its hamburger menu)."""
    gift = coupon.effective_terms.is_gift_card
    actions = []
    if coupon.status in RULES["redeem_gift_card" if gift else "redeem"].allowed:
        actions.append("redeem")
    terms = coupon.effective_terms
    voided = (
        gift and coupon.status == S.INVALID and coupon.balance is not None
        and terms.minimum_value is not None and coupon.balance < terms.minimum_value
    )
    if coupon.status in RULES["unredeem_gift_card" if gift else "unredeem"].allowed or voided:
        actions.append("unredeem")
    for name in ("transfer", "unassign", "invalidate"):
        if coupon.status in RULES[name].allowed:
            actions.append(name)
    return actions


# --- helpers ---------------------------------------------------------------------


def _lock(coupon: Coupon) -> Coupon:
    """The coupon's row locked, then read as it is now with what it points to.

    Two reads, not one ``FOR UPDATE`` with joins: when another transaction changed the
    row meanwhile, PostgreSQL re-checks only the locked row and keeps the joined rows of
    its old version (a new holder came back as no holder at all).
    """
    Coupon.objects.select_for_update().filter(pk=coupon.pk).values_list("pk").get()
    return Coupon.objects.select_related("pool", "terms__effective", "customer").get(pk=coupon.pk)


_EVENT_VALUES = ", ".join(["%s"] * len(row_sql.EVENT_COLUMNS))
_EVENT_ROW = f"{row_sql.EVENT_INSERT}VALUES ({_EVENT_VALUES})"


def _event(action: str, *, coupon: Coupon, customer_id: int, actor: Actor, now, **data) -> None:
    """Write one entry of the customer's event history (a plain INSERT: every action,
    and every API claim, writes one)."""
    with connection.cursor() as cursor:
        cursor.execute(_EVENT_ROW, _event_params(action, coupon=coupon, customer_id=customer_id, actor=actor, now=now, **data))


def _event_params(action: str, *, coupon: Coupon, customer_id: int, actor: Actor, now, **data) -> list:
    fields = actor.event_fields()
    user = fields["actor_user"]
    payload = json.dumps({"code": coupon.code, **{k: _jsonable(v) for k, v in data.items()}})
    return [customer_id, str(action), coupon.pk, coupon.pool_id, str(fields["actor_kind"]),
            user.pk if user is not None else None, fields["actor_label"], payload,
            connection.ops.adapt_datetimefield_value(now)]


def _give(coupon: Coupon, customer: Customer, terms, now) -> None:
    """Make an unassigned coupon the customer's (claim, assign, redeem on an unassigned
    coupon); the caller saves it. The coupon's own terms decide the currency (an older
    coupon may keep an older one) and the expiry."""
    _check_currency(terms, customer)
    coupon.status, coupon.customer, coupon.claimed_at, coupon.claims = S.CLAIMED, customer, now, 1
    coupon.expires_at = terms.expires_at(now)


def _jsonable(value):
    return str(value) if isinstance(value, Decimal) else value


def _check_not_past_expiry(coupon: Coupon, now) -> None:
    """A coupon past its date is expired, even if the scheduled task has not run yet."""
    if coupon.expires_at is not None and coupon.expires_at <= now and coupon.status in (S.CLAIMED, S.PARTIALLY_REDEEMED):
        raise CouponActionError(
            f"The coupon expired on {timezone.localtime(coupon.expires_at):%Y-%m-%d %H:%M}.", code="expired"
        )


def _check_currency(terms, customer: Customer) -> None:
    required = terms.currency_required
    if required and customer.currency != required:
        held = customer.currency or "no currency"
        raise CouponActionError(
            f"These gift cards are in {required}; customer {customer.external_id} has "
            f"{held}, so they cannot receive one.",
            code="currency_mismatch",
        )


def customer_find(*, external_id: str = "", email: str = "", principal=None) -> Customer:
    """The customer named by ID and/or email; both given must name the same customer.

    For a ``principal`` limited to groups, an email finds only a customer it may see
    (``coupons.access``), and an ID with an email is confirmed only for one it may see:
    another group's customers' emails are not told, not even as "it matches".
    """
    external_id, email = (external_id or "").strip(), (email or "").strip()
    if not external_id and not email:
        raise CouponActionError("Enter the target customer's ID or email.", code="customer_required")
    if external_id:
        customer = Customer.objects.filter(external_id=external_id).first()
        if customer is None:
            raise CouponActionError(f"No customer has the ID {external_id}.", code="customer_not_found")
        if email and (customer.email.lower() != email.lower()
                      or (principal is not None and not customer_visible(principal, customer))):
            raise CouponActionError(
                f"The email {email} is not customer {external_id}'s, or cannot be checked for this customer; "
                "enter the customer ID alone.", code="customer_mismatch",
            )
        return customer
    found = Customer.objects.filter(email__iexact=email)
    if principal is not None:
        found = found.filter(visible_customers(principal))
    matches = list(found[:2])
    if not matches:
        raise CouponActionError(f"No customer has the email {email}.", code="customer_not_found")
    if len(matches) > 1:
        raise CouponActionError(
            f"Several customers have the email {email}; enter the customer ID instead.",
            code="customer_ambiguous",
        )
    return matches[0]


def customer_get_or_create(external_id: str, *, email: str = "", currency: str = "") -> Customer:
    """The customer with this ID, created if new (SPEC 7: a claim or event for an ID not
    seen before creates that customer).

    One statement when the customer is new (INSERT ... ON CONFLICT DO NOTHING), one more
    when it exists: no savepoint, and a parallel request creating the same customer is
    simply found.
    """
    external_id = (external_id or "").strip()
    if not external_id:
        raise CouponActionError("The customer ID is empty.", code="customer_required")
    email, currency = email or "", (currency or "").upper()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO coupons_customer (external_id, email, currency, created_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (external_id) DO NOTHING RETURNING id",
            [external_id, email, currency, connection.ops.adapt_datetimefield_value(timezone.now())],
        )
        row = cursor.fetchone()
    if row is not None:
        return Customer(pk=row[0], external_id=external_id, email=email, currency=currency)
    return Customer.objects.get(external_id=external_id)


# --- claim -------------------------------------------------------------------------


def coupon_claim(*, pool: CouponPool, customer: Customer, actor: Actor, savepoint: bool = True) -> Coupon:
    """Issue a coupon of ``pool`` to ``customer`` (SPEC: "How a pool issues a coupon").

    ``savepoint=False``: the caller's transaction is rolled back as a whole when the
    claim is refused (``coupon_claim_for``), which saves two statements per claim.
    """
    if pool.source == PoolSource.REMOTE:
        return _claim_remote(pool, customer, actor)
    with transaction.atomic(savepoint=savepoint):
        return _claim_local(pool, customer, actor)


def coupon_claim_for(*, pool: CouponPool, external_id: str, actor: Actor, email: str = "", currency: str = "") -> Coupon:
    """Issue a coupon of ``pool`` to the customer with this ID, created if new (SPEC 7: a
    claim for an ID not seen before creates that customer; ``email`` and ``currency``
    are a new customer's). A refused claim creates nothing, not even the customer.

    The API's claim: its hottest path. On PostgreSQL a plain claim from an uploaded or
    bulk pool is one statement (``_claim_in_one_statement``); everything else, and
    whatever that statement leaves to it, takes the general path below.
    """
    external_id = (external_id or "").strip()
    if not external_id:
        raise CouponActionError("The customer ID is empty.", code="customer_required")
    email, currency = email or "", (currency or "").upper()
    if pool.source == PoolSource.REMOTE:
        # No transaction around the remote system's answer; a new customer is created
        # with the coupon, so a failed claim creates nothing.
        customer = Customer.objects.filter(external_id=external_id).first() or Customer(
            external_id=external_id, email=email, currency=currency
        )
        return _claim_remote(pool, customer, actor)
    coupon = _claim_in_one_statement(pool, external_id, email, currency, actor)
    if coupon is not None:
        return coupon
    with transaction.atomic():  # a new customer and the claim: one commit
        customer = customer_get_or_create(external_id, email=email, currency=currency)
        return coupon_claim(pool=pool, customer=customer, savepoint=False, actor=actor)


# The next unassigned coupon of a pool (``c``), with ``_unassigned_params``; then
# FOR UPDATE OF c SKIP LOCKED on PostgreSQL, so parallel claims take the next ones.
# "pool_id = P AND status = 1 ORDER BY id" spelled as a range of (pool_id, status, id):
# with the plain form, a pool holding most of the table made the planner walk the primary
# key past every claimed coupon (2,000 pages after 5,000 claims); the range can only be
# read from the (pool, status, id) index, which starts right at the unassigned ones.
_FIRST_UNASSIGNED = (
    "(c.pool_id, c.status, c.id) > (%(pool)s, %(unassigned)s, 0) AND (c.pool_id, c.status, c.id) < (%(pool)s, %(claimed)s, 0) "
    "ORDER BY c.pool_id, c.status, c.id LIMIT 1"
)
_SKIP_LOCKED = " FOR UPDATE OF c SKIP LOCKED"


def _unassigned_params(pool: CouponPool) -> dict:
    return {"pool": pool.pk, "unassigned": int(S.UNASSIGNED), "claimed": int(S.CLAIMED)}


# A claim from an uploaded or bulk pool as one statement, in autocommit: the next
# unassigned coupon (locked, SKIP LOCKED as in _NEXT_UNASSIGNED), the customer (inserted
# if new), the coupon's update and its event. One round trip instead of five (BEGIN,
# customer, next coupon, update with event, COMMIT). It claims only when every part is
# there; otherwise it writes nothing and answers no row:
# - the pool is empty;
# - the next coupon's terms are not the pool's current terms (an older coupon keeps its
#   own terms, hence its own expiry, which the caller worked out from the current ones);
# - another request is creating the same customer right now: the statement's snapshot
#   cannot see that row, and ON CONFLICT waited for it and did nothing;
# - it was the victim of a deadlock: it holds the coupon's lock while ON CONFLICT waits
#   for that other request, which may go on to lock the same coupon (a bulk assign does).
#   PostgreSQL then fails one of the two, as a rule this one (it waited first): nothing kept.
# The customer is inserted only when the coupon is there, so a refused claim creates nothing.
# MATERIALIZED: the lock is taken once, whatever the planner would make of the CTEs.
_CLAIM_STATEMENT = (
    "WITH next AS MATERIALIZED ("
    f" SELECT c.id, COALESCE(t.effective_id, t.id) AS effective_id FROM {row_sql.COUPON_TABLE} c"
    f" JOIN pools_couponterms t ON t.id = c.terms_id WHERE {_FIRST_UNASSIGNED}{_SKIP_LOCKED}"
    "), usable AS MATERIALIZED (SELECT id FROM next WHERE effective_id = %(terms)s"
    "), new_customer AS ("
    " INSERT INTO coupons_customer (external_id, email, currency, created_at)"
    " SELECT %(external_id)s, %(email)s, %(currency)s, %(now)s FROM usable"
    " ON CONFLICT (external_id) DO NOTHING RETURNING id, email, currency, created_at"
    "), customer AS ("
    " SELECT id, email, currency, created_at FROM new_customer"
    " UNION ALL SELECT id, email, currency, created_at FROM coupons_customer"
    " WHERE external_id = %(external_id)s AND NOT EXISTS (SELECT 1 FROM new_customer)"
    "), claimed AS ("
    f" UPDATE {row_sql.COUPON_TABLE} c SET status = %(claimed)s, customer_id = customer.id, claimed_at = %(now)s,"
    " expires_at = %(expires_at)s, claims = 1 FROM usable, customer WHERE c.id = usable.id"
    " RETURNING {columns}"
    f"), event AS ({row_sql.EVENT_INSERT}"
    "SELECT customer_id, %(action)s, id, pool_id, %(actor_kind)s, %(actor_user)s, %(actor_label)s,"
    " jsonb_build_object('code', code), %(now)s FROM claimed"
    ") SELECT claimed.*, customer.email, customer.currency, customer.created_at FROM claimed, customer"
)


def _claim_in_one_statement(pool: CouponPool, external_id: str, email: str, currency: str, actor: Actor) -> Coupon | None:
    """The claim as one statement (see ``_CLAIM_STATEMENT``), or None when it does not
    apply or did not claim, and the general path decides."""
    if (
        connection.vendor != "postgresql"
        or pool.source not in (PoolSource.UPLOADED, PoolSource.BULK)
        or pool.aggregated  # one coupon per customer: the general path locks the customer
        or not CouponPool.current_terms.is_cached(pool)
    ):
        return None
    terms = pool.current_terms
    if terms.currency_required:  # the customer's currency decides: the general path checks it
        return None
    now = timezone.now()
    fields = actor.event_fields()
    adapt = connection.ops.adapt_datetimefield_value
    params = {
        **_unassigned_params(pool), "terms": terms.pk,
        "external_id": external_id, "email": email, "currency": currency, "now": adapt(now),
        "expires_at": adapt(terms.expires_at(now)), "action": str(EventAction.CLAIM),
        "actor_kind": str(fields["actor_kind"]), "actor_label": fields["actor_label"],
        "actor_user": fields["actor_user"].pk if fields["actor_user"] is not None else None,
    }
    customer_columns = ("email", "currency", "created_at")
    try:
        # Inside a caller's transaction, a savepoint: a deadlock must not spoil it.
        with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():
            coupon = fetch_instance(Coupon, _CLAIM_STATEMENT.format(columns=select_list(Coupon, "c")), params,
                                    extra=tuple(f"customer_{name}" for name in customer_columns))
    except OperationalError as exc:
        if not is_deadlock(exc):
            raise
        return None
    if coupon is None:
        return None
    coupon.pool = pool
    coupon.customer = Customer(pk=coupon.customer_id, external_id=external_id,
                               **{name: coupon.__dict__.pop(f"customer_{name}") for name in customer_columns})
    _attach_terms(coupon, terms)
    return coupon


def _claim_remote(pool: CouponPool, customer: Customer, actor: Actor) -> Coupon:
    """Ask the pool's callback URL for a code, outside any transaction (no lock is held
    while the remote system answers), then store it as claimed by the customer.

    ``customer`` may be unsaved (a new customer ID): it is created together with the
    coupon, so a failed claim creates nothing. Everything that can refuse the claim is
    checked before the remote system issues a code.
    """
    from pools.remote import RemoteCodeError, fetch_remote_code

    if not CouponPool.current_terms.is_cached(pool):  # a caller that loaded it saves a query
        pool = CouponPool.objects.select_related("current_terms").get(pk=pool.pk)
    _check_currency(pool.current_terms, customer)
    with _one_remote_claim_at_a_time(pool, customer):
        if customer.pk is None:  # created meanwhile, e.g. by the claim we waited for
            customer = Customer.objects.filter(external_id=customer.external_id).first() or customer
        if pool.aggregated and customer.pk is not None:
            with transaction.atomic():
                held = _held_coupon(pool, customer, actor)
            if held is not None:
                return held
        try:
            code = fetch_remote_code(pool, customer.external_id)
        except RemoteCodeError as exc:
            raise CouponActionError(str(exc), code=exc.code, retry_after=exc.retry_after) from None
        now = timezone.now()
        with transaction.atomic():
            if customer.pk is None:
                customer = customer_get_or_create(customer.external_id, email=customer.email, currency=customer.currency)
            terms = pool.current_terms
            try:
                with transaction.atomic():
                    coupon = Coupon.objects.create(
                        pool=pool, terms=terms, code=code, status=S.CLAIMED, customer=customer, claimed_at=now,
                        expires_at=terms.expires_at(now), claims=1,
                    )
            except IntegrityError:
                raise CouponActionError(
                    f"The remote system answered with the code {code}, which exists already; nothing was created.",
                    code="remote_duplicate",
                ) from None
            _event(EventAction.CLAIM, coupon=coupon, customer_id=customer.pk, actor=actor, now=now)
    return coupon


@contextlib.contextmanager
def _one_remote_claim_at_a_time(pool: CouponPool, customer: Customer):
    """Aggregated remote pools give one code per customer: two claims of the same
    customer must not both ask the remote system. A PostgreSQL session advisory lock
    (no transaction stays open during the remote call); SQLite serializes writers."""
    if not pool.aggregated or connection.vendor != "postgresql":
        yield
        return
    key = [pool.pk, zlib.crc32(customer.external_id.encode()) - 2**31]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", key)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)


def _held_coupon(pool: CouponPool, customer: Customer, actor: Actor) -> Coupon | None:
    """Aggregated pools: the coupon the customer holds already, claimed once more."""
    # Lock the customer so two simultaneous claims cannot both create a coupon.
    # NO KEY UPDATE: the foreign-key checks of events written by other actions
    # (FOR KEY SHARE on this row) do not wait for it, so no deadlock with them.
    Customer.objects.select_for_update(no_key=True).get(pk=customer.pk)
    held = (
        Coupon.objects.select_for_update()
        .filter(pool=pool, customer=customer, status=S.CLAIMED)
        .order_by("id")
        .first()
    )
    if held is not None:
        Coupon.objects.filter(pk=held.pk).update(claims=F("claims") + 1)
        held.refresh_from_db()
        _event(EventAction.CLAIM, coupon=held, customer_id=customer.pk, actor=actor, now=timezone.now(), again=True)
    return held


def _claim_local(pool: CouponPool, customer: Customer, actor: Actor) -> Coupon:
    if not CouponPool.current_terms.is_cached(pool):  # a caller that loaded it saves a query
        pool = CouponPool.objects.select_related("current_terms").get(pk=pool.pk)
    terms = pool.current_terms
    now = timezone.now()
    if pool.aggregated:
        held = _held_coupon(pool, customer, actor)
        if held is not None:
            return held
    if pool.source in (PoolSource.UPLOADED, PoolSource.BULK):
        coupon = _next_unassigned(pool)
        if coupon is None:
            raise CouponActionError(f"The pool \u201c{pool.name}\u201d has no unassigned coupons left.", code="pool_empty")
    elif pool.source == PoolSource.GENERATED:
        coupon = _new_generated_coupon(pool, terms)
    else:  # pragma: no cover - coupon_claim sends remote pools to _claim_remote
        raise CouponActionError("Remote pools issue coupons through their callback URL.", code="remote_pool")
    _give(coupon, customer, coupon.effective_terms, now)
    # As Model.save(update_fields=...), without building the query.
    update = f"UPDATE {row_sql.COUPON_TABLE} SET status = %s, customer_id = %s, claimed_at = %s, expires_at = %s, claims = 1 WHERE id = %s"
    params = [int(S.CLAIMED), customer.pk, connection.ops.adapt_datetimefield_value(now),
              connection.ops.adapt_datetimefield_value(coupon.expires_at), coupon.pk]
    event = _event_params(EventAction.CLAIM, coupon=coupon, customer_id=customer.pk, actor=actor, now=now)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # the claim and its event in one statement: one round trip
            cursor.execute(f"WITH claimed AS ({update} RETURNING id) {row_sql.EVENT_INSERT}SELECT {_EVENT_VALUES} FROM claimed",
                           params + event)
        else:
            cursor.execute(update, params)
            cursor.execute(_EVENT_ROW, event)
    coupon.pool = pool
    return coupon


_NEXT_UNASSIGNED = (
    "SELECT {columns}, e.id AS effective_terms_id, e.version AS effective_version FROM "
    f"{row_sql.COUPON_TABLE} c JOIN pools_couponterms t ON t.id = c.terms_id "
    f"JOIN pools_couponterms e ON e.id = COALESCE(t.effective_id, t.id) WHERE {_FIRST_UNASSIGNED}{{lock}}"
)


def _next_unassigned(pool: CouponPool) -> Coupon | None:
    """Claims are the hottest path of the API: raw SQL here saves the ORM's query
    building (select_for_update + select_related cost more than the database did)."""
    lock = _SKIP_LOCKED if connection.vendor == "postgresql" else ""
    coupon = fetch_instance(
        Coupon, _NEXT_UNASSIGNED.format(columns=select_list(Coupon, "c"), lock=lock),
        _unassigned_params(pool), extra=("effective_terms_id", "effective_version"),
    )
    if coupon is None:
        return None
    _attach_terms(coupon, terms_get(coupon.effective_terms_id, pool_id=pool.pk, version=coupon.effective_version))
    return coupon


def _attach_terms(coupon: Coupon, effective: CouponTerms) -> None:
    """Give a coupon read by raw SQL its terms, whose ``effective`` version is known."""
    effective.effective = effective
    coupon.terms = effective if effective.pk == coupon.terms_id else CouponTerms(pk=coupon.terms_id, effective=effective)


def _new_generated_coupon(pool: CouponPool, terms) -> Coupon:
    try:
        pattern = pool.compiled_pattern()
    except PatternError as exc:  # pragma: no cover - the pool was validated on save
        raise CouponActionError(str(exc), code="pattern_invalid") from exc
    if pattern.is_generic:
        return Coupon.objects.create(pool=pool, terms=terms, code=pattern.text, shared_code=True)
    _check_guessing_protection(pool, pattern.max_coupons)
    for _ in range(10):
        code = pattern.generate(1)[0]
        try:
            with transaction.atomic():
                return Coupon.objects.create(pool=pool, terms=terms, code=code)
        except IntegrityError:
            continue  # the code exists in some pool: draw another
    raise CouponActionError("Could not find a free code for this pattern; the pool may be full.", code="pool_full")


EXACT_GUESSING_CHECK = 100_000


def _check_guessing_protection(pool: CouponPool, limit: int) -> None:
    """A generated pool may hold at most 1% of its pattern's combinations.

    A small limit is counted exactly on every claim (a bounded count: cheap). A large
    one trusts the planner's estimate while it is far below, and counts exactly near
    it; claims near the limit are serialised on the pool row.
    """
    from .selectors import estimate_count

    coupons = Coupon.objects.filter(pool=pool)
    if limit > EXACT_GUESSING_CHECK:
        estimate = estimate_count(coupons)
        if estimate is not None and estimate < limit // 2:
            return
    CouponPool.objects.select_for_update().filter(pk=pool.pk).first()
    if coupons.order_by()[:limit].count() >= limit:
        raise CouponActionError(
            f"The pool \u201c{pool.name}\u201d has issued {limit:,} coupons, the most its pattern allows "
            "(1% of its combinations, against guessing).",
            code="pool_full",
        )


@transaction.atomic
def coupon_assign(*, coupon: Coupon, customer: Customer, actor: Actor) -> Coupon:
    """Give this unassigned coupon to the customer (a claim of a chosen coupon)."""
    coupon = _lock(coupon)
    RULES["assign"].check(coupon)
    now = timezone.now()
    _give(coupon, customer, coupon.effective_terms, now)
    coupon.save(update_fields=["status", "customer", "claimed_at", "expires_at", "claims"])
    _event(EventAction.CLAIM, coupon=coupon, customer_id=customer.pk, actor=actor, now=now)
    return coupon


# --- simple transitions ------------------------------------------------------------


def _set_status(coupon: Coupon, *, rule: str, status: int, event: str, actor: Actor) -> Coupon:
    """Lock, check the rule, write the holder's event (if any), set the new status."""
    coupon = _lock(coupon)
    RULES[rule].check(coupon)
    if coupon.customer_id:
        _event(event, coupon=coupon, customer_id=coupon.customer_id, actor=actor, now=timezone.now())
    coupon.status = status
    coupon.save(update_fields=["status"])
    return coupon


@transaction.atomic
def coupon_invalidate(*, coupon: Coupon, actor: Actor) -> Coupon:
    return _set_status(coupon, rule="invalidate", status=S.INVALID, event=EventAction.INVALIDATE, actor=actor)


@transaction.atomic
def coupon_unassign(*, coupon: Coupon, actor: Actor) -> Coupon:
    coupon = _lock(coupon)
    RULES["unassign"].check(coupon)
    now = timezone.now()
    _event(EventAction.UNASSIGN, coupon=coupon, customer_id=coupon.customer_id, actor=actor, now=now)
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
    coupon = _lock(coupon)
    RULES["transfer"].check(coupon)
    now = timezone.now()
    _check_not_past_expiry(coupon, now)
    if target.pk == coupon.customer_id:
        raise CouponActionError(f"The coupon already belongs to customer {target.external_id}.", code="same_customer")
    _check_currency(coupon.effective_terms, target)
    previous = coupon.customer
    _event(EventAction.TRANSFER, coupon=coupon, customer_id=previous.pk, actor=actor, now=now, to=target.external_id)
    _event(EventAction.RECEIVE, coupon=coupon, customer_id=target.pk, actor=actor, now=now, **{"from": previous.external_id})
    coupon.customer = target
    coupon.save(update_fields=["customer"])
    return coupon


@transaction.atomic
def coupon_expire(*, coupon: Coupon, actor: Actor) -> Coupon:
    return _set_status(coupon, rule="expire", status=S.EXPIRED, event=EventAction.EXPIRE, actor=actor)


# --- redeem / unredeem ---------------------------------------------------------------


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
    coupon = _lock(coupon)
    terms = coupon.effective_terms
    now = timezone.now()
    _check_not_past_expiry(coupon, now)
    if (
        coupon.status == S.UNASSIGNED
        and customer is not None
        and coupon.pool.source == PoolSource.UPLOADED
    ):
        _give(coupon, customer, terms, now)
        _event(EventAction.CLAIM, coupon=coupon, customer_id=customer.pk, actor=actor, now=now, on_redeem=True)
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
        _event(EventAction.REDEEM, coupon=coupon, customer_id=coupon.customer_id, actor=actor, now=now)
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
        _event(
            EventAction.REDEEM, coupon=coupon, customer_id=coupon.customer_id, actor=actor, now=now,
            amount=amount, balance=coupon.balance,
        )
    return coupon


@transaction.atomic
def coupon_unredeem(*, coupon: Coupon, actor: Actor) -> Coupon:
    """Undo a redemption (a gift card: its newest one, restoring the balance)."""
    coupon = _lock(coupon)
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
        _event(EventAction.UNREDEEM, coupon=coupon, customer_id=coupon.customer_id, actor=actor, now=now, **data)
    return coupon


def _voided_by(coupon: Coupon, last: GiftCardRedemption | None) -> bool:
    """True if ``last`` is the redemption that voided this gift card (minimum value)."""
    return (
        last is not None
        and coupon.status == S.INVALID
        and last.status_before != S.INVALID
        and coupon.balance == last.balance_before - last.amount
    )


SINGLE_ACTIONS = {
    "invalidate": coupon_invalidate,
    "unassign": coupon_unassign,
    "redeem": coupon_redeem,
    "unredeem": coupon_unredeem,
    "transfer": coupon_transfer,
}
