from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import views
from .handlers import not_found_view

app_name = "api"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema", authentication_classes=[], permission_classes=[]), name="docs"),
    path("v1/coupon-pools", views.PoolListView.as_view(), name="pools"),
    path("v1/coupon-pools/<str:reference>", views.PoolDetailView.as_view(), name="pool"),
    path("v1/coupon-pools/<str:reference>/update", views.PoolUpdateView.as_view(), name="pool_update"),
    path("v1/coupon-pools/<str:reference>/claim", views.PoolClaimView.as_view(), name="pool_claim"),
    path("v1/coupons", views.CouponListView.as_view(), name="coupons"),
    # Codes may hold "/": the validate route is matched first.
    path("v1/coupons/<path:code>/validate", views.CouponValidateView.as_view(), name="coupon_validate"),
    path("v1/coupons/<path:code>", views.CouponDetailView.as_view(), name="coupon"),
    path("v1/events", views.EventView.as_view(), name="events"),
    path("v1/customers/<path:customer_id>", views.CustomerView.as_view(), name="customer"),
    path("v1/bulk-operation/coupons/<int:batch_id>/status", views.BulkStatusView.as_view(), name="bulk_status"),
    path("v1/bulk-operation/coupons/<int:batch_id>/status/error", views.BulkErrorsView.as_view(), name="bulk_errors"),
    # After the status URLs: "status" is not an action.
    path("v1/bulk-operation/coupons/<str:reference>/<str:action>", views.BulkOperationView.as_view(), name="bulk"),
    # Anything else under /api/: a JSON 404, not Django's HTML page.
    re_path(r"^.*$", not_found_view),
]
