"""Downsampled metric series for the charts: the speed machinery behind `metric_series`
(training.selectors re-exports it), kept apart from the selectors' rules.

A series of any length comes back as at most `max_points` points that keep each bucket's lowest
and highest value, from the rollups kept on write (training/services/metric_rollups.py) when the
blocks are large enough, else from the points (one aggregate on PostgreSQL, window functions
elsewhere). Query counts do not grow with the number of points.
"""
from __future__ import annotations

from typing import Any, Iterable

from django.conf import settings
from django.db import connection
from django.db.models import F, FloatField, Max, Min, Q, Window
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, RowNumber

from training.models import MetricPoint, MetricRollup, TrainingJob
from training.services.metric_rollups import BLOCK_SIZES, ROLLUP_KEYS, stats_from_points

# Series the charts draw; the export has every key the pod reports.
SERIES_KEYS = ("loss", "valid_loss", "learning_rate", "grad_norm", "tokens_per_s")
EXPORT_KEYS = ("loss", "valid_loss", "learning_rate", "grad_norm", "tokens_per_s", "epoch", "gpu_memory_mb", "eta_s",
               "total_steps", "train_mean_token_accuracy", "valid_mean_token_accuracy")


def _value(key: str):
    return Cast(KT(f"values__{key}"), FloatField())


