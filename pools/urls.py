from django.urls import path

from . import views

app_name = "pools"

# The pool form's own pages (create, edit, update preview) are coupons' (``coupons.urls.pool_form_patterns``):
# couponsite.urls puts both lists under the ``pools:`` names.

urlpatterns = [
    path("", views.PoolListView.as_view(), name="list"),
    path("combinations/", views.CombinationsView.as_view(), name="combinations"),
    path("settings/", views.ModuleSettingsView.as_view(), name="settings"),
]
