from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from django.views.generic import RedirectView
from django.views.i18n import JavaScriptCatalog

from api.ui import ApiKeysView
from coupons.urls import pool_form_patterns
from pools.urls import urlpatterns as pool_patterns

urlpatterns = [
    # First: every API request is resolved against the patterns before its own.
    path("api/", include("api.urls")),
    path("", RedirectView.as_view(pattern_name="pools:list", permanent=False)),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("pools/", include((pool_patterns + pool_form_patterns, "pools"))),
    path("", include("coupons.urls")),
    path("imports/", include("imports.urls")),
    path("settings/api-keys/", ApiKeysView.as_view(), name="api_keys"),
    path("admin/", admin.site.urls),
    # Django's ngettext for the page scripts' count sentences (no inline script: a file).
    path("jsi18n/", login_not_required(JavaScriptCatalog.as_view()), name="javascript-catalog"),
]

# Styled, with the menu and a way back (the API answers its own errors in JSON).
handler403 = "couponsite.errors.permission_denied"
handler404 = "couponsite.errors.page_not_found"
