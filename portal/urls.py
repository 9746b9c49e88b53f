from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from integrations import ops
from portal import views, views_tokens
from portal.api import api, unknown_endpoint

handler403 = "portal.views.permission_denied"
handler404 = "portal.views.page_not_found"
handler500 = "portal.views.server_error"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tenant/switch/", views.switch_tenant, name="switch_tenant"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", ops.metrics, name="metrics"),
    path("staff/delivery-workers/", ops.delivery_workers, name="delivery_workers"),
    path("integrations/", include("integrations.urls")),
    path("audit/", include("audit.urls")),
    path("settings/api-tokens/", views_tokens.api_tokens, name="api_tokens"),
    path(
        "settings/api-tokens/create/", views_tokens.api_token_create_view, name="api_token_create"
    ),
    path(
        "settings/api-tokens/<int:token_id>/revoke/",
        views_tokens.api_token_revoke_view,
        name="api_token_revoke",
    ),
    path("api/", api.urls),
    re_path(r"^api/(?P<path>.*)$", unknown_endpoint),
    path("admin/", admin.site.urls),
]
