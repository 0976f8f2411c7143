"""Coupons, customers, the customer event history, gift card redemptions and jobs.

Built for pools of 100 million coupons: a coupon row is narrow (the pool's properties
live in ``pools.CouponTerms``, one row per version), its status is a small integer,
and every list is served by an index that matches its filter and order.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper

from pools.models import CouponPool, CouponTerms


class CouponStatus(models.IntegerChoices):
    UNASSIGNED = 1, "Not claimed yet"
    CLAIMED = 2, "Claimed"
    PARTIALLY_REDEEMED = 3, "Partially redeemed"
    REDEEMED = 4, "Redeemed"
    EXPIRED = 5, "Expired"
    INVALID = 6, "Invalid"

    @property
    def slug(self) -> str:
        return self.name.lower()

    @classmethod
    def from_slug(cls, slug: str) -> CouponStatus:
        return cls[slug.upper()]

    @classmethod
    def slug_choices(cls) -> list[tuple[str, str]]:
        return [(member.slug, member.label) for member in cls]


class Customer(models.Model):
    external_id = models.CharField("customer ID", max_length=128, unique=True)
    email = models.EmailField(blank=True)
    currency = models.CharField(max_length=3, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Django's email__iexact compiles to UPPER(email) = UPPER(%s).
            models.Index(Upper("email"), name="customer_email_upper"),
        ]

    def __str__(self) -> str:
        return self.external_id


class CodeField(models.CharField):
    """A coupon code column in byte order: COLLATE "C" on PostgreSQL.

    Byte order lets a prefix search (LIKE 'ABC%') use the unique index, so no second
    varchar_pattern_ops index is needed. SQLite compares bytes (BINARY) already and
    has no collation named "C".
    """

    def db_parameters(self, connection):
        params = super().db_parameters(connection)
        params["collation"] = "C" if connection.vendor == "postgresql" else None
        return params


class Coupon(models.Model):
    # No database-level foreign key for pool and terms: pools are never deleted and
    # terms versions are immutable, so the constraint would protect nothing, yet its
    # per-row check at COMMIT doubled the time of bulk inserts (1.7 s of every
    # 250,000 generated coupons). PROTECT still guards them in the ORM.
    pool = models.ForeignKey(
        CouponPool, on_delete=models.PROTECT, related_name="coupons", db_index=False, db_constraint=False
    )
    terms = models.ForeignKey(
        CouponTerms, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    code = CodeField(max_length=64)
    # Generic literal codes (a pattern without placeholders) repeat: one row per holder.
    shared_code = models.BooleanField(default=False)
    status = models.PositiveSmallIntegerField(choices=CouponStatus.choices, default=CouponStatus.UNASSIGNED)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, null=True, blank=True, related_name="coupons", db_index=False)
    claimed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    usages = models.PositiveIntegerField(default=0)
    claims = models.PositiveIntegerField(default=0)
    # Gift cards: NULL means "untouched", i.e. the full value of the coupon's terms,
    # so a value change propagated to the terms reaches untouched cards for free.
    balance = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["code"], condition=Q(shared_code=False), name="coupon_code_unique"
            ),
            models.CheckConstraint(condition=Q(balance__gte=0) | Q(balance__isnull=True), name="coupon_balance_not_negative"),
        ]
        indexes = [
            # Coupons tab (newest first, keyset on id) and the unfiltered list.
            models.Index(fields=["pool", "-id"], name="coupon_pool_id"),
            # Status filter, "next unassigned coupon" on claim, per-status counts.
            models.Index(fields=["pool", "status", "id"], name="coupon_pool_status_id"),
            models.Index(fields=["customer", "-id"], name="coupon_customer", condition=Q(customer__isnull=False)),
            models.Index(fields=["pool", "claimed_at"], name="coupon_pool_claimed", condition=Q(claimed_at__isnull=False)),
            models.Index(fields=["pool", "expires_at"], name="coupon_pool_expires", condition=Q(expires_at__isnull=False)),
            # Generic codes (repeating, outside the unique index); see selectors.code_q.
            models.Index(fields=["code"], name="coupon_shared_code", condition=Q(shared_code=True)),
            # The expiry task: only live claimed coupons that carry a date.
            models.Index(
                fields=["expires_at"],
                name="coupon_due_expiry",
                condition=Q(status__in=[2, 3], expires_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def effective_terms(self) -> CouponTerms:
        return self.terms.effective or self.terms

    @property
    def current_balance(self):
        if not self.effective_terms.is_gift_card:
            return None
        return self.effective_terms.value if self.balance is None else self.balance


class GiftCardRedemption(models.Model):
    """One use of a gift card's balance; unredeem reverses the newest one."""

    coupon = models.ForeignKey(Coupon, on_delete=models.PROTECT, related_name="redemptions")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    balance_before = models.DecimalField(max_digits=12, decimal_places=2)
    status_before = models.PositiveSmallIntegerField(choices=CouponStatus.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    reversed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["coupon", "-id"], name="redemption_coupon")]


