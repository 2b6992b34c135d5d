from django.urls import path

from transfers import views
from transfers.farm import views as farm_views

urlpatterns = [
    path("", views.manifest_list, name="manifest-list"),
    path("manifests/<int:pk>/", views.manifest_detail, name="manifest-detail"),
    path("manifests/<int:pk>/upload", views.manifest_upload, name="manifest-upload"),
    path("manifests/<int:pk>/split", views.manifest_split, name="manifest-split"),
    path("manifests/<int:pk>/dry-run", views.manifest_dry_run, name="manifest-dry-run"),
    path("jobs/", views.job_list, name="job-list"),
    path("jobs/<int:pk>/", views.job_detail, name="job-detail"),
    path("jobs/<int:pk>/speed", views.job_speed, name="job-speed"),
    path("jobs/<int:pk>/<slug:action>", views.job_action, name="job-action"),
    path("farm/", farm_views.farm_account_list, name="farm-accounts"),
    path("farm/<int:account_id>/", farm_views.farm_tasks, name="farm-tasks"),
    path("farm/<int:account_id>/simulate", farm_views.farm_simulate, name="farm-simulate"),
    path("farm/<int:account_id>/download", farm_views.farm_download, name="farm-download"),
    path("farm/<int:account_id>/token", farm_views.farm_token, name="farm-token"),
    path("farm/<int:account_id>/token/revoke", farm_views.farm_token_revoke_view, name="farm-token-revoke"),
]
