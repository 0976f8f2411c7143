"""The scheduled expiry of claimed coupons past their date (Celery beat)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from .bulk import events_for_coupons
from .models import Coupon, CouponStatus, EventAction
from .services import Actor

S = CouponStatus
LIVE = [S.CLAIMED, S.PARTIALLY_REDEEMED]


def coupons_expire_due(*, now=None, chunk: int = 5_000) -> int:
    """Expire every claimed or partially redeemed coupon whose date has passed.

    Set-based, chunk by chunk. Rows are taken with SKIP LOCKED, so two runs at once
    (or a run racing a redeem) split the work instead of doing it twice, and the
    UPDATE re-checks the status.
    """
    now = now or timezone.now()
    actor = Actor.system("expiry task")
    expired = 0
    while True:
        with transaction.atomic():
            ids = list(
                Coupon.objects.select_for_update(skip_locked=True)
                .filter(status__in=LIVE, expires_at__isnull=False, expires_at__lte=now)
                .order_by("expires_at")
                .values_list("id", flat=True)[:chunk]
            )
            if not ids:
                return expired
            events_for_coupons(ids, action=EventAction.EXPIRE, actor=actor, now=now)
            expired += Coupon.objects.filter(id__in=ids, status__in=LIVE).update(status=S.EXPIRED)
