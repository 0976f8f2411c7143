from django.urls import path

from . import views

app_name = "imports"

urlpatterns = [
    path("", views.ImportListView.as_view(), name="list"),
    path("new/", views.ImportUploadView.as_view(), name="new"),
    path("<int:pk>/configure/", views.ImportConfigureView.as_view(), name="configure"),
    path("<int:pk>/", views.ImportDetailView.as_view(), name="detail"),
    path("<int:pk>/progress/", views.ImportProgressView.as_view(), name="progress"),
    path("<int:pk>/rejected-rows.csv", views.ImportRejectionsView.as_view(), name="rejections"),
]