def metric_series(*, job: TrainingJob, keys: Iterable[str] = SERIES_KEYS, max_points: int | None = None,
                  after_step: int | None = None) -> dict[str, Any]:
    """Each series as [[step, value], ...] with at most `max_points` points, however long the job.

    Downsampled: the steps are cut into aligned blocks of `size` steps (block = step // size; the
    largest of 4096, 1024, 256, 64, 16 that still gives at least (max_points - 2) / 2 blocks over
    the range, else single steps), the blocks are shared out into (max_points - 2) / 2 equal
    buckets, and each bucket keeps its lowest and its highest value (plus the first and the last
    point), so spikes and the shape of the curve survive. With blocks of 16 steps or more the chart
    series come from the rollups kept on write (a few hundred rows), other keys and single steps
    from the points. A constant number of queries whatever the length: the step range (two index
    probes), a count that stops at max_points + 1, then, when downsampling, one query for the
    rolled-up series and one aggregate for the others on PostgreSQL (one per series elsewhere),
    plus, with `after_step`, the points of the first, partly wanted, block.
    """
    max_points = max(4, min(int(max_points or settings.METRIC_SERIES_MAX_POINTS), settings.METRIC_SERIES_MAX_POINTS_LIMIT))
    keys = [k for k in keys if k in EXPORT_KEYS]
    rows = job.metrics.all()
    if after_step is not None:
        rows = rows.filter(step__gt=after_step)
    span = rows.aggregate(lo=Min("step"), hi=Max("step"))
    lo, hi = span["lo"], span["hi"]
    result: dict[str, Any] = {"max_points": max_points, "downsampled": False, "first_step": lo, "last_step": hi,
                              "series": {k: [] for k in keys}}
    if lo is None:
        return result
    # Steps are unique per job: a span that fits needs no count; otherwise count at most max_points + 1.
    if hi - lo + 1 <= max_points or rows.order_by()[: max_points + 1].count() <= max_points:
        for step, values in rows.order_by("step").values_list("step", "values"):
            for k in keys:
                v = values.get(k) if isinstance(values, dict) else None
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    result["series"][k].append([step, v])
        return result
    result["downsampled"] = True
    buckets = max(1, (max_points - 2) // 2)
    size = _block_size(lo, hi, buckets)
    first_block, blocks = lo // size, hi // size - lo // size + 1
    rolled = [k for k in keys if k in ROLLUP_KEYS] if size > 1 else []
    if rolled:
        result["series"].update(_series_rollups(job, rolled, lo, hi, size, buckets, after_step))
    keys = [k for k in keys if k not in rolled]
    if connection.vendor == "postgresql" and keys:
        result["series"].update(_series_postgresql(job, keys, size, first_block, buckets, blocks, after_step))
        return result
    for k in keys:
        picked = (rows.annotate(v=_value(k)).filter(v__isnull=False)
                  .annotate(bucket=(F("step") / size - first_block) * buckets / blocks)
                  .annotate(
                      r_min=Window(RowNumber(), partition_by=[F("bucket")], order_by=[F("v").asc(), F("step").asc()]),
                      r_max=Window(RowNumber(), partition_by=[F("bucket")], order_by=[F("v").desc(), F("step").asc()]),
                      r_first=Window(RowNumber(), order_by=[F("step").asc()]),
                      r_last=Window(RowNumber(), order_by=[F("step").desc()]))
                  .filter(Q(r_min=1) | Q(r_max=1) | Q(r_first=1) | Q(r_last=1))
                  .order_by("step").values_list("step", "v"))
        result["series"][k] = [[s, v] for s, v in picked]
    return result


def _block_size(lo: int, hi: int, buckets: int) -> int:
    """The largest rollup block size that still gives every bucket a block of its own; 1 (single
    steps) when the range is too short for the smallest."""
    for size in reversed(BLOCK_SIZES):
        if hi // size - lo // size + 1 >= buckets:
            return size
    return 1


def _series_rollups(job: TrainingJob, keys: list[str], lo: int, hi: int, size: int, buckets: int,
                    after_step: int | None) -> dict[str, list]:
    """The downsampled series from the rollups of one block size: each block's extremes are its
    bucket's candidates. With `after_step` the first block may hold steps before the range: that
    block comes from its points (fewer than `size`)."""
    first_block, last_block = lo // size, hi // size
    blocks = last_block - first_block + 1
    whole_from = first_block
    columns = ("min_value", "min_step", "max_value", "max_step", "first_step", "first_value", "last_step", "last_value")
    parts: list[tuple] = []
    if after_step is not None:
        whole_from = first_block + 1
        edge = job.metrics.filter(step__gt=after_step, step__lt=whole_from * size).values_list("step", "values")
        parts += [(key, block, *(getattr(stats, c) for c in columns))
                  for (key, block), stats in stats_from_points(edge, keys, size).items()]
    parts += (MetricRollup.objects.filter(job=job, size=size, key__in=keys, block__gte=whole_from, block__lte=last_block)
              .values_list("key", "block", *columns))
    # BlockStats.merge, inlined: this loop runs over a few thousand rows on every chart read.
    per_bucket: dict[tuple[str, int], list] = {}
    for key, block, low, low_step, high, high_step, head_step, head, tail_step, tail in parts:
        bucket = (key, (block - first_block) * buckets // blocks)
        acc = per_bucket.get(bucket)
        if acc is None:
            per_bucket[bucket] = [low, low_step, high, high_step, head_step, head, tail_step, tail]
            continue
        if low < acc[0] or (low == acc[0] and low_step < acc[1]):
            acc[0], acc[1] = low, low_step
        if high > acc[2] or (high == acc[2] and high_step < acc[3]):
            acc[2], acc[3] = high, high_step
        if head_step < acc[4]:
            acc[4], acc[5] = head_step, head
        if tail_step > acc[6]:
            acc[6], acc[7] = tail_step, tail
    picked: dict[str, dict[int, float]] = {k: {} for k in keys}
    ends: dict[str, list[tuple[int, float]]] = {k: [] for k in keys}
    for (key, _), (low, low_step, high, high_step, head_step, head, tail_step, tail) in per_bucket.items():
        picked[key][low_step] = low
        picked[key][high_step] = high
        ends[key] += [(head_step, head), (tail_step, tail)]
    series = {}
    for k in keys:
        if ends[k]:
            for step, value in (min(ends[k]), max(ends[k])):
                picked[k][step] = value
        series[k] = [[s, picked[k][s]] for s in sorted(picked[k])]  # floats already (FloatField)
    return series


def _series_postgresql(job: TrainingJob, keys: list[str], size: int, first_block: int, buckets: int, blocks: int,
                       after_step: int | None) -> dict[str, list]:
    """The same points as the window-function path (per bucket the lowest and the highest value,
    ties to the earliest step; the first and the last point), in one pass without sorting: min and
    max over ARRAY[value, step] pick a value and its step together."""
    table = MetricPoint._meta.db_table
    columns, params = [], []
    for i, k in enumerate(keys):
        columns.append(f"(\"values\" ->> %s)::double precision AS v{i}")
        params.append(k)
    aggregates = []
    for i in range(len(keys)):
        f = f"FILTER (WHERE v{i} IS NOT NULL)"
        aggregates += [f"min(ARRAY[v{i}, step::double precision]) {f}", f"max(ARRAY[v{i}, -step::double precision]) {f}",
                       f"min(ARRAY[step::double precision, v{i}]) {f}", f"max(ARRAY[step::double precision, v{i}]) {f}"]
    where, where_params = "job_id = %s", [job.pk]
    if after_step is not None:
        where += " AND step > %s"
        where_params.append(after_step)
    sql = (f"SELECT {', '.join(aggregates)} FROM (SELECT step, (step / %s - %s) * %s / %s AS bucket, "
           f"{', '.join(columns)} FROM {table} WHERE {where}) AS points GROUP BY bucket")
    picked: list[dict[int, float]] = [{} for _ in keys]
    first: list[list | None] = [None] * len(keys)
    last: list[list | None] = [None] * len(keys)
    with connection.cursor() as cursor:
        cursor.execute(sql, [size, first_block, buckets, blocks, *params, *where_params])
        for row in cursor.fetchall():
            for i in range(len(keys)):
                low, high, head, tail = row[4 * i: 4 * i + 4]
                if low is None:
                    continue
                picked[i][int(low[1])] = low[0]
                picked[i][int(-high[1])] = high[0]
                if first[i] is None or head[0] < first[i][0]:
                    first[i] = head
                if last[i] is None or tail[0] > last[i][0]:
                    last[i] = tail
    series = {}
    for i, k in enumerate(keys):
        for end in (first[i], last[i]):
            if end is not None:
                picked[i][int(end[0])] = end[1]
        series[k] = [[s, _as_number(picked[i][s])] for s in sorted(picked[i])]
    return series


def _as_number(value: float):
    # JSON kept integers as integers (the window path returns the float cast): keep floats here too.
    return float(value)
