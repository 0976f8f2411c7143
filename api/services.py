"""API-side services: keys, customers seen first through the API, events, bulk
operations and validate. Coupon state changes go through coupons.services, basket
validation through coupons.baskets."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from coupons import services as coupon_services
from coupons.access import customer_created_by, customer_visible
from coupons.baskets import Validation, coupon_check
from coupons.jobs.engine import (
    JobFailed,
    JobRefused,
    JobStopped,
    Run,
    job_cancel,
    job_create,
    job_execute,
    job_is_stale,
)
from coupons.jobs.registry import JobKind, register
from coupons.models import ActorKind, Coupon, CouponStatus, Customer
from coupons.selectors import code_q
from coupons.services import Actor, CouponActionError, customer_get_or_create
from couponsite.rawsql import fetch_instance, select_list
from imports.models import ImportJob, JobStatus, RowOutcome
from imports.parsing import FileProblem, Options
from imports.services import IMPORT, ImportRefused, import_resume, import_start, import_upload, job_options
from pools.access import is_unrestricted, pool_sql, pools_visible
from pools.models import CouponPool, ModuleSettings, PoolSource
from pools.selectors import terms_get

from .auth import hash_key, new_key
from .models import ApiKey, BulkOperation, BulkOperationError

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
    """Create the customer, or update one the key may see (``coupons.access``); another
    group's customer is "not found", with nothing of it in the answer."""
    with transaction.atomic():
        customer = Customer.objects.select_for_update().filter(external_id=external_id).first()
        if customer is not None and not customer_visible(api_key, customer):
            raise CouponActionError(f"No customer has the ID {external_id!r}.", code="customer_not_found")
        created = customer is None
        if created:
            customer = Customer(external_id=external_id)
        if email is not None:
            customer.email = email
        if currency is not None:
            customer.currency = currency
        try:
            with transaction.atomic():
                customer.save()
        except IntegrityError:
            raise CouponActionError("The customer was created by another request; try again.", code="conflict") from None
        if created:
            customer_created_by(api_key, customer)
    return customer, created


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


# --- bulk operations ---------------------------------------------------------------


def bulk_start(*, api_key: ApiKey, pool: CouponPool, action: str, items: list[dict]) -> BulkOperation:
    if action == BulkOperation.Action.ADD and pool.source != PoolSource.UPLOADED:
        raise CouponActionError(
            f"Coupons can be added only to uploaded pools; \u201c{pool.name}\u201d is {pool.get_source_display().lower()}.",
            code="pool_not_uploaded",
        )
    return job_create(BulkOperation, pool=pool, api_key=api_key, action=action, items=items, total=len(items))


BULK_CHUNK = settings.COUPON_API_BULK_CHUNK


def bulk_run_job(operation: BulkOperation, run: Run) -> str:
    """Apply the operation item by item, committing progress every ``BULK_CHUNK`` items
    (with the cursor, so a resumed operation goes on where the last chunk ended)."""
    operation = BulkOperation.objects.select_related("pool", "api_key").get(pk=operation.pk)
    if operation.action == BulkOperation.Action.ADD:
        return _bulk_add(operation, run)
    actor = actor_of(operation.api_key)
    items = operation.items  # read once, not again (up to 50,000) for every chunk
    while True:
        with transaction.atomic():
            operation = run.lock(BulkOperation.objects.select_related("pool").defer("items"))
            if operation.cursor >= len(items):
                break
            start, end = operation.cursor, min(operation.cursor + BULK_CHUNK, len(items))
            errors = []
            for index in range(start, end):
                item = items[index]
                try:
                    with transaction.atomic():
                        _bulk_apply_one(operation, item, actor)
                except CouponActionError as exc:
                    errors.append(BulkOperationError(
                        operation=operation, index=index, code=item["code"][:200], error_code=exc.code, message=str(exc)
                    ))
            BulkOperationError.objects.bulk_create(errors)
            operation.processed += end - start
            operation.failed += len(errors)
            operation.succeeded += end - start - len(errors)
            operation.cursor = end
            run.save(operation, "processed", "failed", "succeeded", "cursor")
    return _bulk_message(operation)


