"""Websockets against a running daphne with a real client: snapshot then live updates from
posted pod events, metric batching, the organization's list, and every refusal (foreign origin,
foreign job, no user, used ticket)."""
from __future__ import annotations

import json
import time

import pytest
from django.test import Client
from websockets.sync.client import connect

from accounts.models import Role
from tests.jobs.factories import make_running_job, signed_post, training_events
from tests.websockets.ws_support import session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _open(server, path, *, cookie=None, origin=None, no_origin=False):
    headers = {"Cookie": cookie} if cookie else {}
    return connect(server.ws + path, origin=None if no_origin else (origin or server.http), additional_headers=headers,
                   open_timeout=10)


def _recv(ws, timeout=10.0):
    return json.loads(ws.recv(timeout=timeout))


def _recv_until(ws, predicate, timeout=15.0):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = _recv(ws, timeout=max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            break
        seen.append(message)
        if predicate(message):
            return seen
    raise AssertionError(f"not seen in {timeout} s; got kinds {[m.get('kind') for m in seen]}")


def _refused(server, path, **kw) -> int:
    """The close code of a refused socket (after its one `refused` message, whose code agrees)."""
    from websockets.exceptions import ConnectionClosed

    with _open(server, path, **kw) as ws:
        message = _recv(ws)
        assert message["kind"] == "refused" and message["reason"], message
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd.code == message["code"], (info.value.rcvd, message)
    return message["code"]


def test_snapshot_then_live_updates_from_pod_events(daphne_server, organization, make_user):
    user = make_user("eng", organization)
    job = make_running_job(organization, status="provisioning", created_by=user, name="live")
    events = training_events(job, steps=6)
    poster = Client()
    for event in events[:4]:  # stages, and the first metrics point
        assert signed_post(poster, event, job.webhook_secret).status_code == 200
    with _open(daphne_server, f"/ws/jobs/{job.pk}/", cookie=session_cookie(user)) as ws:
        snapshot = _recv(ws)
        assert snapshot["kind"] == "snapshot"
        assert snapshot["job"]["status"] == "training" and snapshot["job"]["step"] == 1
        assert snapshot["metrics"]["series"]["loss"] == [[1, pytest.approx(2.9)]]
        assert [e["to_status"] for e in snapshot["events"] if e["type"] == "transition"][-1] == "training"
        assert snapshot["cost"] is not None and "spent" in snapshot["cost"]
        for event in events[4:]:
            assert signed_post(poster, event, job.webhook_secret).status_code == 200
        seen = _recv_until(ws, lambda m: m.get("kind") == "status" and m.get("status") == "completed")
    kinds = {m["kind"] for m in seen}
    assert {"metrics", "checkpoint", "stage", "status"} <= kinds, kinds
    steps = sorted({p["step"] for m in seen if m["kind"] == "metrics" for p in m["points"]})
    assert steps == [2, 3, 4, 5, 6]
    assert [m["step"] for m in seen if m["kind"] == "checkpoint"] == [2, 4, 6]
    # Checkpoints are named by id (the REST and /v1/ checkpoint lists), never by storage path.
    from training.models import Checkpoint

    ids = dict(Checkpoint.objects.filter(job=job).values_list("step", "pk"))
    assert [(m["id"], m["name"]) for m in seen if m["kind"] == "checkpoint"] == [(ids[s], f"step-{s}") for s in (2, 4, 6)]
    assert "file://" not in json.dumps(seen) and all("uri" not in m for m in seen if m["kind"] == "checkpoint")
    # order kept: every metric point arrives before the completion
    last_metrics = max(i for i, m in enumerate(seen) if m["kind"] == "metrics")
    assert last_metrics < len(seen) - 1


def _progress_step(message):
    progress = message.get("progress") if message.get("kind") == "metrics" else message
    return (progress or {}).get("step") if (progress or {}).get("kind") == "progress" else None


def test_metric_messages_batched_to_ten_per_second(daphne_server, organization, make_user, settings):
    from core.broadcast import broadcast_job_update

    user = make_user("eng", organization)
    job = make_running_job(organization, status="training", created_by=user)
    with _open(daphne_server, f"/ws/jobs/{job.pk}/", cookie=session_cookie(user)) as ws:
        assert _recv(ws)["kind"] == "snapshot"
        started = time.monotonic()
        total = 400
        for step in range(1, total + 1):  # as fast as Redis takes them: far above 10 a second
            broadcast_job_update(job.pk, {"kind": "metrics", "points": [{"step": step, "loss": 1.0 / step}]})
            broadcast_job_update(job.pk, {"kind": "progress", "status": "training", "step": step, "total_steps": total})
        published_in = time.monotonic() - started
        # The last progress may travel with the last points or, when a flush fell between the two
        # publishes, on its own just after them: wait for whichever carries step `total`.
        messages = _recv_until(ws, lambda m: _progress_step(m) == total, timeout=20)
        elapsed = time.monotonic() - started
    metric_messages = [m for m in messages if m["kind"] in ("metrics", "progress")]
    steps = [p["step"] for m in metric_messages if m["kind"] == "metrics" for p in m["points"]]
    assert sorted(set(steps)) == list(range(1, total + 1))  # nothing lost
    assert len(metric_messages) <= 10 * elapsed + 2, (len(metric_messages), elapsed)
    assert _progress_step(metric_messages[-1]) == total
    print(f"\n{2 * total} updates published in {published_in:.2f} s → {len(metric_messages)} messages "
          f"in {elapsed:.2f} s")


def test_job_list_socket_is_the_organizations(daphne_server, organization, other_organization, make_user):
    from training.services.jobs import job_cancel

    user = make_user("eng", organization)
    mine = make_running_job(organization, status="training", name="mine")
    theirs = make_running_job(other_organization, status="training", name="theirs")
    with _open(daphne_server, "/ws/jobs/", cookie=session_cookie(user)) as ws:
        snapshot = _recv(ws)
        assert [j["id"] for j in snapshot["jobs"]] == [str(mine.pk)]
        job_cancel(job_id=theirs.pk)
        job_cancel(job_id=mine.pk)
        seen = _recv_until(ws, lambda m: m.get("kind") == "status")
    assert seen[-1]["job_id"] == str(mine.pk) and seen[-1]["status"] == "cancelled"
    assert all(m.get("job_id") != str(theirs.pk) for m in seen)


def test_refusals(daphne_server, organization, other_organization, make_user):
    """Each refusal has its own close code and reason (docs/api.md#websockets)."""
    from accounts.models import Membership

    user = make_user("eng", organization)
    outsider = make_user("outsider", other_organization, Role.ADMIN)
    loner = make_user("loner", organization)
    Membership.objects.filter(user=loner).delete()
    job = make_running_job(organization, status="training")
    path = f"/ws/jobs/{job.pk}/"
    assert _refused(daphne_server, path, cookie=session_cookie(user), origin="http://evil.example") == 4403
    # Same host, another port (or the default one): another origin.
    port = int(daphne_server.http.rsplit(":", 1)[1])
    assert _refused(daphne_server, path, cookie=session_cookie(user), origin=f"http://127.0.0.1:{port + 1}") == 4403
    assert _refused(daphne_server, path, cookie=session_cookie(user), origin="http://127.0.0.1") == 4403
    assert _refused(daphne_server, path, cookie=session_cookie(outsider)) == 4404  # same as a missing job
    assert _refused(daphne_server, path) == 4401  # anonymous
    assert _refused(daphne_server, path, cookie=session_cookie(loner)) == 4403  # no organization
    assert _refused(daphne_server, "/ws/jobs/", origin="https://evil.example") == 4403
    missing = "/ws/jobs/00000000-0000-0000-0000-000000000000/"
    assert _refused(daphne_server, missing, cookie=session_cookie(user)) == 4404
    assert _refused(daphne_server, "/ws/jobs/not-a-uuid/", cookie=session_cookie(user)) == 4404
    assert _refused(daphne_server, "/ws/nowhere/", cookie=session_cookie(user)) == 4404
    with _open(daphne_server, path, cookie=session_cookie(user)) as ws:  # the control
        assert _recv(ws)["kind"] == "snapshot"


def test_bad_frames_are_ignored(daphne_server, organization, make_user):
    user = make_user("eng", organization)
    job = make_running_job(organization, status="training")
    with _open(daphne_server, f"/ws/jobs/{job.pk}/", cookie=session_cookie(user)) as ws:
        assert _recv(ws)["kind"] == "snapshot"
        for frame in ("not json", "[1, 2]", "{\"action\": ", b"\xff\xfe"):
            ws.send(frame)
        ws.send(json.dumps({"action": "ping"}))
        assert _recv(ws)["kind"] == "pong"  # still open


def test_ticket_for_token_clients_single_use(daphne_server, organization, other_organization, make_user):
    from rest_framework.test import APIClient

    user = make_user("frontend", organization, Role.VIEWER)
    job = make_running_job(organization, status="training")
    api = APIClient()
    api.force_authenticate(user)
    ticket = api.post("/api/v1/ws-tickets/").json()["ticket"]
    with _open(daphne_server, f"/ws/jobs/{job.pk}/?ticket={ticket}") as ws:
        assert _recv(ws)["kind"] == "snapshot"
    assert _refused(daphne_server, f"/ws/jobs/{job.pk}/?ticket={ticket}") == 4401  # used
    assert _refused(daphne_server, f"/ws/jobs/{job.pk}/?ticket={ticket[:-2]}xx") == 4401  # forged
    # A client with no Origin (a server-side frontend, a script) authenticates with a ticket.
    ticket = api.post("/api/v1/ws-tickets/").json()["ticket"]
    with _open(daphne_server, f"/ws/jobs/{job.pk}/?ticket={ticket}", no_origin=True) as ws:
        assert _recv(ws)["kind"] == "snapshot"
    assert _refused(daphne_server, f"/ws/jobs/{job.pk}/", no_origin=True) == 4401
    outsider = make_user("outsider", other_organization, Role.ADMIN)
    api.force_authenticate(outsider)
    foreign_ticket = api.post("/api/v1/ws-tickets/").json()["ticket"]
    assert _refused(daphne_server, f"/ws/jobs/{job.pk}/?ticket={foreign_ticket}") == 4404
