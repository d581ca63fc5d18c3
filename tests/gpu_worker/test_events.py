"""Signed events from a bounded background queue that never blocks training."""
import json
import time

import pytest
from gw_helpers import SECRET, Receiver, free_port

from gpu_worker import signing
from gpu_worker.contracts import JobSpec, PodEvent
from gpu_worker.events import BATCH_MAX_BYTES, BATCH_MAX_POINTS, EventSender, event_id_for, read_events


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
    got = rx.emitted()
    types = [e["type"] for e in got]
    # Nothing important was dropped; only the oldest metrics were (the queue's bound).
    assert types[0] == "stage_changed" and "checkpoint_saved" in types and types[-1] == "completed"
    assert [e["seq"] for e in got] == sorted(set(e["seq"] for e in got))  # in order, none twice
    assert got[types.index("checkpoint_saved") - 1]["data"] == {"step": 200}  # the newest metrics survived
    # The backlog went out batched: fewer requests than events.
    assert len(rx.requests) < len(got)
    assert sender.delivered == len(got) and sender.requests == len(rx.requests)
    assert sender.delivered + sender.dropped == 203
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


def _backlog(sender, events):
    """Emit `events` [(type, data, step)] while the sender thread cannot take any: a backed-up queue."""
    with sender._cond:  # a reentrant lock: emit takes it too
        for type_, data, step in events:
            sender.emit(type_, data, step=step)


def _metrics(first, last):
    return [("metrics", {"step": s, "loss": round(1 / s, 6)}, s) for s in range(first, last + 1)]


@pytest.mark.slow
def test_an_outage_backlog_goes_out_in_few_requests_with_every_point_once_in_order(tmp_path):
    port = free_port()
    sender = EventSender(_spec(f"http://127.0.0.1:{port}/hook"), tmp_path,
                         backoff_initial_s=0.05, backoff_max_s=0.2, request_timeout_s=1)
    emitted = [("stage_changed", {"stage": "training"}, 0), *_metrics(1, 150),
               ("checkpoint_saved", {"step": 150, "uri": "file:///c"}, 150), *_metrics(151, 180),
               ("log", {"message": "half way"}, 180), *_metrics(181, 185)]
    for type_, data, step in emitted:
        sender.emit(type_, data, step=step)
    time.sleep(0.3)  # the receiver is down: a few failed attempts
    rx = Receiver(port=port)
    try:
        assert _wait(lambda: sender.pending() == 0)
        assert sender.close(deadline_s=5)
    finally:
        rx.close()
    got = rx.emitted()
    # No point lost or sent twice, and the order of emission kept (checkpoint and log are barriers).
    assert [e["seq"] for e in got] == list(range(1, len(emitted) + 1))
    assert [(e["type"], e["data"], e["step"]) for e in got] == emitted
    assert sender.dropped == 0 and sender.delivered == len(emitted)
    # stage (or the first metrics) alone while the receiver was down, then a few full batches.
    assert len(rx.requests) <= 8, [len(e["data"].get("points", [0])) for e in rx.events()]
    for req in rx.requests:
        msg_id = signing.verify(SECRET, req["headers"], req["body"])
        event = json.loads(req["body"])
        assert msg_id == event["event_id"] == event_id_for("job-ev", 2, event["seq"])
        points = event["data"].get("points")
        if points is not None:
            # A batch takes the id, seq and step of its last point.
            assert event["seq"] == points[-1]["seq"] and event["step"] == points[-1]["step"]
            assert len(points) <= BATCH_MAX_POINTS and len(req["body"]) <= BATCH_MAX_BYTES


@pytest.mark.slow
def test_a_failed_batch_is_retried_unchanged(tmp_path):
    rx = Receiver(status=503)
    try:
        sender = EventSender(_spec(rx.url), tmp_path, backoff_initial_s=0.05, backoff_max_s=0.1)
        _backlog(sender, _metrics(1, 20))
        assert _wait(lambda: len(rx.requests) >= 3, 5)
        # New events behind the failing batch are not folded into it: its id must keep covering
        # the same points, or the receiver's dedup by id could drop or double points.
        _backlog(sender, _metrics(21, 25))
        assert _wait(lambda: len(rx.requests) >= 5, 5)
        rx.status = 200
        assert _wait(lambda: sender.pending() == 0, 5)
        assert sender.close(deadline_s=1)
    finally:
        rx.close()
    bodies = [json.loads(r["body"]) for r in rx.requests]
    first = bodies[0]
    assert [p["seq"] for p in first["data"]["points"]] == list(range(1, 21))
    retries = [b for b in bodies if b["event_id"] == first["event_id"]]
    assert len(retries) >= 5 and all(b == first for b in retries)
    assert bodies[-1]["data"]["points"] == [{"step": s, "loss": round(1 / s, 6), "seq": s} for s in range(21, 26)]
    assert [b["event_id"] for b in bodies] == [first["event_id"]] * len(retries) + [bodies[-1]["event_id"]]


