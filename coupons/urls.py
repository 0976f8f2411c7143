from django.urls import path

from . import pool_views, views
from .jobs import views as job_views

app_name = "coupons"

# Under /pools/ with the ``pools:`` names (see ``couponsite.urls``): the pool pages that count
# or change coupons.
pool_form_patterns = [
    path("", pool_views.PoolListView.as_view(), name="list"),
    path("new/", pool_views.PoolFormView.as_view(), name="create"),
    path("<int:pk>/", pool_views.PoolOverviewView.as_view(), name="overview"),
    path("<int:pk>/settings/", pool_views.PoolFormView.as_view(), name="edit"),
    path("<int:pk>/update-preview/", pool_views.UpdatePreviewView.as_view(), name="update_preview"),
]

urlpatterns = [
    path("pools/<int:pk>/coupons/", views.PoolCouponsView.as_view(), name="pool_coupons"),
    path("pools/<int:pk>/coupons/bulk/", views.PoolCouponsBulkView.as_view(), name="pool_coupons_bulk"),
    path("pools/<int:pk>/coupons/bulk/preview/", views.PoolCouponsBulkPreviewView.as_view(),
         name="pool_coupons_bulk_preview"),
    path("pools/<int:pk>/coupons/export.csv", views.PoolCouponsExportView.as_view(), name="pool_coupons_export"),
    path("pools/<int:pk>/generation/", views.PoolGenerationView.as_view(), name="pool_generation"),
    path("generation/<int:pk>/", views.GenerationBatchView.as_view(), name="generation_batch"),
    path("pools/<int:pk>/statistics/", views.PoolStatisticsView.as_view(), name="pool_statistics"),
    path("coupons/<int:pk>/", views.CouponDetailView.as_view(), name="coupon_detail"),
    path("coupons/<int:coupon_pk>/<str:action>/", views.CouponActionView.as_view(), name="coupon_action"),
    path("exports/<int:pk>/download/", views.ExportDownloadView.as_view(), name="export_download"),
    path("jobs/", job_views.JobListView.as_view(), name="jobs"),
    path("jobs/<str:kind>/<int:pk>/", job_views.JobCardView.as_view(), name="job"),
    path("jobs/<str:kind>/<int:pk>/<str:action>/", job_views.JobActionView.as_view(), name="job_action"),
    path("customers/", views.CustomerListView.as_view(), name="customers"),
    path("customers/new/", views.CustomerCreateView.as_view(), name="customer_create"),
    path("customers/<int:pk>/", views.CustomerDetailView.as_view(), name="customer"),
    path("customers/<int:pk>/edit/", views.CustomerEditView.as_view(), name="customer_edit"),
    path("customers/<int:pk>/assign/", views.CustomerAssignView.as_view(), name="customer_assign"),
]
