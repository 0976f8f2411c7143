from django import template

from coupons.services import allowed_actions

register = template.Library()

ACTION_LABELS = {
    "redeem": "Redeem",
    "unredeem": "Mark as unredeemed",
    "transfer": "Transfer",
    "unassign": "Unassign",
    "invalidate": "Invalidate",
}


@register.filter
def row_actions(coupon):
    """[(action, label)] the coupon's status allows, for its hamburger menu."""
    return [(name, ACTION_LABELS[name]) for name in allowed_actions(coupon)]


@register.filter
def action_label(name):
    return ACTION_LABELS.get(name, name)
