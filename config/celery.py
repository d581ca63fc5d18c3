import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("brightrun")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.celeryd_init.connect
def _worker_broker_transport(sender=None, conf=None, **kwargs):
    """The worker, and only the worker, consumes through config.kombu_transport (it keeps
    unacknowledged tasks across a Redis restart); celeryd_init runs before any broker connection."""
    from django.conf import settings

    transport = settings.CELERY_WORKER_BROKER_TRANSPORT
    if transport and conf is not None:
        conf.broker_transport = transport
