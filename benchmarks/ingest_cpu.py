"""CPU per pod event in the web process, without HTTP or other processes: the ASGI application
called in-process with signed events, Django's handler vs the lean pod-events path
(training/webhooks_asgi.py), one event per request vs the pod's batches.

    python benchmarks/ingest_cpu.py [N] [--profile]

N requests per configuration (default 300), two rounds. `--profile` instead prints a cProfile of
the view's database work (verify, store, apply) over 500 metrics events. `--view` measures only that
work (no ASGI, one thread, one persistent connection) for requests of 1 and 5 points: the web
process's CPU and the CPU of its PostgreSQL backend (read from /proc, same machine), per request.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _support as S  # noqa: E402
from benchmarks.event_ingestion import job_stream, seed  # noqa: E402


def _scope(headers: dict[str, str]) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/api/v1/pod-events/", "raw_path": b"/api/v1/pod-events/", "query_string": b"", "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                        *((k.encode(), v.encode()) for k, v in headers.items())],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}


async def _post(app, event, secret) -> int:
    from asgiref.testing import ApplicationCommunicator

    from gpu_worker import signing

    body = event.to_json()
    comm = ApplicationCommunicator(app, _scope(signing.sign_headers(secret, event.event_id, body)))
    await comm.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await comm.receive_output(30)
    await comm.receive_output(30)
    try:
        await comm.wait(1)
    except Exception:  # noqa: BLE001 - the app has answered; its shutdown is not measured
        pass
    return start["status"]


def _requests(job: dict, seq: int, step: int, n: int, points: int) -> tuple[list, int, int]:
    """n requests of `points` metrics points each (the pod's batching), and the next seq and step."""
    from gpu_worker.events import next_request

    stream = job_stream(job, seq, step, n * points, with_stages=False)
    queue = collections.deque(stream)
    requests = []
    while queue:
        requests.append(next_request(queue, coalesce=points > 1, max_points=points))
    return requests, stream[-1].seq + 1, max(e.step for e in stream) + 1


def _view_call(job: dict, event):
    """The view's database work for one request (verify, store, apply), in this thread."""
    from gpu_worker import signing
    from training import webhooks

    body = event.to_json()
    headers = signing.sign_headers(job["secret"], event.event_id, body)
    return webhooks._verify_and_ingest(uuid.UUID(job["id"]), event.event_id, headers, body)


async def _compare(job: dict, n: int) -> list[list]:
    from config import asgi
    from training.webhooks_asgi import PodEventsApp

    apps = {"django": asgi.django_asgi_app, "lean": PodEventsApp(asgi.django_asgi_app)}
    rows, seq, step = [], 1, 1
    for rnd in range(2):
        for name, app in apps.items():
            for batch in (1, 100):
                requests, seq, step = _requests(job, seq, step, n, batch)
                statuses: collections.Counter = collections.Counter()
                cpu0 = time.process_time()
                for event, _count in requests:
                    statuses[await _post(app, event, job["secret"])] += 1
                cpu = time.process_time() - cpu0
                emitted = sum(count for _e, count in requests)
                rows.append([rnd, name, batch, len(requests), f"{cpu / len(requests) * 1000:.2f}",
                             f"{cpu / emitted * 1000:.3f}", dict(statuses), S.load_average()])
    return rows


def _profile(job: dict) -> None:
    import cProfile
    import pstats

    stream = job_stream(job, 1, 1, 600, with_stages=False)

    def one(event):
        return _view_call(job, event)

    for event in stream[:100]:  # warm caches and connections
        one(event)
    profiler = cProfile.Profile()
    cpu0 = time.process_time()
    profiler.enable()
    for event in stream[100:]:
        one(event)
    profiler.disable()
    print(f"{(time.process_time() - cpu0) / 500 * 1000:.2f} ms CPU per event (profiled)")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


def _backend_cpu_s(pid: int) -> float:
    import os

    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _view(job: dict, n: int) -> None:
    from django.db import connection

    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    rows, seq, step = [], 1, 1
    for rnd in range(3):
        for points in (1, 5):
            requests, seq, step = _requests(job, seq, step, n, points)
            requests = [event for event, _count in requests]
            for event in requests[:20]:  # warm
                _view_call(job, event)
            web0, pg0, wall0 = time.process_time(), _backend_cpu_s(backend), time.perf_counter()
            for event in requests[20:]:
                _view_call(job, event)
            k = len(requests) - 20
            rows.append([rnd, points, k, f"{(time.process_time() - web0) / k * 1000:.2f}",
                         f"{(_backend_cpu_s(backend) - pg0) / k * 1000:.2f}",
                         f"{(time.perf_counter() - wall0) / k * 1000:.2f}", S.load_average()])
    print(S.table("The view's database work per request (one thread, one connection, PostgreSQL)",
                  ["round", "points/request", "requests", "web ms CPU", "PostgreSQL ms CPU", "wall ms", "load"],
                  rows, command=f"python benchmarks/ingest_cpu.py {n} --view"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=300)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--view", action="store_true")
    args = parser.parse_args()
    S.database_recreate()
    S.django_setup()
    try:
        job = seed(1)["jobs"][0]
        from django.db import connection

        connection.close()
        if args.profile:
            _profile(job)
            return
        if args.view:
            _view(job, args.n)
            return
        rows = asyncio.run(_compare(job, args.n))
        print(S.table("CPU per pod event in the web process (in-process ASGI, PostgreSQL)",
                      ["round", "path", "events/request", "requests", "ms CPU/request", "ms CPU/event",
                       "statuses", "load"], rows,
                      command=f"python benchmarks/ingest_cpu.py {args.n}"))
    finally:
        S.database_drop()


if __name__ == "__main__":
    main()
