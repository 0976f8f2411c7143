"""The one list of what a manager can do to a coupon: each action's name, label, done
message, status rule, single-coupon service and whether the Coupons tab offers it in
bulk. The row menus, the action dialog, the bulk buttons and the bulk jobs
(``coupons.bulk``, which adds each bulk action's set-based UPDATE) all read it here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import services
from .models import Coupon, EventAction
from .services import RULES, Rule, voided_below_minimum


@dataclass(frozen=True)
class CouponAction:
    name: str
    label: str  # the menu item, the dialog's title and button: "Mark as unredeemed"
    past: str  # "marked as unredeemed": the done message and the bulk result
    rule: str  # a key of ``services.RULES``
    service: Callable[..., Coupon]  # service(coupon=..., actor=..., **form fields)
    event: str | None = None  # the event the holder gets (written set-based by bulk)
    gift_card_rule: str | None = None  # a gift card's own rule, when it differs
    bulk_label: str = ""  # offered in bulk on the Coupons tab with this button label
    danger: bool = False  # the confirmation button is red
    also_allowed: Callable[[Coupon], bool] | None = None

    @property
    def bulk(self) -> bool:
        return bool(self.bulk_label)

    def rule_for(self, gift_card: bool) -> Rule:
        return RULES[self.gift_card_rule if gift_card and self.gift_card_rule else self.rule]

    def allows(self, coupon: Coupon) -> bool:
        """True if the coupon's status allows it (the menu offers it; the service still
        checks under the row lock)."""
        if coupon.status in self.rule_for(coupon.effective_terms.is_gift_card).allowed:
            return True
        return self.also_allowed is not None and self.also_allowed(coupon)

    def done_message(self, code: str) -> str:
        return f"Coupon {code} {self.past}."


_ALL = (  # in menu order
    CouponAction("redeem", "Redeem", "redeemed", "redeem", services.coupon_redeem, EventAction.REDEEM,
                 gift_card_rule="redeem_gift_card", bulk_label="Redeem selected"),
    CouponAction("unredeem", "Mark as unredeemed", "marked as unredeemed", "unredeem", services.coupon_unredeem,
                 EventAction.UNREDEEM, gift_card_rule="unredeem_gift_card", bulk_label="Unredeem selected",
                 also_allowed=voided_below_minimum),
    CouponAction("transfer", "Transfer", "transferred", "transfer", services.coupon_transfer),
    CouponAction("unassign", "Unassign", "unassigned", "unassign", services.coupon_unassign, EventAction.UNASSIGN,
                 bulk_label="Unassign selected"),
    CouponAction("invalidate", "Invalidate", "invalidated", "invalidate", services.coupon_invalidate,
                 EventAction.INVALIDATE, bulk_label="Invalidate selected", danger=True),
)
ACTIONS: dict[str, CouponAction] = {action.name: action for action in _ALL}


def allowed_actions(coupon: Coupon) -> list[CouponAction]:
    """The actions a coupon's status allows, in menu order (its hamburger menu)."""
    return [action for action in ACTIONS.values() if action.allows(coupon)]


def bulk_actions() -> list[CouponAction]:
    return [action for action in ACTIONS.values() if action.bulk]
