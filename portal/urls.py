from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal import views

handler403 = "portal.views.permission_denied"
handler404 = "portal.views.page_not_found"
handler500 = "portal.views.server_error"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tenant/switch/", views.switch_tenant, name="switch_tenant"),
    path("healthz", views.healthz, name="healthz"),
    path("integrations/", include("integrations.urls")),
    path("audit/", include("audit.urls")),
    path("admin/", admin.site.urls),
]
