from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from rvweb.health import healthz
from transfers.metrics import metrics_view

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include("transfers.api.urls")),
    path("", include("transfers.urls")),
]

handler404 = "transfers.api.errors.page_not_found"  # JSON under /api/, the 404 page elsewhere
