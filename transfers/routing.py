from django.urls import path, re_path

from transfers.consumers import DashboardConsumer, JobConsumer, KioskConsumer, NotFoundConsumer

websocket_urlpatterns = [
    path("ws/jobs/<int:job_id>/", JobConsumer.as_asgi()),
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
    path("ws/kiosk/", KioskConsumer.as_asgi()),
    re_path(r"", NotFoundConsumer.as_asgi()),  # last: any other path is closed cleanly, not a 500
]
