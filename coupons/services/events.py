"""The customer event history's writes: one INSERT per event (every action, and every
API claim, writes one), its shape taken from ``coupons.rows``."""

from __future__ import annotations

import json
from decimal import Decimal

from django.db import connection

from .. import rows as row_sql
from ..models import Coupon
from .rules import Actor

EVENT_VALUES = ", ".join(["%s"] * len(row_sql.EVENT_COLUMNS))
EVENT_ROW = f"{row_sql.EVENT_INSERT}VALUES ({EVENT_VALUES})"


def write_event(action: str, *, coupon: Coupon, customer_id: int, actor: Actor, now, **data) -> None:
    """Write one entry of the customer's event history (a plain INSERT: every action,
    and every API claim, writes one)."""
    with connection.cursor() as cursor:
        cursor.execute(EVENT_ROW, event_params(action, coupon=coupon, customer_id=customer_id, actor=actor, now=now, **data))


def event_params(action: str, *, coupon: Coupon, customer_id: int, actor: Actor, now, **data) -> list:
    fields = actor.event_fields()
    user = fields["actor_user"]
    payload = json.dumps({"code": coupon.code, **{k: _jsonable(v) for k, v in data.items()}})
    return [customer_id, str(action), coupon.pk, coupon.pool_id, str(fields["actor_kind"]),
            user.pk if user is not None else None, fields["actor_label"], payload,
            connection.ops.adapt_datetimefield_value(now)]


def _jsonable(value):
    return str(value) if isinstance(value, Decimal) else value