@pytest.mark.slow
def test_batches_respect_their_bounds_and_a_lone_metrics_event_is_sent_as_is(tmp_path):
    rx = Receiver()
    try:
        sender = EventSender(_spec(rx.url), tmp_path)
        _backlog(sender, _metrics(1, 250))
        assert _wait(lambda: sender.pending() == 0)
        big = [("metrics", {"step": s, "note": "x" * 2000}, s) for s in range(251, 301)]
        _backlog(sender, big)
        assert _wait(lambda: sender.pending() == 0)
        sender.emit("metrics", {"step": 301}, step=301)
        assert sender.close(deadline_s=5)
    finally:
        rx.close()
    sizes = [len(e["data"]["points"]) if "points" in e["data"] else 1 for e in rx.events()]
    assert sizes[:3] == [BATCH_MAX_POINTS, BATCH_MAX_POINTS, 50]
    assert all(len(r["body"]) <= BATCH_MAX_BYTES for r in rx.requests)
    assert len(sizes) > 5 and sum(sizes[3:-1]) == 50  # the 2 KB points needed several requests
    assert rx.events()[-1]["data"] == {"step": 301}  # not backed up: the plain event, unchanged
    assert [e["seq"] for e in rx.emitted()] == list(range(1, 302))


@pytest.mark.slow
def test_other_events_are_barriers_and_batching_can_be_turned_off(tmp_path):
    stream = [*_metrics(1, 5), ("checkpoint_saved", {"step": 5, "uri": "file:///c"}, 5), *_metrics(6, 10),
              ("log", {"message": "x"}, 10), *_metrics(11, 11), ("completed", {"ok": True}, 11)]
    shapes = {}
    for batch in (True, False):
        rx = Receiver()
        try:
            sender = EventSender(_spec(rx.url), tmp_path / str(batch), batch=batch)
            _backlog(sender, stream)
            assert sender.close(deadline_s=5)
        finally:
            rx.close()
        shapes[batch] = [(e["type"], len(e["data"].get("points", [])), e["seq"]) for e in rx.events()]
        assert [(e["type"], e["data"], e["step"]) for e in rx.emitted()] == stream
    assert shapes[True] == [("metrics", 5, 5), ("checkpoint_saved", 0, 6), ("metrics", 5, 11), ("log", 0, 12),
                            ("metrics", 0, 13), ("completed", 0, 14)]
    assert shapes[False] == [(t, 0, n) for n, (t, _d, _s) in enumerate(stream, 1)]


@pytest.mark.slow
def test_an_outage_is_retried_at_the_backoff_rate_not_the_emit_rate(tmp_path):
    """New events during an outage do not cut the backoff short (they used to: one failed request
    per emitted event, and the backoff doubled on each, so a quiet pod then waited the maximum)."""
    rx = Receiver(status=503)
    try:
        sender = EventSender(_spec(rx.url + "/hook"), tmp_path, backoff_initial_s=0.2, backoff_max_s=0.4,
                             request_timeout_s=1)
        started = time.monotonic()
        step = 0
        while time.monotonic() - started < 1.5:  # 1.5 s outage, a metrics event every 10 ms
            step += 1
            sender.emit("metrics", {"step": step}, step=step)
            time.sleep(0.01)
        failed = len(rx.requests)
        # First try at once, then waits of 0.1-0.2 s, 0.2-0.4 s, then at most 0.4 s: 5-10 tries in 1.5 s,
        # not one per emitted event (about 150).
        assert 3 <= failed <= 10, (failed, step)
        rx.status = 200
        recovered = time.monotonic()
        assert _wait(lambda: sender.pending() == 0, timeout=5)
        # The quiet pod retried within one maximum backoff of the receiver's return.
        assert time.monotonic() - recovered < 2.0
        assert sender.close(deadline_s=5)
    finally:
        rx.close()
    last = json.loads(rx.requests[-1]["body"])
    assert [p["step"] for p in (last["data"].get("points") or [last["data"]])][-1] == step
    assert sender.delivered == step and sender.dropped == 0


def test_close_tries_at_once_even_in_the_middle_of_a_backoff(tmp_path):
    rx = Receiver(status=503)
    try:
        sender = EventSender(_spec(rx.url + "/hook"), tmp_path, backoff_initial_s=30, backoff_max_s=30,
                             request_timeout_s=1)
        sender.emit("completed", {"ok": True})
        assert _wait(lambda: len(rx.requests) == 1)
        rx.status = 200
        started = time.monotonic()
        assert sender.close(deadline_s=5)  # does not wait out the 15-30 s backoff
        assert time.monotonic() - started < 2
    finally:
        rx.close()
    assert json.loads(rx.requests[-1]["body"])["type"] == "completed" and len(rx.requests) == 2


