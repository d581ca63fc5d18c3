"""Items 1 and 2 of issue 10: webhook forgery at scale, and replay / order / concurrency with
Hypothesis. Real webhook view, real services, real PostgreSQL."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections
from django.test import Client
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from tests.jobs.factories import make_running_job, signed_post, training_events
from tests.reliability.figures import record, size
from tests.reliability.forgeries import forgery_classes, post
from training import states
from training.models import Checkpoint, JobEvent, MetricPoint

PER_CLASS = size(50, 1000)


@pytest.mark.slow
@pytest.mark.django_db
def test_forgery_at_scale(organization, client):
    job = make_running_job(organization, status=states.TRAINING)
    other = make_running_job(organization, status=states.TRAINING)
    figures, codes = {}, {}
    t0 = time.monotonic()
    for name, build in forgery_classes(job, other).items():
        accepted = 0
        for i in range(PER_CLASS):
            response = post(client, *build(i))
            codes.setdefault(name, set()).add(response.status_code)
            accepted += response.status_code == 200 and response.json().get("stored", False)
        figures[name] = accepted
    elapsed = time.monotonic() - t0
    for name, accepted in figures.items():
        record("1 webhook forgery", f"{name}: accepted", f"{accepted}/{PER_CLASS}",
               target=f"{PER_CLASS}/{PER_CLASS}" if name == "valid" else "0", size=f"{PER_CLASS}/class")
    record("1 webhook forgery", "requests per second (test client)", f"{8 * PER_CLASS / elapsed:.0f}")
    assert figures.pop("valid") == PER_CLASS, codes
    assert all(v == 0 for v in figures.values()), (figures, codes)
    assert codes["wrong secret"] == codes["another job's secret"] == codes["flipped body byte"] == {401}
    assert JobEvent.objects.filter(job=job, source="pod").count() == PER_CLASS


# ------------------------------------------------------------------ replay, order, concurrency

def _state(job):
    job.refresh_from_db()
    return {
        "status": job.status, "current_step": job.current_step, "total_steps": job.total_steps,
        "adapter_uri": job.adapter_uri,
        "metric_steps": tuple(MetricPoint.objects.filter(job=job).order_by("step").values_list("step", flat=True)),
        "checkpoints": tuple(Checkpoint.objects.filter(job=job).order_by("step").values_list("step", flat=True)),
    }


ORDER = {s: i for i, s in enumerate((states.PROVISIONING,) + states.POD_STAGES + (states.COMPLETED,))}


def _deliver(event, secret, log, lock):
    try:
        response = signed_post(Client(), event, secret)
        with lock:
            log.append(response.status_code)
    finally:
        connections.close_all()  # this thread's own connection


EXAMPLES = size(6, 60)
REPLAY = {"examples": 0, "deliveries": 0, "concurrent": 0, "dup_effects": 0, "backwards": 0,
          "final_differs": 0, "final_differs_fields": set(), "codes": set()}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_replay_shuffle_concurrent(organization):
    reference = make_running_job(organization, status=states.PROVISIONING)
    for ev in training_events(reference):
        assert signed_post(Client(), ev, reference.webhook_secret).status_code == 200
    expected = _state(reference)
    assert expected["status"] == states.COMPLETED

    @hsettings(max_examples=EXAMPLES, deadline=None, database=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                      HealthCheck.data_too_large])
    @given(data=st.data())
    def run(data):
        job = make_running_job(organization, status=states.PROVISIONING)
        secret = job.webhook_secret
        events = training_events(job)
        copies = data.draw(st.lists(st.integers(1, 10), min_size=len(events), max_size=len(events)), label="copies")
        deliveries = [ev for ev, n in zip(events, copies) for _ in range(n)]
        deliveries = data.draw(st.permutations(deliveries), label="order")
        # Cut the shuffled deliveries into batches; a batch is sent concurrently (own connections).
        batches, i = [], 0
        while i < len(deliveries):
            n = data.draw(st.integers(1, 6), label="batch")
            batches.append(deliveries[i:i + n])
            i += n
        log, lock, seen_steps, seen_status = [], threading.Lock(), [], []
        with ThreadPoolExecutor(max_workers=6) as pool:
            for batch in batches:
                list(pool.map(lambda ev: _deliver(ev, secret, log, lock), batch))
                job.refresh_from_db()
                seen_steps.append(job.current_step)
                seen_status.append(job.status)
                REPLAY["concurrent"] += len(batch) if len(batch) > 1 else 0
        REPLAY["examples"] += 1
        REPLAY["deliveries"] += len(deliveries)
        REPLAY["codes"] |= set(log)
        # Progress never backwards: the observed step and stage, and every audited move.
        backwards = sum(1 for a, b in zip(seen_steps, seen_steps[1:]) if b < a)
        backwards += sum(1 for a, b in zip(seen_status, seen_status[1:]) if ORDER.get(b, 99) < ORDER.get(a, 99))
        moves = JobEvent.objects.filter(job=job, type="transition").values_list("from_status", "to_status")
        backwards += sum(1 for a, b in moves if a in ORDER and b in ORDER and ORDER[b] < ORDER[a])
        # Duplicate side effects: an event stored twice, a move made twice, a point or checkpoint twice.
        ids = list(JobEvent.objects.filter(job=job).values_list("event_id", flat=True))
        dup = len(ids) - len(set(ids))
        targets = [b for _a, b in moves]
        dup += len(targets) - len(set(targets))
        dup += JobEvent.objects.filter(job=job, source="pod").count() > len(events)
        REPLAY["dup_effects"] += dup
        REPLAY["backwards"] += backwards
        got = _state(job)
        differs = {k for k in expected if got[k] != expected[k]}
        REPLAY["final_differs"] += bool(differs)
        REPLAY["final_differs_fields"] |= differs
        # Every delivery is inside the late window: nothing is refused, nothing is lost.
        assert set(log) == {200}, log
        assert dup == 0 and backwards == 0
        assert got == expected, {k: (got[k], expected[k]) for k in differs}

    try:
        run()
    finally:
        r = REPLAY
        label = "2 replay/order"
        record(label, "shuffled streams (each event 1-10 times, batches of 1-6 concurrent)",
               f"{r['examples']} streams, {r['deliveries']} deliveries, {r['concurrent']} concurrent",
               size=f"{EXAMPLES} examples")
        record(label, "duplicate side effects", r["dup_effects"], target="0")
        record(label, "progress backwards", r["backwards"], target="0")
        record(label, "final state differs from in-order", f"{r['final_differs']}/{r['examples']}"
               + (f" ({', '.join(sorted(r['final_differs_fields']))})" if r["final_differs_fields"] else ""),
               target="0")
    assert r["final_differs"] == 0


@pytest.mark.django_db
def test_late_events_after_completion_are_kept(organization, client):
    """The minimal shuffle: `completed` overtakes the last metrics and checkpoint events (a proxy
    or a retry can reorder). The final state equals the in-order one, and the late events moved
    nothing (one move to `completed`, made by `completed` itself)."""
    reference = make_running_job(organization, status=states.PROVISIONING)
    for ev in training_events(reference):
        signed_post(client, ev, reference.webhook_secret)
    job = make_running_job(organization, status=states.PROVISIONING)
    events = training_events(job)
    completed = events.pop()
    for ev in events[:-5] + [completed] + events[-5:]:
        response = signed_post(client, ev, job.webhook_secret)
        assert response.status_code == 200 and response.json()["stored"], response.content
    want, got = _state(reference), _state(job)
    assert got == want
    late = [signed_post(client, ev, job.webhook_secret).json() for ev in events[-5:]]  # replayed: duplicates
    assert all(r["duplicate"] for r in late)
    moves = list(JobEvent.objects.filter(job=job, type="transition", to_status__in=states.TERMINAL_STATES)
                 .values_list("to_status", flat=True))
    assert moves == [states.COMPLETED]
