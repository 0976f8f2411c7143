"""Counted nouns in messages: "1 coupon", "2,000 coupons" (the noun through ngettext)."""

from django.utils.translation import ngettext


def counted(count: int, singular: str, plural: str) -> str:
    """The count with thousands separators and the noun that fits it."""
    return f"{count:,} {ngettext(singular, plural, count)}"