def test_linger_waits_only_while_nothing_but_metrics_is_queued():
    import collections

    from gpu_worker.events import linger_s

    def ev(seq, type_="metrics"):
        return PodEvent(event_id=event_id_for("j", 1, seq), job_id="j", attempt=1, seq=seq, type=type_,
                        timestamp=0.0, step=seq, data={})

    metrics = collections.deque([ev(1), ev(2)])
    assert linger_s(metrics, last_request_at=10.0, min_interval_s=0.5, now=10.2) == pytest.approx(0.3)
    assert linger_s(metrics, last_request_at=10.0, min_interval_s=0.5, now=10.6) == 0.0  # the interval is over
    assert linger_s(metrics, last_request_at=None, min_interval_s=0.5, now=10.2) == 0.0  # the first request
    assert linger_s(metrics, last_request_at=10.0, min_interval_s=0.0, now=10.2) == 0.0  # turned off
    with_checkpoint = collections.deque([ev(1), ev(2, "checkpoint_saved")])
    assert linger_s(with_checkpoint, last_request_at=10.0, min_interval_s=0.5, now=10.2) == 0.0
    # A full batch goes at once: a pod stepping faster than a batch per interval is not held back.
    assert linger_s(metrics, last_request_at=10.0, min_interval_s=0.5, now=10.2, full_at=2) == 0.0


@pytest.mark.slow
def test_a_fast_pod_sends_a_metrics_request_per_interval_and_other_events_at_once(tmp_path):
    rx = Receiver()
    try:
        sender = EventSender(_spec(rx.url), tmp_path, metrics_min_interval_s=0.3)
        started = time.monotonic()
        for step in range(1, 121):  # 100 steps a second for 1.2 s
            sender.emit("metrics", {"loss": 1.0 / step}, step=step)
            time.sleep(0.01)
        emitted_checkpoint = time.monotonic()
        sender.emit("checkpoint_saved", {"step": 120, "uri": "file:///c"}, step=120)
        assert _wait(lambda: any(json.loads(r["body"])["type"] == "checkpoint_saved" for r in rx.requests), 5)
        checkpoint_at = next(r["t"] for r in rx.requests if json.loads(r["body"])["type"] == "checkpoint_saved")
        assert sender.close(deadline_s=5)
    finally:
        rx.close()
    bodies = [json.loads(r["body"]) for r in rx.requests]
    metrics = [b for b in bodies if b["type"] == "metrics"]
    steps = [p["step"] for b in metrics for p in b["data"].get("points", [{"step": b["step"]}])]
    assert steps == list(range(1, 121))  # every point once, in order
    # 1.2 s of steps at most one metrics request per ~0.3 s (jittered +-20%): about 5, never 120
    # (a batch fills at 100 points, 1 s of these steps: the interval, not the batch, sets the pace).
    assert 3 <= len(metrics) <= 8, len(metrics)
    # Until the checkpoint (whose emit sends the metrics queued ahead of it at once), the metrics
    # requests were at least one jittered interval apart.
    before = [r["t"] for r in rx.requests if r["t"] < emitted_checkpoint]
    assert min(b - a for a, b in zip(before, before[1:])) >= 0.3 * 0.8 - 0.02
    # The checkpoint did not wait for the interval (its metrics went with it, just before).
    assert checkpoint_at - emitted_checkpoint < 0.2
    assert time.monotonic() - started < 5


@pytest.mark.slow
def test_a_pod_slower_than_the_interval_sends_each_point_at_once(tmp_path):
    rx = Receiver()
    try:
        sender = EventSender(_spec(rx.url), tmp_path, metrics_min_interval_s=0.2)
        emitted = []
        for step in range(1, 4):
            emitted.append(time.monotonic())
            sender.emit("metrics", {"loss": 1.0}, step=step)
            time.sleep(0.3)
        assert sender.close(deadline_s=5)
    finally:
        rx.close()
    assert len(rx.requests) == 3
    assert all(r["t"] - e < 0.15 for r, e in zip(rx.requests, emitted))


@pytest.mark.slow
def test_a_pod_faster_than_a_batch_per_interval_is_not_held_back(tmp_path):
    rx = Receiver()
    try:
        sender = EventSender(_spec(rx.url), tmp_path, metrics_min_interval_s=0.3)
        for step in range(1, 1201):  # about 1,000 steps a second: over 100 points per interval
            sender.emit("metrics", {"loss": 1.0}, step=step)
            if step % 10 == 0:
                time.sleep(0.01)
        assert sender.close(deadline_s=10)
    finally:
        rx.close()
    assert sender.dropped == 0  # held to one request per 0.3 s, the queue (256) would have overflowed
    bodies = [json.loads(r["body"]) for r in rx.requests]
    steps = [p["step"] for b in bodies for p in b["data"].get("points", [{"step": b["step"]}])]
    assert steps == list(range(1, 1201))
    assert len(bodies) <= 30
