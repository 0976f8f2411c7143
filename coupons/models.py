"""Coupons, customers, the customer event history, gift card redemptions and jobs.

The jobs share their lifecycle (``coupons.jobs.base.Job``); each adds its own columns.

Built for pools of 100 million coupons: a coupon row is narrow (the pool's properties
live in ``pools.CouponTerms``, one row per version), its status is a small integer,
and every list is served by an index that matches its filter and order.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper
from django.utils import timezone

from pools.models import CouponPool, CouponTerms

from .jobs.base import Job, JobStatus


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
    # The groups of the limited key or manager that created the customer: they see it
    # before it holds a coupon of their pools (``coupons.access``).
    created_for = models.ManyToManyField("auth.Group", blank=True, related_name="+")

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Django's email__iexact compiles to UPPER(email) = UPPER(%s).
            models.Index(Upper("email"), name="customer_email_upper"),
            # The search by part of an ID or email has trigram indexes on PostgreSQL only
            # (migration 0007), kept out of this list so SQLite does not try to make them.
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
                condition=Q(status__in=[CouponStatus.CLAIMED, CouponStatus.PARTIALLY_REDEEMED], expires_at__isnull=False),
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
            # A coupon's own history (its detail page), newest first.
            models.Index(fields=["coupon", "-id"], name="event_coupon"),
        ]

    def __str__(self) -> str:
        return f"{self.action} for {self.customer_id}"

    @property
    def actor_display(self) -> str:
        return self.actor_label or self.get_actor_kind_display()


class CouponJob(Job):
    """Long work on many coupons run by a worker: a bulk action, or a pool edit's
    propagation. Each chunk commits with ``cursor`` (the last coupon id done)."""

    class Kind(models.TextChoices):
        BULK_ACTION = "bulk_action", "Bulk action"
        PROPAGATION = "propagation", "Pool update"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    pool = models.ForeignKey(CouponPool, on_delete=models.PROTECT, related_name="jobs")
    params = models.JSONField(default=dict)
    applied = models.PositiveBigIntegerField(default=0)
    skipped = models.JSONField(default=dict, blank=True)
    cursor = models.BigIntegerField(null=True, blank=True)

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def kind_name(self) -> str:
        return self.kind


class GenerationBatch(Job):
    """One bulk generation batch: ``total`` new coupons requested for a bulk pool.

    ``processed`` (the coupons generated) is raised in the same transaction as the
    coupons it counts, so after a crash it is exactly what the database holds and a
    resume tops up the rest.
    """

    job_kind = "generation"

    pool = models.ForeignKey(CouponPool, on_delete=models.PROTECT, related_name="generation_batches")

    class Meta(Job.Meta):
        verbose_name_plural = "generation batches"  # not Django's "generation batchs"

    def __str__(self) -> str:
        return f"Generation #{self.pk} of {self.total:,} for {self.pool}"

    def resumable(self) -> bool:
        return self.processed < self.total


class ExportJob(Job):
    """A CSV export of a pool's coupons (with the Coupons tab's filters), written by a
    worker to the default storage; the file is kept ``EXPORT_KEPT`` days."""

    job_kind = "export"

    pool = models.ForeignKey(CouponPool, on_delete=models.PROTECT, related_name="exports")
    filters = models.JSONField(default=dict, blank=True)
    compress = models.BooleanField(default=False)  # gzip
    file = models.FileField(upload_to="exports/%Y/%m/", max_length=255, blank=True)
    size = models.PositiveBigIntegerField(default=0)  # bytes written
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        return f"Export #{self.pk} of {self.pool}"

    @property
    def filename(self) -> str:
        stamp = self.created_at.strftime("%Y%m%d-%H%M")
        return f"coupons-pool-{self.pool_id}-{stamp}.csv" + (".gz" if self.compress else "")

    @property
    def is_downloadable(self) -> bool:
        fresh = self.expires_at is None or self.expires_at > timezone.now()
        return self.status == JobStatus.DONE and bool(self.file) and fresh
