"""How an event of the customer history reads on a page: its label ("Redeemed") and its
details in words ("30.00 EUR used, 70.00 EUR left") instead of the stored JSON
(``{"amount": "30.00", "balance": "70.00"}``). Every page showing events uses these
(the ``event_tags`` template filters ``event_label`` and ``event_details``).

The amounts' currency comes from the event's coupon terms: load the events with
``select_related("coupon__terms__effective")`` (``selectors.customer_events_visible``
does), or pass ``currency``.
"""

from __future__ import annotations

from collections.abc import Callable

from pools.models import CouponTerms

from .models import Coupon, CustomerEvent, EventAction

A = EventAction

LABELS = {
    A.CLAIM: "Claimed",
    A.INVALIDATE: "Invalidated",
    A.UNASSIGN: "Unassigned",
    A.TRANSFER: "Transferred away",
    A.RECEIVE: "Received by transfer",
    A.REDEEM: "Redeemed",
    A.UNREDEEM: "Redemption undone",
    A.EXPIRE: "Expired",
}


def event_label(event: CustomerEvent) -> str:
    return LABELS.get(event.action) or event.action.replace("_", " ").capitalize()


def _money(value, currency: str) -> str:
    return f"{value} {currency}".strip()


# Each returns phrases ("30.00 EUR used") and pops the keys it told, so that no detail
# is lost: one it does not know is still shown (``_other``).
def _claim(data: dict, currency: str) -> list[str]:
    parts = []
    if data.pop("again", False):
        parts.append("claimed again: this pool gives a customer the coupon they hold")
    if data.pop("on_redeem", False):
        parts.append("assigned when redeemed through the API")
    if (job := data.pop("import", None)) is not None:
        parts.append(f"imported by import #{job}")
    return parts


def _redeem(data: dict, currency: str) -> list[str]:
    parts = []
    if (amount := data.pop("amount", None)) is not None:
        parts.append(f"{_money(amount, currency)} used")
    if (balance := data.pop("balance", None)) is not None:
        parts.append(f"{_money(balance, currency)} left")
    return parts


def _unredeem(data: dict, currency: str) -> list[str]:
    parts = []
    if (amount := data.pop("amount", None)) is not None:
        parts.append(f"{_money(amount, currency)} given back")
    if (balance := data.pop("balance", None)) is not None:
        parts.append(f"balance {_money(balance, currency)} again")
    return parts


def _transfer(data: dict, currency: str) -> list[str]:
    return [f"to customer {data.pop('to')}"] if data.get("to") else []


def _receive(data: dict, currency: str) -> list[str]:
    return [f"from customer {data.pop('from')}"] if data.get("from") else []


DETAILS: dict[str, Callable[[dict, str], list[str]]] = {
    A.CLAIM: _claim, A.REDEEM: _redeem, A.UNREDEEM: _unredeem, A.TRANSFER: _transfer, A.RECEIVE: _receive,
}


def _other(key: str, value) -> str:
    """A detail no rule above knows (written by a newer version, or by hand): in words too."""
    name = key.replace("_", " ")
    if value is True:
        return name
    if value is False or value in (None, ""):
        return f"{name}: no"
    return f"{name}: {value}"


def event_details(event: CustomerEvent, *, currency: str | None = None) -> str:
    """The event's details as one sentence, or "" when it has none beyond its coupon
    (whose code is shown, and linked, on its own)."""
    data = {key: value for key, value in (event.data or {}).items() if key != "code"}
    if currency is None:
        currency = _currency_of(event)
    told = DETAILS.get(event.action)
    parts = (told(data, currency) if told else []) + [_other(key, value) for key, value in data.items()]
    if not parts:
        return ""
    sentence = ", ".join(parts)
    return f"{sentence[0].upper()}{sentence[1:]}."


def _currency_of(event: CustomerEvent) -> str:
    """The gift card's currency, when the event's coupon and terms were loaded with it
    (never a query per event)."""
    if event.coupon_id is None or not CustomerEvent.coupon.is_cached(event):
        return ""
    coupon = event.coupon
    if not Coupon.terms.is_cached(coupon) or (coupon.terms.effective_id and not CouponTerms.effective.is_cached(coupon.terms)):
        return ""
    terms = coupon.effective_terms
    return terms.currency if terms.is_gift_card else ""
