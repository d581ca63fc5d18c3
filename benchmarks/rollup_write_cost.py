"""What the chart rollups add to a metrics event: `pod_event_ingest(publish=False)` of 1-point and
50-point metrics events with `metric_rollups_add` on and swapped for a no-op, in alternating rounds
(same process, same database), and the rollup call alone.

    python benchmarks/rollup_write_cost.py
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _support as S  # noqa: E402

ROUNDS = 4
SIZES = ((1, 150), (50, 30))  # (points per event, events per round)


def main() -> None:
    S.database_recreate()
    S.django_setup()
    try:
        _run()
    finally:
        from django.db import connections

        connections.close_all()
        S.database_drop()


def _run() -> None:
    from accounts.services import organization_get_or_create
    from tests.jobs.factories import make_running_job, pod_event
    from training.services import pod_events
    from training.services.metric_rollups import metric_rollups_add

    job = make_running_job(organization_get_or_create(slug="acme", name="Acme"))
    counters = {"seq": 0, "step": 0}
    ingest_ms: dict[tuple[str, int], list[float]] = {}
    call_ms: dict[int, list[float]] = {}

    def one_round(points_per_event: int, events: int) -> list[float]:
        times = []
        for _ in range(events):
            counters["seq"] += 1
            rows = []
            for _ in range(points_per_event):
                counters["step"] += 1
                step = counters["step"]
                rows.append({"step": step, "loss": 2.0 + (step % 7) * 0.01, "learning_rate": 2e-4, "grad_norm": 0.4,
                             "tokens_per_s": 4000.0, "epoch": step / 1e5, "total_steps": 1_000_000})
            data = rows[0] if points_per_event == 1 else {"points": rows}
            event = pod_event(job, counters["seq"], "metrics", counters["step"], dict(data))
            started = time.perf_counter()
            pod_events.pod_event_ingest(job_id=job.pk, event=event, publish=False)
            times.append((time.perf_counter() - started) * 1000)
        return times

    for _ in range(ROUNDS):
        for label in ("without rollups", "with rollups"):
            for n, events in SIZES:
                def timed(n=n, **kwargs):  # n bound now: the closure is called within this turn
                    started = time.perf_counter()
                    out = metric_rollups_add(**kwargs)
                    call_ms.setdefault(n, []).append((time.perf_counter() - started) * 1000)
                    return out

                pod_events.metric_rollups_add = timed if label == "with rollups" else (lambda **kwargs: 0)
                ingest_ms.setdefault((label, n), []).extend(one_round(n, events))
    pod_events.metric_rollups_add = metric_rollups_add

    def p95(values):
        return sorted(values)[int(len(values) * 0.95)]

    rows = []
    for n, _events in SIZES:
        off, on = ingest_ms[("without rollups", n)], ingest_ms[("with rollups", n)]
        rows.append([f"{n} point(s)", f"{statistics.median(off):.2f} → {statistics.median(on):.2f}",
                     f"{p95(off):.2f} → {p95(on):.2f}", f"{statistics.median(call_ms[n]):.2f}", len(on)])
    print(S.table("Metrics event ingest, rollups off → on (ms, in-process, PostgreSQL)",
                  ["event", "median", "p95", "rollup call alone (median)", "events"], rows,
                  command="python benchmarks/rollup_write_cost.py"))


if __name__ == "__main__":
    main()
