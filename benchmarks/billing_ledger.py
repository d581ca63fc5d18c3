"""Recorded cost against the provider's bill, side by side, per job.

    python benchmarks/billing_ledger.py

Every job goes through the real control-plane code (job_create with admission, the launch path,
the reconciler, the budget enforcer's metering, the cost reconciliation, settle) and the real
`runpod` SDK, against the project's fake RunPod server (tests/fakes/runpod_server.py), which
reports each pod's own costPerHr and uptime and keeps a per-second ledger of what each pod cost.
One simulated clock (5 s ticks) drives both sides; the pod's own progress is scripted (boot,
training minutes, completion). Scenarios: on-demand, spot, spot with two evictions and the
on-demand fallback, a cancel, a capacity wait (5 failed creates over 140 s) that then gets a pod, capacity failures until the
launch gives up, a create refused with 401, and a worker killed after the provider's create
(the relaunch adopts the pod). Prints project cost, ledger cost and their ratio per job (target
0.98–1.02; 0 for jobs that never had a pod).

Runs on a throw-away embedded SQLite database in a temporary folder; nothing else is touched.
"""
from __future__ import annotations

import heapq
import itertools
import os
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
H100 = "NVIDIA H100 80GB HBM3"
TICK_S = 5


class Clock:
    def __init__(self):
        self.t = datetime(2026, 3, 10, 8, 0, 0, tzinfo=timezone.utc)

    def __call__(self):
        return self.t

    def ts(self) -> float:
        return self.t.timestamp()


def setup(tmp: str, server_url: str) -> None:
    os.environ.pop("DATABASE_URL", None)
    os.environ.update({
        "BRIGHTRUN_VAR_DIR": tmp, "HOME": tmp, "DJANGO_SETTINGS_MODULE": "config.settings",
        "GPU_PROVIDER": "runpod", "RUNPOD_API_KEY": "bench-key", "RUNPOD_API_BASE_URL": server_url,
        "RUNPOD_IMAGE": "brightrun/gpu-worker:bench", "SPOT_FALLBACK_AFTER": "2", "LAUNCH_MAX_RETRIES": "5",
    })
    import django
    from django.core.management import call_command

    django.setup()
    import logging

    logging.disable(logging.CRITICAL)  # the scripted failures log warnings by design
    call_command("migrate", verbosity=0)


class Tasks:
    """Stands in for the broker: Celery tasks sent by the code run at their (simulated) due time,
    each through the same service and retry policy as its task in training/tasks.py."""

    def __init__(self, clock):
        self.clock = clock
        self.queue: list = []
        self.seq = itertools.count()
        self.retries: dict[tuple, int] = {}

    def send(self, name: str, args: tuple, countdown: float = 0) -> None:
        heapq.heappush(self.queue, (self.clock.ts() + (countdown or 0), next(self.seq), name, tuple(args)))

    def run_due(self) -> None:
        from django.conf import settings

        from training.providers import ProviderError, get_provider
        from training.services import pods

        while self.queue and self.queue[0][0] <= self.clock.ts():
            _, _, name, args = heapq.heappop(self.queue)
            try:
                if name == "training.tasks.job_launch":
                    pods.job_launch(job_id=args[0])
                elif name == "training.tasks.job_resume":
                    pods.job_resume(job_id=args[0])
                elif name == "training.tasks.job_terminate":
                    pods.job_pod_terminate(job_id=args[0])
                elif name == "training.tasks.pod_terminate":
                    if get_provider(args[0]).terminate(args[1]):
                        pods.pod_gone_record(pod_id=args[1], how="terminated (superseded launch)")
                elif name == "training.tasks.job_signal_stop":
                    pods.job_signal_stop(job_id=args[0])
                self.retries.pop((name, args), None)
            except _WorkerKilled:
                pass  # the task is lost with the worker; the reconciler sends another launch
            except ProviderError as exc:
                if name not in ("training.tasks.job_launch", "training.tasks.job_resume"):
                    self.send(name, args, 10)
                    continue
                n = self.retries.get((name, args), 0)
                if exc.transient and n < settings.LAUNCH_MAX_RETRIES:
                    self.retries[(name, args)] = n + 1
                    self.send(name, args, min(300, 5 * 2 ** n))
                else:
                    pods.job_launch_failed(job_id=args[0], error=exc)


