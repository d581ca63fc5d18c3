import os

from celery import Celery

from config import kombu_compat

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Before any broker connection: keeps unacknowledged messages (and the worker process) across a
# Redis restart; see config/kombu_compat.py for the kombu 5.7 faults it works around.
kombu_compat.apply()

app = Celery("brightrun")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
