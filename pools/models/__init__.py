"""Coupon pools (``pool``), their coupon terms (``terms``), the store and product
catalogs and the module settings (``catalog``)."""

from .catalog import ModuleSettings, Product, Store
from .pool import CALLBACK_PEER, CALLBACK_WHAT, CouponPool, WebURLField
from .terms import (
    BULK_ONLY_FIELDS,
    GIFT_CARD_ONLY_FIELDS,
    MAX_PERIOD,
    PATTERN_SOURCES,
    REMOTE_ONLY_FIELDS,
    CouponTerms,
    CouponType,
    PeriodUnit,
    PoolSource,
    money_field,
    period_end,
    validate_currency,
    value_text,
)

__all__ = [
    "BULK_ONLY_FIELDS", "CALLBACK_PEER", "CALLBACK_WHAT", "GIFT_CARD_ONLY_FIELDS", "MAX_PERIOD", "PATTERN_SOURCES",
    "REMOTE_ONLY_FIELDS", "CouponPool", "CouponTerms", "CouponType", "ModuleSettings", "PeriodUnit", "PoolSource",
    "Product", "Store", "WebURLField", "money_field", "period_end", "validate_currency", "value_text",
]
