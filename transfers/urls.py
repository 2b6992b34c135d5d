from django.urls import path

from transfers import views

urlpatterns = [
    path("", views.manifest_list, name="manifest-list"),
    path("manifests/<int:pk>/", views.manifest_detail, name="manifest-detail"),
    path("manifests/<int:pk>/upload", views.manifest_upload, name="manifest-upload"),
    path("jobs/", views.job_list, name="job-list"),
    path("jobs/<int:pk>/", views.job_detail, name="job-detail"),
    path("jobs/<int:pk>/speed", views.job_speed, name="job-speed"),
    path("jobs/<int:pk>/<slug:action>", views.job_action, name="job-action"),
]
