"""API keys and the bulk operations shops queue through the API."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models

from coupons.jobs.base import Job
from pools.models import CouponPool


class ApiKey(models.Model):
    """A client's key. Only a SHA-256 hash of the key is stored (keys are 256-bit random
    values, so a fast hash is as safe as a slow one and costs nothing per request); the
    key itself is shown once, when it is created. ``prefix`` finds the row."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    groups = models.ManyToManyField(
        Group, blank=True, related_name="+",
        help_text="Limit the key to these user groups' pools; none: every pool.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    # DRF treats the authenticated principal as request.user; pools.access tells it from a user.
    is_authenticated = True
    is_anonymous = False
    is_api_key = True

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class BulkOperation(Job):
    """``add``, ``assign`` or ``unassign`` for up to 50,000 codes, run by a worker.

    ``total`` is the number of items, ``processed`` those done (``succeeded`` +
    ``failed``); ``cursor`` the index of the first item not done yet.
    """

    job_kind = "api_bulk"

    class Action(models.TextChoices):
        ADD = "add", "Add coupons"
        ASSIGN = "assign", "Assign coupons"
        UNASSIGN = "unassign", "Unassign coupons"

    pool = models.ForeignKey(CouponPool, on_delete=models.PROTECT, related_name="+")
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=16, choices=Action.choices)
    items = models.JSONField()  # the request's coupons, as given
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    cursor = models.PositiveIntegerField(default=0)  # items before this index are done
    # ``add`` runs as an import; a retried or redelivered task goes on with the same one.
    import_job = models.ForeignKey("imports.ImportJob", on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        return f"Bulk {self.action} #{self.pk}"


class BulkOperationError(models.Model):
    operation = models.ForeignKey(BulkOperation, on_delete=models.CASCADE, related_name="errors")
    index = models.PositiveIntegerField()  # position in the request's list, from 0
    code = models.CharField(max_length=200, blank=True)  # the coupon code
    error_code = models.CharField(max_length=64)
    message = models.TextField()

    class Meta:
        ordering = ["index"]


class LookupLockout(models.Model):
    """A key, or a customer through a key, locked out of code lookups after too many
    failed ones (``api.limits``): guessing codes."""

    class Scope(models.TextChoices):
        KEY = "key", "API key"
        CUSTOMER = "customer", "Customer"

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    scope = models.CharField(max_length=16, choices=Scope.choices)
    customer = models.CharField(max_length=128, blank=True)  # the customer's ID, when scope is customer
    failures = models.PositiveIntegerField()  # the budget that was used up
    until = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "code lookup lock-out"

    def __str__(self) -> str:
        return f"{self.get_scope_display()} locked out until {self.until:%Y-%m-%d %H:%M}"


class IdempotencyRecord(models.Model):
    """A POST or PUT sent with an ``Idempotency-Key`` header and its answer (``api.idempotency``):
    one per API key and idempotency key, kept 24 hours. Written in the request's own
    transaction, so a record exists only with the work it answers."""

    # No foreign-key constraint in the database: its check would lock the key's row (FOR
    # KEY SHARE) in every such request of the key until it commits, and so many
    # transactions sharing one row lock cost PostgreSQL a multixact each. Django still
    # deletes a key's records with it.
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)  # SHA-256 of the method, path and body
    status_code = models.PositiveSmallIntegerField(null=True)  # null until the answer is stored
    content_type = models.CharField(max_length=100, blank=True)
    body = models.BinaryField(null=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "key"], name="api_idempotency_key_unique")]
        verbose_name = "idempotency record"

    def __str__(self) -> str:
        return f"{self.key} ({self.status_code})"
