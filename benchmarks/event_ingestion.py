"""Pod-event ingestion: requests/s, pod events/s and metric points/s through POST /api/v1/pod-events/,
and POST-to-websocket latency.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/brightrun REDIS_URL=redis://127.0.0.1:6379/0 \\
      .venv/bin/python benchmarks/event_ingestion.py [--jobs 50] [--events-per-job 400] [--rate 1000] \\
      [--sender batched|single|both]

Against the real served processes (`manage.py runall --only web`: daphne, as deployed, WEB_WORKERS
processes), a dedicated PostgreSQL database (`brightrun_bench`, dropped at the end) and Redis
(database 7). 50 simulated jobs (pods) each send their own stream sequentially, as a pod's sender
thread does: the stage changes, then metrics every step with a checkpoint every 50 steps and a log
line every 100, each signed with the job's secret (Standard Webhooks). One websocket client per job
(a logged-in session, `/ws/jobs/<id>/`), in a separate process, records when it first sees each
step.

Each pod sends the way gpu_worker's EventSender does: one request at a time, and what to send next
is `gpu_worker.events.next_request` over the events emitted so far and not yet sent. `--sender
batched` (the pod's default): when events back up, consecutive metrics events go as one request
carrying all their points; `single`: one request per event (the sender before batching, and
`EventSender(batch=False)`). `both` runs both, on fresh databases, one after the other.

The batched sender also keeps the pod's interval between metrics requests
(`gpu_worker.events.linger_s`, `--min-interval`, default the pod's 0.5 s, jittered as the pod does).
In the paced phase the pods' starts are spread over one checkpoint period (`--stagger`, default
50 steps at the per-job rate): independent jobs do not checkpoint in step. `--stagger 0` starts them
all within one emission interval, a sweep launched at once, every pod's checkpoint and log in the
same few milliseconds. "steady" latencies leave out the points emitted in the phase's first 5 s.
`--dump FILE` writes every point's timings for a closer look.

Two phases on the same jobs:
  saturate  every pod's whole stream is emitted at once and sent as fast as the server answers
            (closed loop): sustained throughput
  paced     the pods together emit `--rate` events/s (open loop): throughput and latency at that load

Figures: requests/s (HTTP requests answered, one webhook delivery each), pod events/s (the events
the pods emitted, delivered: a batch counts its points) and metric points/s. POST -> websocket latency
is from the start of the request that carried the point; "from emit" adds the time the point waited
in the pod's queue (paced phase).

Lost = sent and answered 200 but missing from the database (JobEvent, MetricPoint) or never
received by the job's websocket client.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _support as S  # noqa: E402
from gpu_worker.events import METRICS_MIN_INTERVAL_S  # noqa: E402

CHECKPOINT_EVERY = 50
WARMUP_S = 5.0
LOG_EVERY = 100


# ----------------------------------------------------------------------------- seed

def seed(n_jobs: int) -> dict:
    """Organization, user with a session, dataset and `n_jobs` jobs launched (provisioning)."""
    import secrets as pysecrets
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.db import transaction

    from accounts.services import membership_grant, organization_get_or_create
    from billing.services.jobs import job_cost_create
    from training.models import TrainingJob
    from training.providers import pod_name
    from training.services.datasets import dataset_import
    from training.services.jobs import job_lock, job_move

    org = organization_get_or_create(slug="bench", name="Bench")
    user = get_user_model().objects.create_user("bench", password="bench-pass-1")
    membership_grant(user=user, organization=org, role="admin")
    sample = S.ROOT / "training" / "sample_data" / "brightrun-sample.json"
    dataset = dataset_import(organization=org, source=sample.read_bytes(), filename="sample.json").dataset
    jobs = []
    for i in range(n_jobs):
        job = TrainingJob.objects.create(
            organization=org, created_by=user, dataset=dataset, name=f"bench-{i}", base_model="meta-llama/Meta-Llama-3-8B-Instruct",
            preset="balanced", hyperparameters={"num_epochs": 1}, provider="runpod", gpu_type="NVIDIA H100 80GB HBM3",
            status="queued", attempt=1, webhook_secret=pysecrets.token_urlsafe(32))
        with transaction.atomic():
            job = job_lock(job.pk)
            job.pod_name = job.pod_id = pod_name(job.pk, 1)
            job.launched_at = job.created_at
            job_move(job, "provisioning", reason="bench launch")
        job_cost_create(job=job)
        jobs.append({"id": str(job.pk), "secret": job.webhook_secret})
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return {"jobs": jobs, "session": store.session_key, "cookie": settings.SESSION_COOKIE_NAME}


def job_stream(job: dict, first_seq: int, first_step: int, n_events: int, with_stages: bool) -> list:
    """[PodEvent] of one pod, in the order it emits them (signed when sent)."""
    from gpu_worker.contracts import PodEvent

    out = []
    seq, step = first_seq, first_step
    total_steps = 100_000

    def add(type_, step_, data):
        nonlocal seq
        out.append(PodEvent(event_id=f"evt_{job['id']}_1_{seq}", job_id=job["id"], attempt=1, seq=seq, type=type_,
                            timestamp=time.time(), step=step_, data=data))
        seq += 1

    if with_stages:
        for stage in ("preprocessing", "model_loading", "training"):
            add("stage_changed", 0, {"stage": stage})
    while len(out) < n_events:
        loss = 2.5 * (0.999 ** step) + 0.3
        add("metrics", step, {"step": step, "total_steps": total_steps, "epoch": step / 2000, "loss": round(loss, 5),
                              "learning_rate": 0.0002, "grad_norm": 0.41, "tokens": 16210, "loss_tokens": 9874,
                              "tokens_per_s": 4210.5, "eta_s": (total_steps - step) * 0.5, "gpu_memory_mb": 11234.0})
        if step % CHECKPOINT_EVERY == 0:
            add("checkpoint_saved", step, {"step": step, "epoch": step / 2000, "bytes": 168213377,
                                           "uri": f"s3://bucket/jobs/{job['id']}/checkpoints/step-{step}"})
        if step % LOG_EVERY == 0:
            add("log", step, {"level": "info", "stage": "training", "message": f"step {step}: all good"})
        step += 1
    return out


# ----------------------------------------------------------------------------- websocket clients

def ws_process(port: int, jobs: list[str], cookie: str, conn) -> None:
    """One websocket per job; records the first arrival time (time.monotonic, system-wide) of every
    metric step and checkpoint step. Sends 'ready', waits for the expected steps, returns what it saw."""
    import websockets

    seen: dict[str, dict[int, float]] = {j: {} for j in jobs}
    ckpt: dict[str, dict[int, float]] = {j: {} for j in jobs}
    stages: dict[str, int] = {j: 0 for j in jobs}
    messages = [0]

    async def client(job_id: str, ready: asyncio.Event, counter: list):
        url = f"ws://127.0.0.1:{port}/ws/jobs/{job_id}/"
        async with websockets.connect(url, additional_headers={"Cookie": cookie}, origin=f"http://127.0.0.1:{port}",
                                      max_size=None, ping_interval=None) as ws:
            first = json.loads(await ws.recv())
            assert first["kind"] == "snapshot", first
            counter[0] += 1
            if counter[0] == len(jobs):
                ready.set()
            mine, mine_ckpt = seen[job_id], ckpt[job_id]
            async for raw in ws:
                now = time.monotonic()
                messages[0] += 1
                msg = json.loads(raw)
                kind = msg.get("kind")
                if kind == "metrics":
                    for p in msg.get("points") or ():
                        mine.setdefault(int(p["step"]), now)
                elif kind == "checkpoint":
                    mine_ckpt.setdefault(int(msg["step"]), now)
                elif kind in ("stage", "status"):
                    stages[job_id] += 1

    async def main():
        ready = asyncio.Event()
        counter = [0]
        tasks = [asyncio.ensure_future(client(j, ready, counter)) for j in jobs]
        await asyncio.wait_for(ready.wait(), 60)
        conn.send("ready")
        loop = asyncio.get_running_loop()
        expected = await loop.run_in_executor(None, conn.recv)  # {job: (metric steps, checkpoint steps)}
        deadline = time.monotonic() + expected.pop("_wait_s", 10)
        while time.monotonic() < deadline:
            if all(len(seen[j]) >= m and len(ckpt[j]) >= c for j, (m, c) in expected.items()):
                break
            await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        conn.send({"seen": seen, "ckpt": ckpt, "stages": stages, "messages": messages[0]})

    asyncio.run(main())


# ----------------------------------------------------------------------------- senders

async def send_all(port: int, streams: dict[str, list], secrets: dict[str, str], rate: float | None,
                   batched: bool, min_interval_s: float = 0.0, stagger_s: float = 0.0) -> dict:
    import collections

    import aiohttp

    from gpu_worker import signing
    from gpu_worker.events import linger_s, metrics_interval_s, next_request

    url = f"http://127.0.0.1:{port}/api/v1/pod-events/"
    sent: dict[str, dict] = {j: {} for j in streams}          # job -> {(type, step): t_send}
    emitted: dict[str, dict] = {j: {} for j in streams}       # job -> {(type, step): t_emit}
    http_lat: list[float] = []
    statuses: dict[int, int] = {}
    counts = {"requests_ok": 0, "events_ok": 0, "points_ok": 0}
    per_job_rate = (rate / len(streams)) if rate else None

    async def pod(session, job_id, stream, offset):
        mine, mine_emitted = sent[job_id], emitted[job_id]
        start = time.monotonic() + offset
        due = [start + i / per_job_rate if per_job_rate else start for i in range(len(stream))]
        queue: collections.deque = collections.deque()
        n_emitted = 0
        last_request_at, interval = None, min_interval_s
        while n_emitted < len(stream) or queue:
            now = time.monotonic()
            while n_emitted < len(stream) and due[n_emitted] <= now:  # training emitted these by now
                event = stream[n_emitted]
                queue.append(event)
                mine_emitted[(event.type, event.step)] = due[n_emitted]
                n_emitted += 1
            if not queue:
                await asyncio.sleep(max(0.0, due[n_emitted] - now))
                continue
            wait = linger_s(queue, last_request_at=last_request_at, min_interval_s=interval, now=now)
            if wait > 0:  # as the pod's sender does: wait for the interval or the next emit
                next_due = due[n_emitted] - now if n_emitted < len(stream) else wait
                await asyncio.sleep(max(0.0, min(wait, next_due)))
                continue
            last_request_at, interval = now, metrics_interval_s(min_interval_s)
            request, carried = next_request(queue, coalesce=batched)
            body = request.to_json()
            headers = signing.sign_headers(secrets[job_id], request.event_id, body)
            points = request.data["points"] if "points" in request.data else [{"step": request.step}]
            t0 = time.monotonic()
            for attempt in range(5):  # a pod retries connection errors
                try:
                    async with session.post(url, data=body, headers={**headers, "Content-Type": "application/json"}) as r:
                        await r.read()
                        status = r.status
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.2 * (attempt + 1))
            else:
                status = 0
            t1 = time.monotonic()
            http_lat.append(t1 - t0)
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                counts["requests_ok"] += 1
                counts["events_ok"] += carried
                if request.type == "metrics":
                    counts["points_ok"] += carried
                for p in points:
                    mine[(request.type, int(p["step"]))] = t0

    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        n = len(streams)
        t_start = time.monotonic()
        # Pod k starts k/n of the way into `stagger_s` (paced phase): independent jobs are not in
        # step. With stagger 0 they start within one emission interval of each other and then
        # checkpoint and log together (every pod's barrier events in the same few milliseconds).
        spread = (stagger_s if per_job_rate else 0.0) or (1 / (per_job_rate or 1e9))
        await asyncio.gather(*(pod(session, j, s, (k / n) * spread) for k, (j, s) in enumerate(streams.items())))
        elapsed = time.monotonic() - t_start
    total = sum(len(s) for s in streams.values())
    return {"sent": sent, "emitted": emitted, "elapsed": elapsed, "events": total, "http_lat": http_lat,
            "statuses": statuses, **counts}


# ----------------------------------------------------------------------------- one run

def run_once(*, n_jobs: int, events_per_job: int, paced_per_job: int, rate: float, web_workers: int | None,
             log_dir: Path, batched: bool, min_interval_s: float = 0.0, stagger_s: float = 0.0) -> dict:
    S.database_recreate()
    S.django_setup()
    from django.db import connection

    info = seed(n_jobs)
    connection.close()
    jobs = [j["id"] for j in info["jobs"]]
    extra = ["--web-workers", str(web_workers)] if web_workers else []
    results = {}
    with S.Served(log_dir / "web.log", extra_args=extra) as served:
        results["command"] = served.command
        parent, child = mp.Pipe()
        proc = mp.get_context("spawn").Process(target=ws_process, args=(served.port, jobs, f"{info['cookie']}={info['session']}", child))
        proc.start()
        if not parent.poll(90):
            raise RuntimeError("websocket clients did not connect")
        assert parent.recv() == "ready"
        phases = [("saturate", events_per_job, None, True), ("paced", paced_per_job, rate, False)]
        seq_next = {j["id"]: 1 for j in info["jobs"]}
        step_next = {j["id"]: 1 for j in info["jobs"]}
        all_sent: dict[str, dict] = {j: {} for j in jobs}
        for name, per_job, phase_rate, stages in phases:
            if per_job <= 0:
                continue
            streams = {}
            for j in info["jobs"]:
                stream = job_stream(j, seq_next[j["id"]], step_next[j["id"]], per_job, stages)
                seq_next[j["id"]] = stream[-1].seq + 1
                step_next[j["id"]] = max(e.step for e in stream) + 1
                streams[j["id"]] = stream
            secrets = {j["id"]: j["secret"] for j in info["jobs"]}
            out = asyncio.run(send_all(served.port, streams, secrets, phase_rate, batched, min_interval_s,
                                     stagger_s))
            for j in jobs:
                all_sent[j].update(out["sent"][j])
            results[name] = out
            time.sleep(1.0)
        expected = {j: (sum(1 for k in all_sent[j] if k[0] == "metrics"),
                        sum(1 for k in all_sent[j] if k[0] == "checkpoint_saved")) for j in jobs}
        parent.send({**expected, "_wait_s": 15})
        got = parent.recv() if parent.poll(60) else {"seen": {}, "ckpt": {}, "stages": {}, "messages": 0}
        proc.join(10)
    S.django_setup()
    from training.models import JobEvent, MetricPoint

    results["db_events"] = JobEvent.objects.filter(source=JobEvent.SOURCE_POD).count()
    results["db_points"] = MetricPoint.objects.count()
    results["ws"] = got
    results["all_sent"] = all_sent
    connection.close()
    return results


def summarize(res: dict, rate: float, sender: str) -> list[list]:
    rows = []
    got = res["ws"]
    for name in ("saturate", "paced"):
        out = res.get(name)
        if not out:
            continue
        lat_metrics, lat_emit, lat_ckpt, lat_steady, missing_ws = [], [], [], [], 0
        # Steady state: points emitted after the first WARMUP_S of the phase (its start is a burst:
        # every pod begins within one emission interval).
        phase_start = min((t for emitted in out["emitted"].values() for t in emitted.values()), default=0.0)
        for job, sent in out["sent"].items():
            seen, ck = got["seen"].get(job, {}), got["ckpt"].get(job, {})
            emitted = out["emitted"][job]
            for (type_, step), t0 in sent.items():
                if type_ == "metrics":
                    if step in seen:
                        lat_metrics.append(seen[step] - t0)
                        lat_emit.append(seen[step] - emitted[(type_, step)])
                        if emitted[(type_, step)] >= phase_start + WARMUP_S:
                            lat_steady.append(seen[step] - t0)
                    else:
                        missing_ws += 1
                elif type_ == "checkpoint_saved":
                    if step in ck:
                        lat_ckpt.append(ck[step] - t0)
                    else:
                        missing_ws += 1
        requests = sum(out["statuses"].values())
        elapsed = out["elapsed"]
        rows.append([sender, name, "max" if name == "saturate" else f"{rate:,.0f}", out["events"], requests,
                     out["statuses"].get(200, 0), out["requests_ok"] / elapsed, out["events_ok"] / elapsed,
                     out["points_ok"] / elapsed, S.percentile(out["http_lat"], 50) * 1000,
                     S.percentile(out["http_lat"], 99) * 1000,
                     S.percentile(lat_metrics, 50) * 1000, S.percentile(lat_metrics, 99) * 1000,
                     S.percentile(lat_emit, 99) * 1000 if name == "paced" else float("nan"),
                     S.percentile(lat_steady, 50) * 1000 if name == "paced" else float("nan"),
                     S.percentile(lat_steady, 99) * 1000 if name == "paced" else float("nan"),
                     S.percentile(lat_ckpt, 99) * 1000, missing_ws])
    return rows


def dump_timings(res: dict, path: Path) -> None:
    """One JSON line per metrics point sent: where its latency went (diagnostics)."""
    with open(path, "a") as f:
        for name in ("saturate", "paced"):
            out = res.get(name)
            if not out:
                continue
            for job, sent in out["sent"].items():
                seen = res["ws"]["seen"].get(job, {})
                for (type_, step), posted in sent.items():
                    if type_ == "metrics":
                        f.write(json.dumps({"phase": name, "job": job, "step": step,
                                            "emitted": out["emitted"][job].get((type_, step)), "posted": posted,
                                            "seen": seen.get(step)}) + "\n")


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--events-per-job", type=int, default=400, help="saturation phase, per job")
    ap.add_argument("--paced-per-job", type=int, default=300, help="paced phase, per job")
    ap.add_argument("--rate", type=float, default=1000.0, help="offered events/s in the paced phase (all jobs)")
    ap.add_argument("--web-workers", type=int, help="override WEB_WORKERS for the served processes")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--sender", choices=("batched", "single", "both"), default="both",
                    help="how each pod sends: batched (the pod's sender), single (one request per event), both")
    ap.add_argument("--min-interval", type=float, default=METRICS_MIN_INTERVAL_S,
                    help="batched sender: at most one metrics request per this many seconds per pod "
                         "(gpu_worker.events.METRICS_MIN_INTERVAL_S; 0: send whenever idle)")
    ap.add_argument("--stagger", type=float, default=None,
                    help="paced phase: spread the pods' starts over this many seconds (default: one "
                         "checkpoint period, so that independent jobs do not checkpoint in step; 0: "
                         "within one emission interval, every pod in step)")
    ap.add_argument("--dump", type=Path, help="write every metrics point's timings (JSON lines: phase, job, "
                    "step, emitted, posted, seen on the websocket; seconds on one clock) to this file")
    ap.add_argument("--quick", action="store_true", help="10 jobs, 40 + 40 events each")
    ap.add_argument("--keep-db", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.jobs, args.events_per_job, args.paced_per_job, args.rate = 10, 40, 40, 200.0
    log_dir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    per_job_rate = args.rate / args.jobs
    stagger = args.stagger if args.stagger is not None else CHECKPOINT_EVERY / per_job_rate
    rows, db_rows = [], []
    command = None
    try:
        senders = ("batched", "single") if args.sender == "both" else (args.sender,)
        for r in range(args.repeats):
            for sender in senders:
                res = run_once(n_jobs=args.jobs, events_per_job=args.events_per_job, paced_per_job=args.paced_per_job,
                               rate=args.rate, web_workers=args.web_workers, log_dir=log_dir,
                               batched=sender == "batched",
                               min_interval_s=args.min_interval if sender == "batched" else 0.0,
                               stagger_s=stagger)
                command = res["command"]
                if args.dump:
                    dump_timings(res, args.dump)
                for row in summarize(res, args.rate, sender):
                    rows.append([r + 1, *row])
                sent_ok = sum(res[p]["statuses"].get(200, 0) for p in ("saturate", "paced") if p in res)
                metric_sent = sum(1 for j in res["all_sent"].values() for k in j if k[0] == "metrics")
                db_rows.append([r + 1, sender, sent_ok, res["db_events"], sent_ok - res["db_events"], metric_sent,
                                res["db_points"], metric_sent - res["db_points"], res["ws"].get("messages", 0)])
    finally:
        if not args.keep_db:
            S.database_drop()
    me = "benchmarks/event_ingestion.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = S.table(f"Event ingestion: {args.jobs} jobs, POST /api/v1/pod-events/ -> websocket",
                  ["run", "sender", "phase", "offered/s", "pod events", "requests", "200", "requests/s",
                   "pod events/s", "points/s", "http p50 ms", "http p99 ms", "ws metrics p50 ms",
                   "ws metrics p99 ms", "ws p99 from emit ms", f"steady ws p50 ms (after {WARMUP_S:.0f} s)",
                   "steady ws p99 ms", "ws ckpt p99 ms", "ws missing"],
                  rows, f".venv/bin/python {me.strip()}   (server: python {command}; logs in {log_dir})")
    out += "\n" + S.table("Event ingestion: nothing lost (database vs answered 200)",
                          ["run", "sender", "requests 200", "JobEvent rows", "lost", "metric points", "MetricPoint rows",
                           "lost", "ws messages"], db_rows)
    print(out, flush=True)
    return out


if __name__ == "__main__":
    main()