def main() -> None:
    from tests.fakes.runpod_server import FakeRunPodServer

    clock = Clock()
    with tempfile.TemporaryDirectory(prefix="billing-ledger-") as tmp, \
            FakeRunPodServer(api_key="bench-key", terminate_polls=0, clock=clock.ts) as server:
        setup(tmp, server.base_url)
        import celery.app.task
        import django.utils.timezone

        django.utils.timezone.now = clock
        tasks = Tasks(clock)
        celery.app.task.Task.apply_async = (
            lambda self, args=None, kwargs=None, countdown=None, **kw: tasks.send(self.name, args or (), countdown or 0))
        run(clock, server, tasks)


def run(clock, server, tasks) -> None:
    from decimal import Decimal

    from django.db import transaction

    from accounts.services import organization_get_or_create
    from billing.models import JobCost
    from billing.services.enforcement import budgets_enforce
    from billing.services.reconcile import costs_reconcile
    from training import states
    from training.models import TrainingJob
    from training.providers import clear_provider_cache
    from training.services import pods
    from training.services.datasets import dataset_import
    from training.services.jobs import job_cancel, job_create, job_move

    clear_provider_cache()
    org = organization_get_or_create(slug="ledger-bench")
    dataset = dataset_import(organization=org, source=(ROOT / "training/sample_data/brightrun-sample.json").read_bytes(),
                             filename="sample.json").dataset

    # name -> what the pod does: boot seconds, training seconds; and what happens to it.
    scenarios = [
        {"name": "on-demand", "train_s": 2400},
        {"name": "spot", "spot": True, "train_s": 1800},
        {"name": "spot, 2 evictions, on-demand fallback", "spot": True, "train_s": 2400, "evict_at": [600, 600]},
        {"name": "cancel after 15 min", "train_s": 3600, "cancel_at": 900},
        {"name": "capacity wait 140 s, then a pod", "train_s": 1200, "sold_out_s": 140},
        {"name": "capacity failures until it gives up", "train_s": 600, "sold_out_s": 10 ** 9},
        {"name": "create refused (401)", "train_s": 600, "refuse_401": True},
        {"name": "worker killed after the create", "train_s": 1200, "kill_after_create": True},
    ]
    BOOT_S = 60
    results = []
    for sc in scenarios:
        if sc.get("sold_out_s"):
            server.sold_out.add(H100)
        if sc.get("refuse_401"):
            server.fail_next("http_401", operation="podFindAndDeployOnDemand")
        if sc.get("kill_after_create"):
            _kill_next_launch_after_create()
        job = job_create(organization=org, dataset=dataset, base_model="meta-llama/Meta-Llama-3-8B-Instruct",
                         gpu_type=H100, spot=bool(sc.get("spot")),
                         name=sc["name"])  # spot: the bid defaults to RunPod's current spot price
        began = clock.ts()
        trained = {}  # attempt -> seconds trained
        evictions = list(sc.get("evict_at", []))
        for tick in range(int(6 * 3600 / TICK_S)):
            clock.t += timedelta(seconds=TICK_S)
            now = clock.ts()
            if sc.get("sold_out_s") and now - began >= sc["sold_out_s"]:
                server.sold_out.discard(H100)
            tasks.run_due()
            job.refresh_from_db()
            if tick % (30 // TICK_S) == 0:
                pods.pods_reconcile(now=clock())
                budgets_enforce(now=clock())
                tasks.run_due()
            if tick % (60 // TICK_S) == 0:
                costs_reconcile(now=clock())
            job.refresh_from_db()
            pod = server.pods.get(job.pod_id) if job.pod_id else None
            if job.status in states.POD_STATES and pod and pod["desiredStatus"] == "RUNNING":
                # The pod's events (metrics, heartbeats) keep it from being judged silent.
                TrainingJob.objects.filter(pk=job.pk).update(last_event_at=clock())
                up = now - pod["_created"]
                if job.status == states.PROVISIONING and up >= BOOT_S:
                    _to(job, states.TRAINING, job_move)
                elif job.status == states.TRAINING:
                    done = sum(trained.values())
                    trained[job.attempt] = trained.get(job.attempt, 0) + TICK_S
                    if evictions and trained[job.attempt] >= evictions[0]:
                        evictions.pop(0)
                        server.evict(job.pod_id)
                    elif sc.get("cancel_at") and done >= sc["cancel_at"]:
                        job_cancel(job_id=job.pk)
                    elif done >= sc["train_s"]:
                        _to(job, states.COMPLETED, job_move)
            job.refresh_from_db()
            cost = JobCost.objects.get(job=job)
            if job.is_terminal and cost.settled_at is not None and not tasks.queue:
                break
        server.sold_out.clear()
        server.clear_faults()
        cost = JobCost.objects.get(job=job)
        ledger = server.ledger_total(str(job.pk))
        pods_rented = sum(1 for line in server.ledger() if str(job.pk) in line["name"])
        results.append((sc["name"], job.status, pods_rented, cost.billable_s, cost.cost, ledger,
                        cost.settled_at is not None, _old_metering(job)))
        clock.t += timedelta(minutes=10)

    print("Recorded cost vs the provider's ledger (fake RunPod server, real runpod SDK, simulated clock)")
    print(f"{'job':40s} {'status':10s} {'pods':>4s} {'billed s':>8s} {'project $':>10s} {'ledger $':>10s} {'ratio':>7s}"
          f" {'old way $':>10s} {'old ratio':>9s}")
    worst = []
    for name, status, n, secs, project, ledger, settled, old in results:
        ratio = (float(project) / ledger) if ledger else (0.0 if project == 0 else float("inf"))
        shown = f"{ratio:7.4f}" if ledger else ("0 (no pod)" if project == 0 else "CHARGED")
        old_shown = f"{float(old) / ledger:9.2f}" if ledger else ("" if old == 0 else "charged")
        print(f"{name:40s} {status:10s} {n:4d} {secs:8d} {project:10.2f} {ledger:10.4f} {shown:>7s}"
              f" {old:10.2f} {old_shown:>9s}" + ("" if settled else "  (not settled)"))
        if ledger:
            worst.append(ratio)
    nopod = [r for r in results if not r[5]]
    print(f"jobs with a pod: ratio min {min(worst):.4f} max {max(worst):.4f} (target 0.98-1.02); "
          f"jobs without a pod: {len(nopod)}, charged ${sum(r[4] for r in nopod):.2f}")
    print("old way: what the metering before segments followed the pod charged (from each move into "
          "provisioning to the move out, at the catalog's rate then, or the bid); the first spot job's "
          "create refreshed the catalog from the fake's gpuTypes, so later rows use its list prices")
    print("command: python benchmarks/billing_ledger.py")


def _old_metering(job):
    """The job's cost as the metering before this change computed it: billable from each move
    into `provisioning` to the next move out of the pod states, at the catalog's rate (the bid for
    spot), whether or not a pod existed."""
    import math
    from decimal import Decimal

    from billing.money import cents
    from billing.services.catalog import gpu_rate, gpu_type_get
    from training import states

    total, start = Decimal("0"), None
    rows = list(job.events.exclude(to_status="").order_by("created_at", "id").values("created_at", "to_status", "attempt"))
    resumes = {e.attempt: e for e in job.events.filter(type="resume")}
    spot = bool(job.events.filter(type__in=("pod_launched", "pod_adopted"), data__spot=True).exists()) or job.spot
    for ev in rows:
        if ev["to_status"] in states.POD_STATES:
            start = start or ev["created_at"]
            continue
        if start is not None:
            # the attempt's spot flag: spot until the on-demand fallback's resume note
            attempt_spot_now = spot and not any("on-demand" in (r.message or "") for a, r in resumes.items()
                                                if a < ev["attempt"])
            rate = gpu_rate(gpu=gpu_type_get(job.gpu_type), gpu_id=job.gpu_type, cloud_type=job.cloud_type,
                            spot=attempt_spot_now, bid_per_gpu=job.bid_per_gpu if attempt_spot_now else None,
                            provider=job.provider).per_hour
            secs = math.ceil((ev["created_at"] - start).total_seconds())
            total += Decimal(secs) * rate / Decimal(3600)
            start = None
    return cents(total)


def _to(job, status, move):
    from django.db import transaction

    from training.services.jobs import job_lock

    with transaction.atomic():
        locked = job_lock(job.pk)
        move(locked, status, reason=f"scripted pod: {status}")


def _kill_next_launch_after_create():
    """The Celery worker dies right after RunPod created the pod, before the pod id is saved:
    the next launch (the reconciler's, after LAUNCH_STALL_S) must adopt it, not rent another."""
    from training.services import pods

    real = pods.get_provider

    class Killed(Exception):
        pass

    def once(name=None):
        provider = real(name)

        class Wrapper:
            def __getattr__(self, attr):
                return getattr(provider, attr)

            def launch(self, request):
                provider.launch(request)
                pods.get_provider = real
                raise _WorkerKilled("killed after the create")

        return Wrapper()

    pods.get_provider = once


class _WorkerKilled(Exception):
    pass


if __name__ == "__main__":
    main()
