from django.contrib.auth.decorators import login_required
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from transfers.api import farm, notifications, transfer_tasks
from transfers.api.audit import AuditViewSet
from transfers.api.budgets import BudgetViewSet
from transfers.api.groups import JobGroupViewSet
from transfers.api.kiosks import KioskViewSet
from transfers.api.teams import TeamViewSet
from transfers.api.views import FarmAccountViewSet, ManifestViewSet, TransferJobViewSet

app_name = "api"
router = DefaultRouter()
router.register("accounts", FarmAccountViewSet, basename="account")
router.register("manifests", ManifestViewSet, basename="manifest")
router.register("jobs", TransferJobViewSet, basename="job")
router.register("groups", JobGroupViewSet, basename="group")
router.register("teams", TeamViewSet, basename="team")
router.register("audit", AuditViewSet, basename="audit")
router.register("kiosks", KioskViewSet, basename="kiosk")
router.register("budgets", BudgetViewSet, basename="budget")

urlpatterns = [
    *router.urls,
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # Split: the page loads its setup script from its own URL, so the CSP needs no inline script.
    path("docs/", login_required(SpectacularSwaggerSplitView.as_view(url_name="api:schema")), name="docs"),
    path("notifications/", notifications.NotificationSettingsView.as_view(), name="notifications"),
    path("notifications/secret/", notifications.WebhookSecretView.as_view(), name="notifications-secret"),
    path("notifications/deliveries/", notifications.DeliveryList.as_view(), name="notifications-deliveries"),
    path("transfer-tasks/", transfer_tasks.TransferTaskList.as_view(), name="transfer-tasks"),
    path("transfer-tasks/<int:id>/", transfer_tasks.TransferTaskDetail.as_view(), name="transfer-task"),
    path("farm/<int:account_id>/events/", farm.farm_events, name="farm-events"),
    path("farm/<int:account_id>/token/", farm.farm_token, name="farm-token"),
    path("farm/<int:account_id>/tasks/", farm.farm_tasks, name="farm-tasks"),
    path("farm/<int:account_id>/tasks/<int:task_id>/", farm.farm_task, name="farm-task"),
]
