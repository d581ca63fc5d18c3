"""The beat schedule lives in settings; django-celery-beat's scheduler installs it at start."""
import pytest
from django.conf import settings

# transaction=True: the scheduler closes stale connections, as beat does, which a test transaction forbids.
pytestmark = pytest.mark.django_db(transaction=True)


def _start_beat_scheduler():
    from django_celery_beat.schedulers import DatabaseScheduler

    from config.celery import app

    app.conf.beat_schedule = settings.CELERY_BEAT_SCHEDULE  # what `celery beat` reads at start
    return DatabaseScheduler(app=app)  # not lazy: sets up (installs) the schedule now


def test_every_scheduled_task_exists_and_beat_installs_it_with_the_settings_interval():
    from django_celery_beat.models import PeriodicTask

    from config.celery import app

    app.loader.import_default_modules()
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["task"] in app.tasks, f"{name}: no task {entry['task']}"
    assert not PeriodicTask.objects.filter(name__in=list(settings.CELERY_BEAT_SCHEDULE)).exists()  # no migration did it
    _start_beat_scheduler()
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        row = PeriodicTask.objects.get(name=name)
        assert row.task == entry["task"] and row.enabled
        assert row.interval.every * {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}[row.interval.period] \
            == entry["schedule"]


def test_a_changed_interval_takes_effect_at_the_next_beat_start(settings):
    from django_celery_beat.models import PeriodicTask

    _start_beat_scheduler()
    name = "artifacts: prune checkpoints of finished jobs"
    assert PeriodicTask.objects.get(name=name).interval.every == 3600
    settings.CELERY_BEAT_SCHEDULE = {**settings.CELERY_BEAT_SCHEDULE,
                                     name: {"task": "artifacts.tasks.checkpoints_prune", "schedule": 600.0}}
    _start_beat_scheduler()
    row = PeriodicTask.objects.get(name=name)
    assert (row.interval.every, row.interval.period) == (600, "seconds")
