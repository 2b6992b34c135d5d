from django.urls import path

from transfers import audit_views, dashboard_views, group_views, job_views, notification_views, team_views, token_views, views
from transfers.farm import account_views
from transfers.farm import views as farm_views

urlpatterns = [
    path("", views.manifest_list, name="manifest-list"),
    path("manifests/<int:pk>/", views.manifest_detail, name="manifest-detail"),
    path("manifests/<int:pk>/upload", views.manifest_upload, name="manifest-upload"),
    path("jobs/", job_views.job_list, name="job-list"),
    path("jobs/new", job_views.job_new, name="job-new"),
    path("jobs/<int:pk>/", views.job_detail, name="job-detail"),
    path("jobs/<int:pk>/items", job_views.job_items, name="job-items"),
    path("jobs/<int:pk>/speed", views.job_speed, name="job-speed"),
    path("jobs/<int:pk>/<slug:action>", views.job_action, name="job-action"),
    path("groups/<int:pk>/", group_views.group_detail, name="group-detail"),
    path("groups/<int:pk>/<slug:action>", group_views.group_action, name="group-action"),
    path("settings/notifications/", notification_views.notification_settings, name="notification-settings"),
    path("dashboard/", dashboard_views.dashboard, name="dashboard"),
    path("dashboard/state.json", dashboard_views.dashboard_json, name="dashboard-state"),
    path("dashboard/kiosks", dashboard_views.kiosk_create, name="kiosk-create"),
    path("dashboard/kiosks/<int:pk>/revoke", dashboard_views.kiosk_revoke, name="kiosk-revoke"),
    path("kiosk/", dashboard_views.kiosk_page, name="kiosk"),
    path("kiosk/state.json", dashboard_views.kiosk_json, name="kiosk-state"),
    path("audit/", audit_views.audit_list, name="audit"),
    path("audit/export.csv", audit_views.audit_export, name="audit-export"),
    path("teams/", team_views.team_list, name="team-list"),
    path("teams/<int:pk>/", team_views.team_detail, name="team-detail"),
    path("teams/<int:pk>/members/add", team_views.team_member_add, name="team-member-add"),
    path("teams/<int:pk>/members/<int:member>/role", team_views.team_member_role, name="team-member-role"),
    path("teams/<int:pk>/members/<int:member>/remove", team_views.team_member_remove, name="team-member-remove"),
    path("farm/", farm_views.farm_account_list, name="farm-accounts"),
    path("farm/new", account_views.farm_account_new, name="farm-account-new"),
    path("farm/<int:account_id>/edit", account_views.farm_account_edit, name="farm-account-edit"),
    path("farm/<int:account_id>/check", account_views.farm_account_check, name="farm-account-check"),
    path("farm/<int:account_id>/", farm_views.farm_tasks, name="farm-tasks"),
    path("farm/<int:account_id>/simulate", farm_views.farm_simulate, name="farm-simulate"),
    path("farm/<int:account_id>/download", farm_views.farm_download, name="farm-download"),
    path("farm/<int:account_id>/token", farm_views.farm_token, name="farm-token"),
    path("farm/<int:account_id>/token/revoke", farm_views.farm_token_revoke_view, name="farm-token-revoke"),
    path("tokens/", token_views.token_list, name="tokens"),
    path("tokens/<int:pk>/revoke", token_views.token_revoke, name="token-revoke"),
]