def _bulk_message(operation: BulkOperation) -> str:
    done = {"add": "added", "assign": "assigned", "unassign": "unassigned"}[operation.action]
    text = f"{operation.succeeded:,} of {operation.total:,} coupons {done}"
    return text + (f"; {operation.failed:,} refused (see the errors)." if operation.failed else ".")


def _bulk_apply_one(operation: BulkOperation, item: dict, actor: Actor) -> None:
    coupon = Coupon.objects.filter(code_q(item["code"]), pool=operation.pool).order_by("-id").first()
    if coupon is None:
        raise CouponActionError(f"The pool has no coupon {item['code']}.", code="coupon_not_found")
    if operation.action == BulkOperation.Action.ASSIGN:
        customer = customer_get_or_create(item["customer"])
        coupon_services.coupon_assign(coupon=coupon, customer=customer, actor=actor)
    else:
        coupon_services.coupon_unassign(coupon=coupon, actor=actor)


def _bulk_add(operation: BulkOperation, run: Run) -> str:
    """``add`` is an import of the given codes: the same duplicate checks, in any pool.

    The import job is created once (under the operation's row lock) and remembered, so
    a resumed operation goes on with that import instead of importing again (which
    would report every code as existing). Cancelling the operation cancels its import;
    the operation's counters then say what the import did before it stopped."""
    with transaction.atomic():
        operation = run.lock(BulkOperation.objects.select_related("pool"))
        if operation.import_job_id is None:
            operation.import_job = _import_of(operation)
            operation.save(update_fields=["import_job"])
    job = _import_to_its_end(operation.import_job, run)
    with transaction.atomic():
        # This run's row, also when it was cancelled meanwhile (not when it was taken over).
        operation = BulkOperation.objects.select_for_update().defer("items").filter(pk=run.job_id, runner=run.token).first()
        if operation is None:
            raise JobStopped
        _record_import(operation, job)
        run.save(operation)
    if job.status == JobStatus.DONE:
        return f"Import #{job.pk}: {job.message}"
    if operation.status == JobStatus.CANCELLED:
        raise JobStopped  # cancelled, and its import with it
    raise JobFailed(f"Import #{job.pk} of the codes was cancelled; what it added stays ({job.message})")


_REFUSALS = {
    RowOutcome.INVALID: "invalid", RowOutcome.DUPLICATE_IN_FILE: "duplicate_in_request", RowOutcome.EXISTS: "code_exists",
}


def _record_import(operation: BulkOperation, job: ImportJob) -> None:
    """The operation's counters and refused items from its import (under its row lock)."""
    BulkOperationError.objects.filter(operation=operation).delete()
    BulkOperationError.objects.bulk_create(
        BulkOperationError(
            operation=operation, index=rejection.row - 2,  # row 1 is the header
            code=rejection.code[:200], error_code=_REFUSALS[rejection.outcome], message=rejection.reason,
        )
        for rejection in job.rejections.order_by("row").iterator()
    )
    operation.processed, operation.succeeded, operation.failed = job.processed, job.created, job.skipped
    operation.cursor = operation.total if job.status == JobStatus.DONE else 0
    operation.save(update_fields=["processed", "succeeded", "failed", "cursor"])


def _import_of(operation: BulkOperation) -> ImportJob:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["code", "customer"])
    for item in operation.items:
        writer.writerow([item["code"], item.get("customer", "")])
    content = ContentFile(buffer.getvalue().encode(), name=f"bulk-operation-{operation.pk}.csv")
    job = import_upload(file=content, name=content.name, pool=operation.pool)
    return import_start(
        job=job, pool=operation.pool, enqueue=False,
        options=Options(delimiter=",", has_header=True, encoding="utf-8", mapping={"code": 0, "customer": 1}),
    )