class ActorKind(models.TextChoices):
    USER = "user", "User"
    API_KEY = "api_key", "API key"
    SYSTEM = "system", "System"


class EventAction(models.TextChoices):
    CLAIM = "coupon_claim", "Coupon claim"
    INVALIDATE = "coupon_invalidate", "Coupon invalidate"
    UNASSIGN = "coupon_unassign", "Coupon unassign"
    TRANSFER = "coupon_transfer", "Coupon transfer"
    RECEIVE = "coupon_receive", "Coupon receive"
    REDEEM = "coupon_redeem", "Coupon redeem"
    UNREDEEM = "coupon_unredeem", "Coupon unredeem"
    EXPIRE = "coupon_expire", "Coupon expire"


class CustomerEvent(models.Model):
    """The customer's event history: what happened, when, by whom, with which details."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="events", db_index=False)
    action = models.CharField(max_length=32, choices=EventAction.choices)
    coupon = models.ForeignKey(Coupon, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False)
    pool = models.ForeignKey(CouponPool, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    actor_label = models.CharField(max_length=150, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_index=False)

    class Meta:
        indexes = [
            models.Index(fields=["customer", "-id"], name="event_customer"),
            models.Index(fields=["pool", "action", "created_at"], name="event_pool_action_day"),
        ]

    def __str__(self) -> str:
        return f"{self.action} for {self.customer_id}"

    @property
    def actor_display(self) -> str:
        return self.actor_label or self.get_actor_kind_display()


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class CouponJob(models.Model):
    """Long work on many coupons (a bulk action, a pool edit's propagation) run by a
    worker; the page polls this row for progress."""

    class Kind(models.TextChoices):
        BULK_ACTION = "bulk_action", "Bulk action"
        PROPAGATION = "propagation", "Pool update"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    pool = models.ForeignKey(CouponPool, on_delete=models.PROTECT, related_name="jobs")
    params = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    total = models.PositiveBigIntegerField(default=0)
    processed = models.PositiveBigIntegerField(default=0)
    applied = models.PositiveBigIntegerField(default=0)
    skipped = models.JSONField(default=dict, blank=True)
    cursor = models.BigIntegerField(null=True, blank=True)
    message = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in (JobStatus.DONE, JobStatus.FAILED)

    @property
    def percent(self) -> int:
        if self.is_finished:
            return 100
        return int(self.processed * 100 / self.total) if self.total else 0


class GenerationStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    INTERRUPTED = "interrupted", "Interrupted"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class GenerationBatch(models.Model):
    """One bulk generation batch: ``requested`` new coupons for a bulk pool.

    ``generated`` is raised in the same transaction as the coupons it counts, so after
    a crash it is exactly what the database holds and a resume tops up the rest.
    """

    pool = models.ForeignKey(CouponPool, on_delete=models.PROTECT, related_name="generation_batches")
    requested = models.PositiveIntegerField()
    generated = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=GenerationStatus.choices, default=GenerationStatus.QUEUED)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="generation_status")]

    def __str__(self) -> str:
        return f"Generation #{self.pk} of {self.requested:,} for {self.pool}"

    @property
    def percent(self) -> int:
        return int(self.generated * 100 / self.requested) if self.requested else 100

    @property
    def is_active(self) -> bool:
        return self.status in (GenerationStatus.QUEUED, GenerationStatus.RUNNING)

    @property
    def can_resume(self) -> bool:
        return self.status in (GenerationStatus.INTERRUPTED, GenerationStatus.FAILED) and self.generated < self.requested
