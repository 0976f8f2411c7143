from django.urls import path

from . import views

app_name = "pools"

# The pool pages that count or change coupons (list with stock, overview, create, edit, update
# preview) are coupons' (``coupons.urls.pool_form_patterns``): couponsite.urls puts both lists
# under the ``pools:`` names.

urlpatterns = [
    path("combinations/", views.CombinationsView.as_view(), name="combinations"),
    path("settings/", views.ModuleSettingsView.as_view(), name="settings"),
]
