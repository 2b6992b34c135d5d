"""The Celery app: configuration comes from Django settings (CELERY_*), tasks from the apps."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rvweb.settings")

app = Celery("rvweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
