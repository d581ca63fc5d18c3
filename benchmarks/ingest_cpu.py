"""CPU per pod event in the web process, without HTTP or other processes: the ASGI application
called in-process with signed events, Django's handler vs the lean pod-events path
(training/webhooks_asgi.py), one event per request vs the pod's batches.

    python benchmarks/ingest_cpu.py [N] [--profile]

N requests per configuration (default 300), two rounds. `--profile` instead prints a cProfile of
the view's database work (verify, store, apply) over 500 metrics events.
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


async def _compare(job: dict, n: int) -> list[list]:
    from config import asgi
    from gpu_worker.events import next_request
    from training.webhooks_asgi import PodEventsApp

    apps = {"django": asgi.django_asgi_app, "lean": PodEventsApp(asgi.django_asgi_app)}
    rows, seq, step = [], 1, 1
    for rnd in range(2):
        for name, app in apps.items():
            for batch in (1, 100):
                stream = job_stream(job, seq, step, n * batch, with_stages=False)
                seq, step = stream[-1].seq + 1, max(e.step for e in stream) + 1
                queue = collections.deque(stream)
                requests = []
                while queue:
                    requests.append(next_request(queue, coalesce=batch > 1, max_points=batch))
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

    from gpu_worker import signing
    from training import webhooks

    stream = job_stream(job, 1, 1, 600, with_stages=False)

    def one(event):
        body = event.to_json()
        headers = signing.sign_headers(job["secret"], event.event_id, body)
        return webhooks._verify_and_ingest(uuid.UUID(job["id"]), event.event_id, headers, body)

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=300)
    parser.add_argument("--profile", action="store_true")
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
        rows = asyncio.run(_compare(job, args.n))
        print(S.table("CPU per pod event in the web process (in-process ASGI, PostgreSQL)",
                      ["round", "path", "events/request", "requests", "ms CPU/request", "ms CPU/event",
                       "statuses", "load"], rows,
                      command=f"python benchmarks/ingest_cpu.py {args.n}"))
    finally:
        S.database_drop()


if __name__ == "__main__":
    main()
