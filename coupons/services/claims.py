"""Issuing coupons: a claim from every kind of pool (SPEC: "How a pool issues a
coupon"), the API's one-statement claim, the remote callback, the 1% rule of generated
pools, and the assignment of a chosen coupon."""

from __future__ import annotations

import contextlib
import zlib

from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone

from couponsite import counting
from couponsite.dberrors import is_deadlock
from couponsite.rawsql import fetch_instance, select_list
from couponsite.wording import counted
from pools.models import CouponPool, CouponTerms, PoolSource
from pools.patterns import PatternError
from pools.remote import RemoteCodeError, fetch_remote_code
from pools.selectors import terms_get

from .. import rows as row_sql
from ..models import Coupon, Customer, EventAction
from .customers import customer_get_or_create
from .events import EVENT_ROW, EVENT_VALUES, event_params, write_event
from .rules import RULES, Actor, CouponActionError, S, check_currency, give, lock_coupon


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
    if not CouponPool.current_terms.is_cached(pool):  # a caller that loaded it saves a query
        pool = CouponPool.objects.select_related("current_terms").get(pk=pool.pk)
    check_currency(pool.current_terms, customer)
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
            write_event(EventAction.CLAIM, coupon=coupon, customer_id=customer.pk, actor=actor, now=now)
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
        write_event(EventAction.CLAIM, coupon=held, customer_id=customer.pk, actor=actor, now=timezone.now(), again=True)
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
    give(coupon, customer, coupon.effective_terms, now)
    # As Model.save(update_fields=...), without building the query.
    update = f"UPDATE {row_sql.COUPON_TABLE} SET status = %s, customer_id = %s, claimed_at = %s, expires_at = %s, claims = 1 WHERE id = %s"
    params = [int(S.CLAIMED), customer.pk, connection.ops.adapt_datetimefield_value(now),
              connection.ops.adapt_datetimefield_value(coupon.expires_at), coupon.pk]
    event = event_params(EventAction.CLAIM, coupon=coupon, customer_id=customer.pk, actor=actor, now=now)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # the claim and its event in one statement: one round trip
            cursor.execute(f"WITH claimed AS ({update} RETURNING id) {row_sql.EVENT_INSERT}SELECT {EVENT_VALUES} FROM claimed",
                           params + event)
        else:
            cursor.execute(update, params)
            cursor.execute(EVENT_ROW, event)
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
    coupons = Coupon.objects.filter(pool=pool)
    if limit > EXACT_GUESSING_CHECK:
        estimate = counting.estimate_count(coupons)
        if estimate is not None and estimate < limit // 2:
            return
    CouponPool.objects.select_for_update().filter(pk=pool.pk).first()
    if coupons.order_by()[:limit].count() >= limit:
        raise CouponActionError(
            f"The pool \u201c{pool.name}\u201d has issued {counted(limit, 'coupon', 'coupons')}, the most its pattern allows "
            "(1% of its combinations, against guessing).",
            code="pool_full",
        )


@transaction.atomic
def coupon_assign(*, coupon: Coupon, customer: Customer, actor: Actor) -> Coupon:
    """Give this unassigned coupon to the customer (a claim of a chosen coupon)."""
    coupon = lock_coupon(coupon)
    RULES["assign"].check(coupon)
    now = timezone.now()
    give(coupon, customer, coupon.effective_terms, now)
    coupon.save(update_fields=["status", "customer", "claimed_at", "expires_at", "claims"])
    write_event(EventAction.CLAIM, coupon=coupon, customer_id=customer.pk, actor=actor, now=now)
    return coupon

