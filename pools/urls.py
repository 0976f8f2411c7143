from django.urls import path

from . import views

app_name = "pools"

urlpatterns = [
    path("", views.PoolListView.as_view(), name="list"),
    path("new/", views.PoolFormView.as_view(), name="create"),
    path("<int:pk>/", views.PoolFormView.as_view(), name="edit"),
    path("<int:pk>/update-preview/", views.UpdatePreviewView.as_view(), name="update_preview"),
    path("combinations/", views.CombinationsView.as_view(), name="combinations"),
    path("settings/", views.ModuleSettingsView.as_view(), name="settings"),
]
