"""The JSON API (SPEC section 7), authenticated by ``Authorization: Api-Key <key>``:
``base`` (errors, paging, the keyed view), ``pools``, ``coupons``, ``events`` (events,
customers, bulk operations)."""

from .coupons import CouponDetailView, CouponListView, CouponValidateView
from .events import BulkErrorsView, BulkOperationView, BulkStatusView, CustomerView, EventView
from .pools import PoolClaimView, PoolDetailView, PoolListView, PoolUpdateView

__all__ = [
    "BulkErrorsView", "BulkOperationView", "BulkStatusView", "CouponDetailView", "CouponListView",
    "CouponValidateView", "CustomerView", "EventView", "PoolClaimView", "PoolDetailView", "PoolListView",
    "PoolUpdateView",
]
