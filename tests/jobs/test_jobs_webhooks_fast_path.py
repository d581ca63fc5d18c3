"""The webhook's tests again, with pod events through the lean ASGI path in front of Django
(training.webhooks_asgi, served by config/asgi.py), and what only that path does."""
import pytest

from tests.jobs.asgi_client import FastPathClient, NotDjango, asgi_post
# Every test of the Django-served webhook, collected again here with the `client` below.
from tests.jobs.test_jobs_webhooks import *  # noqa: F401,F403
from tests.jobs.factories import make_running_job, pod_event
from gpu_worker import signing
from training import states
from training.models import JobEvent
from training.webhooks import MAX_BODY_BYTES
from training.webhooks_asgi import PATH, PodEventsApp

# Committed rows: the lean path runs the view's database work in a thread of its own (as Django's
# handler does), which cannot see a test's open transaction.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(client):
    return FastPathClient(client)


def _signed(job, seq=1, data=None):
    event = pod_event(job, seq, "log", data=data or {"message": "hello"})
    body = event.to_json()
    return body, {"content-type": "application/json", **signing.sign_headers(job.webhook_secret, event.event_id, body)}


def test_the_lean_path_answers_like_the_view_with_its_headers(organization):
    job = make_running_job(organization, status=states.TRAINING)
    body, headers = _signed(job)
    behind = NotDjango()
    response = asgi_post(PodEventsApp(behind), PATH, body, headers, chunk=100)  # the body in pieces
    assert response.status_code == 200 and response.json()["stored"] is True
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(response.content))
    assert response.headers["x-content-type-options"] == "nosniff"
    assert JobEvent.objects.filter(job=job, event_id=headers["webhook-id"]).exists()
    assert behind.calls == []


def test_an_oversized_body_is_refused_before_it_is_all_read(organization):
    job = make_running_job(organization, status=states.TRAINING)
    body, headers = _signed(job, data={"message": "x" * (MAX_BODY_BYTES + 10)})
    response = asgi_post(PodEventsApp(NotDjango()), PATH, body, headers, chunk=64 * 1024)
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    assert not JobEvent.objects.filter(job=job).exists()


def test_an_unknown_host_is_refused_as_django_would(organization):
    job = make_running_job(organization, status=states.TRAINING)
    body, headers = _signed(job)
    response = asgi_post(PodEventsApp(NotDjango()), PATH, body, headers, host="evil.example")
    assert response.status_code == 400
    assert not JobEvent.objects.filter(job=job).exists()


def test_everything_else_goes_to_django():
    behind = NotDjango()
    app = PodEventsApp(behind)
    assert asgi_post(app, "/api/v1/pod-events", b"{}", {}).status_code == 599  # not this path exactly
    assert asgi_post(app, "/api/v1/jobs/", b"{}", {}).status_code == 599
    assert behind.calls == ["/api/v1/pod-events", "/api/v1/jobs/"]


def test_the_served_application_routes_pod_events_through_the_lean_path():
    from config import asgi

    assert isinstance(asgi.http_app, PodEventsApp) and asgi.http_app.django_app is asgi.django_asgi_app


def test_each_request_gives_its_database_connection_back(organization):
    from django.db import connection

    def backends():
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
            return cursor.fetchone()[0]

    job = make_running_job(organization, status=states.TRAINING)
    app = PodEventsApp(NotDjango())
    before = backends()
    for seq in range(1, 21):
        body, headers = _signed(job, seq)
        assert asgi_post(app, PATH, body, headers).status_code == 200
    # Each request's thread ends with it; a connection left open behind it would stay until
    # PostgreSQL ran out ("too many clients").
    assert backends() <= before + 1
    assert JobEvent.objects.filter(job=job).count() == 20
