"""The Celery app: configuration comes from Django settings (CELERY_*), tasks from the apps."""

import os

from celery import Celery

from rvweb import kombu_fix

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rvweb.settings")
kombu_fix.install()

app = Celery("rvweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.autodiscover_tasks(["transfers.farm"])  # transfers.farm.tasks: the local farm's simulated renders
