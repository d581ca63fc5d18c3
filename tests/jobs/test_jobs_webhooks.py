"""POST /api/v1/pod-events/: forged, wrong secret, stale/future, replayed, shuffled.
Prints a figures table (run with -s to see it)."""
import contextlib
import json
import random
import time

import pytest

from tests.jobs.factories import dumps, make_running_job, pod_event, signed_post, training_events
from training import states
from training.models import Checkpoint, JobEvent, MetricPoint

pytestmark = pytest.mark.django_db


@contextlib.contextmanager
def pinned_clock(now: float):
    from unittest import mock

    with mock.patch("gpu_worker.signing.time.time", return_value=float(now)):
        yield


@pytest.fixture
def job(organization):
    return make_running_job(organization, status=states.PROVISIONING)


def test_forgeries_are_rejected_and_valid_events_accepted(job, organization, client):
    other = make_running_job(organization, status=states.TRAINING)
    figures = {}
    n = 50

    def attempt(name, make):
        accepted = 0
        for i in range(n):
            response = make(i)
            accepted += response.status_code == 200 and response.json().get("stored", False)
        figures[name] = accepted

    def valid(i):
        return signed_post(client, pod_event(job, 1000 + i, "log", data={"message": f"hello {i}"}), job.webhook_secret)

    def flipped_byte(i):
        ev = pod_event(job, 2000 + i, "log", data={"message": "x"})
        body = bytearray(ev.to_json())
        body[len(body) // 2] ^= 0x01
        from gpu_worker import signing
        return signed_post(client, ev, job.webhook_secret, body=bytes(body),
                           headers=signing.sign_headers(job.webhook_secret, ev.event_id, ev.to_json()))

    def wrong_secret(i):
        return signed_post(client, pod_event(job, 3000 + i, "log"), "not-the-secret")

    def other_jobs_secret(i):
        return signed_post(client, pod_event(job, 4000 + i, "log"), other.webhook_secret)

    def missing_headers(i):
        ev = pod_event(job, 5000 + i, "log")
        return client.post("/api/v1/pod-events/", data=ev.to_json(), content_type="application/json")

    # The server's clock is pinned to the signing instant, so "301 s off" is exactly that when
    # verified, however slowly a loaded machine delivers the request.
    def stale(i):
        now = int(time.time())
        with pinned_clock(now):
            return signed_post(client, pod_event(job, 6000 + i, "log"), job.webhook_secret, timestamp=now - 301)

    def future(i):
        now = int(time.time())
        with pinned_clock(now):
            return signed_post(client, pod_event(job, 7000 + i, "log"), job.webhook_secret, timestamp=now + 301)

    def reserialized(i):
        ev = pod_event(job, 8000 + i, "log", data={"message": "y"})
        from gpu_worker import signing
        headers = signing.sign_headers(job.webhook_secret, ev.event_id, ev.to_json())
        body = json.dumps(json.loads(ev.to_json()), indent=2).encode()  # same JSON, other bytes
        return signed_post(client, ev, job.webhook_secret, body=body, headers=headers)

    for name, fn in [("valid", valid), ("flipped body byte", flipped_byte), ("wrong secret", wrong_secret),
                     ("another job's secret", other_jobs_secret), ("missing headers", missing_headers),
                     ("timestamp -301 s", stale), ("timestamp +301 s", future), ("re-serialized JSON", reserialized)]:
        attempt(name, fn)
    print("\nwebhook forgery (accepted / sent):")
    for name, accepted in figures.items():
        print(f"  {name:<22} {accepted}/{n}")
    assert figures.pop("valid") == n
    assert all(v == 0 for v in figures.values()), figures
    assert JobEvent.objects.filter(job=job, source="pod").count() == n


def test_status_codes(job, client):
    assert client.post("/api/v1/pod-events/", data=b"{}", content_type="application/json").status_code == 400
    ev = pod_event(job, 1, "log")
    assert signed_post(client, ev, "wrong").status_code == 401
    bad = signed_post(client, ev, job.webhook_secret, body=b"not json",
                      headers=__import__("gpu_worker.signing", fromlist=["x"]).sign_headers(job.webhook_secret, ev.event_id, b"not json"))
    assert bad.status_code == 400
    first = signed_post(client, ev, job.webhook_secret)
    again = signed_post(client, ev, job.webhook_secret)
    assert first.status_code == again.status_code == 200
    assert first.json()["duplicate"] is False and again.json()["duplicate"] is True


def _final_state(job):
    job.refresh_from_db()
    return (job.status, job.current_step, job.total_steps, job.adapter_uri,
            tuple(MetricPoint.objects.filter(job=job).order_by("step").values_list("step", flat=True)),
            tuple(Checkpoint.objects.filter(job=job).order_by("step").values_list("step", flat=True)))


def test_replayed_and_shuffled_events_are_harmless(organization, client):
    in_order = make_running_job(organization, status=states.PROVISIONING)
    for ev in training_events(in_order):
        assert signed_post(client, ev, in_order.webhook_secret).status_code == 200
    expected = _final_state(in_order)
    assert expected[0] == states.COMPLETED

    rng = random.Random(7)
    trials = 8
    for trial in range(trials):
        job = make_running_job(organization, status=states.PROVISIONING)
        events = training_events(job)
        deliveries = [ev for ev in events for _ in range(rng.randint(1, 4))]
        rng.shuffle(deliveries)
        steps_seen = []
        for ev in deliveries:
            assert signed_post(client, ev, job.webhook_secret).status_code == 200  # inside the late window
            job.refresh_from_db()
            steps_seen.append(job.current_step)
        assert steps_seen == sorted(steps_seen), "progress went backwards"
        got = _final_state(job)
        # Events overtaken by `completed` are kept as late events: the same final state.
        assert got == expected
        assert JobEvent.objects.filter(job=job, source="pod").count() <= len(events)
        assert len(set(JobEvent.objects.filter(job=job).values_list("event_id", flat=True))) == \
            JobEvent.objects.filter(job=job).count()
    print(f"\nreplay/shuffle: {trials} shuffled streams, each event delivered 1-4 times: duplicates stored 0, final state as in order {trials}/{trials}")


def test_events_of_an_old_attempt_are_stored_but_not_applied(organization, client):
    job = make_running_job(organization, status=states.TRAINING, attempt=2)
    old = pod_event(job, 5, "completed", attempt=1)
    response = signed_post(client, old, job.webhook_secret)
    assert response.status_code == 200 and response.json()["applied"] is False
    job.refresh_from_db()
    assert job.status == states.TRAINING


def test_failed_event_records_class_and_fix(job, client):
    ev = pod_event(job, 1, "failed", data={"error_class": "cuda_oom", "message": "CUDA out of memory at step 212",
                                           "suggestion": "halve micro_batch_size", "fix": {"micro_batch_size": 1,
                                                                                          "gradient_accumulation_steps": 8}})
    assert signed_post(client, ev, job.webhook_secret).status_code == 200
    job.refresh_from_db()
    assert job.status == states.FAILED and job.error_class == "cuda_oom"
    assert job.error_fix == {"micro_batch_size": 1, "gradient_accumulation_steps": 8}
    # Kept for the pod's late events (POD_EVENT_LATE_WINDOW_S), erased after (test_jobs_late_events.py).
    assert job.webhook_secret and job.finished_at


def test_body_must_match_header(job, client):
    ev = pod_event(job, 1, "log")
    body = dumps({**ev.to_dict(), "job_id": "00000000-0000-0000-0000-000000000000"})
    from gpu_worker import signing
    response = signed_post(client, ev, job.webhook_secret, body=body,
                           headers=signing.sign_headers(job.webhook_secret, ev.event_id, body))
    assert response.status_code == 400



@pytest.mark.parametrize("type_,data,message", [
    ("checkpoint_saved", {"step": 4, "uri": "file:///c", "bytes": "many"}, "data.bytes must be a number"),
    ("completed", {"artifacts": "file:///adapter"}, "data.artifacts must be an object"),
    ("failed", {"error_class": "oom", "fix": ["micro_batch_size", 1]}, "data.fix must be an object"),
    ("metrics", {"points": [{"step": 3, "loss": "low"}]}, "data.points[0].loss must be a number"),
    ("metrics", {"loss": {"value": 1.0}}, "data.loss must be a number or null"),
    ("log", {"level": "info", "message": ["not", "text"]}, "data.message must be a string"),
])
def test_a_payload_that_does_not_fit_its_contract_is_refused_with_the_field(job, client, type_, data, message):
    """Each event type's data is parsed once, at the webhook, into its dataclass
    (gpu_worker.contracts.PAYLOADS): a payload that does not fit is a 400 naming the field, and
    nothing is stored."""
    response = signed_post(client, pod_event(job, 1, type_, data=data), job.webhook_secret)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "malformed" and message in error["message"], error
    assert not JobEvent.objects.filter(job=job, source=JobEvent.SOURCE_POD).exists()
    job.refresh_from_db()
    assert job.status == states.PROVISIONING


def test_completed_reads_the_adapter_from_the_pods_artifacts(job, client):
    ev = pod_event(job, 1, "completed", step=9, data={
        "artifacts": {"adapter_uri": "file:///out/adapter", "adapter_files": ["adapter_model.safetensors"]},
        "final_metrics": {"step": 9, "total_steps": 9, "loss": 0.4}})
    assert signed_post(client, ev, job.webhook_secret).status_code == 200
    job.refresh_from_db()
    assert job.status == states.COMPLETED and job.adapter_uri == "file:///out/adapter"
    assert (job.current_step, job.total_steps) == (9, 9) and job.result["final_metrics"]["loss"] == 0.4
