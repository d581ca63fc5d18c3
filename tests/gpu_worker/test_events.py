"""Signed events from a bounded background queue that never blocks training."""
import time

import pytest
from gw_helpers import SECRET, Receiver, free_port

from gpu_worker import signing
from gpu_worker.contracts import JobSpec, PodEvent
from gpu_worker.events import EventSender, event_id_for, read_events


def _spec(url, secret=SECRET):
    return JobSpec(job_id="job-ev", attempt=2, base_model="x", train_uri="file:///x", val_uri=None,
                   output_uri="file:///y", callback_url=url, webhook_secret=secret)


def _wait(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_events_verify_with_the_job_secret_only(tmp_path):
    rx = Receiver()
    try:
        sender = EventSender(_spec(rx.url + "/api/v1/pod-events/"), tmp_path)
        sender.emit("stage_changed", {"stage": "preprocessing"})
        sender.emit("metrics", {"step": 1, "loss": 2.5}, step=1)
        assert sender.close(deadline_s=5)
    finally:
        rx.close()
    assert len(rx.requests) == 2
    for n, req in enumerate(rx.requests, 1):
        assert req["path"] == "/api/v1/pod-events/"
        msg_id = signing.verify(SECRET, req["headers"], req["body"])
        event = PodEvent.from_dict(__import__("json").loads(req["body"]))
        assert msg_id == event.event_id == event_id_for("job-ev", 2, n)
        assert event.seq == n and event.job_id == "job-ev" and event.attempt == 2
        with pytest.raises(signing.SignatureError):
            signing.verify("whsec_" + "b3RoZXItc2VjcmV0", req["headers"], req["body"])
        with pytest.raises(signing.SignatureError):
            signing.verify(SECRET, req["headers"], req["body"] + b" ")
    assert [e["seq"] for e in read_events(tmp_path / "events.jsonl")] == [1, 2]


def test_unreachable_receiver_does_not_block_and_delivery_resumes(tmp_path):
    port = free_port()
    sender = EventSender(_spec(f"http://127.0.0.1:{port}/hook"), tmp_path, max_queue=16,
                         backoff_initial_s=0.05, backoff_max_s=0.2, request_timeout_s=1)
    started = time.perf_counter()
    sender.emit("stage_changed", {"stage": "training"})
    for step in range(1, 201):
        sender.emit("metrics", {"step": step}, step=step)
    sender.emit("checkpoint_saved", {"step": 200, "uri": "file:///c"}, step=200)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"emitting 202 events took {elapsed:.2f}s with the receiver down"
    assert sender.dropped > 0 and sender.pending() <= 17
    time.sleep(0.3)  # a few failed attempts
    rx = Receiver(port=port)
    try:
        assert _wait(lambda: sender.pending() == 0)
        sender.emit("completed", {"ok": True})
        assert sender.close(deadline_s=5)
    finally:
        rx.close()
    got = rx.events()
    types = [e["type"] for e in got]
    # Nothing important was dropped; only superseded metrics were.
    assert types[0] == "stage_changed" and "checkpoint_saved" in types and types[-1] == "completed"
    assert [e["seq"] for e in got] == sorted(e["seq"] for e in got)
    assert got[types.index("checkpoint_saved") - 1]["data"] == {"step": 200}  # the newest metrics survived
    # The local log has everything, dropped metrics included.
    assert len(read_events(tmp_path / "events.jsonl")) == 203


def test_full_queue_drops_metrics_never_important_events(tmp_path):
    port = free_port()
    sender = EventSender(_spec(f"http://127.0.0.1:{port}/hook"), tmp_path, max_queue=4,
                         backoff_initial_s=5, request_timeout_s=0.2)
    for step in range(10):
        sender.emit("metrics", {"step": step}, step=step)
    for stage in ("a", "b", "c", "d", "e", "f"):
        sender.emit("log", {"message": stage})
    with sender._cond:
        queued = list(sender._queue) + ([sender._in_flight] if sender._in_flight else [])
    assert sum(1 for e in queued if e.type == "log") == 6
    sender.close(deadline_s=0.2)


def test_close_respects_its_deadline_when_the_receiver_is_down(tmp_path):
    sender = EventSender(_spec(f"http://127.0.0.1:{free_port()}/hook"), tmp_path,
                         backoff_initial_s=0.05, request_timeout_s=0.5)
    sender.emit("failed", {"error_class": "unknown"})
    started = time.monotonic()
    assert sender.close(deadline_s=0.5) is False
    assert time.monotonic() - started < 3


def test_rejected_event_is_not_retried_forever(tmp_path):
    rx = Receiver(status=400)
    try:
        sender = EventSender(_spec(rx.url), tmp_path)
        sender.emit("log", {"message": "x"})
        assert _wait(lambda: sender.pending() == 0, 5)
        sender.close(deadline_s=1)
    finally:
        rx.close()
    assert len(rx.requests) == 1


def test_without_callback_only_the_local_file(tmp_path):
    sender = EventSender(_spec(None), tmp_path)
    sender.emit("log", {"message": "hello"})
    assert sender.close(deadline_s=0.1)
    assert read_events(tmp_path / "events.jsonl")[0]["data"] == {"message": "hello"}