def _import_to_its_end(job: ImportJob, run: Run) -> ImportJob:
    """Run the operation's import here, to its end: done, or cancelled (with the operation,
    or on its own from the Jobs page).

    One that a previous run of the operation left behind goes on: interrupted or failed
    after some rows, it is resumed; failed before any row, started again with its
    settings; running with a live worker elsewhere (resumed on its own), waited for. The
    import runs under a token derived from the operation's, so a retry of the operation
    takes back the import it left running when the database went away; a database error
    is left to the operation's retries (the import waits queued for them).
    """
    token = hashlib.md5(f"{run.token}:import".encode()).hexdigest()
    ran = False
    while True:
        job.refresh_from_db()
        if job.status in (JobStatus.DONE, JobStatus.CANCELLED):
            return job
        if job.status == JobStatus.FAILED and ran:
            raise JobFailed(f"Import #{job.pk} of the codes failed: {job.message}")
        if job.status == JobStatus.FAILED and job.can_start:
            try:
                job = import_start(job=job, pool=job.pool, options=job_options(job), enqueue=False)
            except (ImportRefused, FileProblem, OSError) as exc:
                raise JobFailed(f"Import #{job.pk} of the codes cannot start again: {exc}") from exc
        elif job.status in (JobStatus.INTERRUPTED, JobStatus.FAILED) or (
                job.status == JobStatus.RUNNING and job.runner != token):
            try:
                job = import_resume(job=job, enqueue=False)
            except JobRefused:
                if job.status != JobStatus.RUNNING:
                    raise JobFailed(f"Import #{job.pk} of the codes cannot go on: {job.message}") from None
                _wait_a_moment(run)  # running with a live worker of its own
                continue
        ran = True
        job_execute(kind=IMPORT, job_id=job.pk, runner=token, retry_in=settings.JOB_RETRY_DELAY_SECONDS,
                    progress=_stop_with(run))


def _wait_a_moment(run: Run) -> None:
    time.sleep(1)
    with transaction.atomic():
        run.save(run.lock(BulkOperation.objects.defer("items")))  # still ours, and alive


def _stop_with(run: Run):
    """The import's progress callback: once its operation is cancelled, the import is
    too, in the chunk that just ran, so it stops at its next one."""
    def follow(job: ImportJob) -> None:
        if BulkOperation.objects.filter(pk=run.job_id, status=JobStatus.CANCELLED).exists():
            ImportJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
                status=JobStatus.CANCELLED, finished_at=timezone.now(), message="Cancelled with its bulk operation.",
            )
    return follow


def _cancel_its_import(operation: BulkOperation, user) -> None:
    """A cancelled add: its import goes too. A running import stops at its next chunk
    (the operation's run records what it did); one that does not run is cancelled here
    and what it did is recorded at once."""
    job = operation.import_job
    if job is None:
        return
    running = job.status == JobStatus.RUNNING and not job_is_stale(job)
    if not running and job.can_cancel:
        try:
            job = job_cancel(job=job, user=user)
        except JobRefused:
            return  # it ended, or got busy, meanwhile: the operation's run (or a resume) records it
    if not running:
        with transaction.atomic():
            _record_import(BulkOperation.objects.select_for_update().defer("items").get(pk=operation.pk), job)


register(JobKind(
    name="api_bulk", label="API bulk operation", model=BulkOperation, run=bulk_run_job, unit="items",
    describe=lambda op: f"{op.get_action_display()} ({op.total:,}), API key {op.api_key.name}",
    on_cancel=_cancel_its_import, related=("api_key",),
))


# --- basket validation (the rule: coupons.baskets) ----------------------------------


def coupon_validate(*, api_key: ApiKey, code: str, basket: dict) -> Validation:
    """Whether the coupon can be used on this basket, every reason why not, and the
    discount it would give. Changes nothing."""
    customer = Customer.objects.filter(external_id=(basket.get("customer") or "").strip()).first()
    return coupon_check(coupon_for_key(api_key, code, customer), basket)
