"""Downsampling on write: per job, chart series and aligned block of steps, the block's count, sum,
lowest and highest value (with their steps) and first and last point (`MetricRollup`).

Blocks come in sizes 16, 64, 256, 1024 and 4096 steps, each block of one size made of
`FANOUT` blocks of the size below, all aligned to step 0 (block = step // size). A chart of a
job of any length then reads a few hundred rollup rows of one size instead of every point
(`training.metric_series.metric_series`).

The metrics handler calls `metric_rollups_add` with the points it is about to write. Steps not
stored yet (nearly always) are merged into the rollups by one upsert (count and sum added, lowest,
highest, first and last compared in SQL). A step stored already with the same chart values (a
duplicate) changes nothing. A step re-reported with other values (a resumed attempt re-running
steps) makes the blocks it touches be recomputed from their points, since a lowest or highest
value cannot be taken back out of a rollup. Either way the rollups equal a recompute from the
stored points, in whatever order the points arrive.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from django.db import connection, transaction
from django.db.models import Q

from training.models import MetricPoint, MetricRollup, TrainingJob
from training.services.hot_sql import hot_cursor

# The chart series (training.metric_series.SERIES_KEYS). Other keys are rarely charted and are
# downsampled from the points themselves, with the same rule.
ROLLUP_KEYS = ("loss", "valid_loss", "learning_rate", "grad_norm", "tokens_per_s")
BLOCK_SIZES = (16, 64, 256, 1024, 4096)
FANOUT = 4
UPSERT_BATCH = 500  # rows per INSERT: well under either database's limit on parameters
STAT_FIELDS = ("count", "total", "min_value", "min_step", "max_value", "max_step",
               "first_step", "first_value", "last_step", "last_value")


@dataclass
class BlockStats:
    """One series over one block. Ties keep the earliest step, as the raw downsampling does."""

    count: int
    total: float
    min_value: float
    min_step: int
    max_value: float
    max_step: int
    first_step: int
    first_value: float
    last_step: int
    last_value: float

    def as_tuple(self) -> tuple:
        # dataclasses.astuple deep-copies every field: too slow for every metrics event.
        return (self.count, self.total, self.min_value, self.min_step, self.max_value, self.max_step,
                self.first_step, self.first_value, self.last_step, self.last_value)

    @classmethod
    def of_point(cls, step: int, value: float) -> "BlockStats":
        return cls(1, value, value, step, value, step, step, value, step, value)

    def merge(self, other: "BlockStats") -> None:
        self.count += other.count
        self.total += other.total
        if other.min_value < self.min_value or (other.min_value == self.min_value and other.min_step < self.min_step):
            self.min_value, self.min_step = other.min_value, other.min_step
        if other.max_value > self.max_value or (other.max_value == self.max_value and other.max_step < self.max_step):
            self.max_value, self.max_step = other.max_value, other.max_step
        if other.first_step < self.first_step:
            self.first_step, self.first_value = other.first_step, other.first_value
        if other.last_step > self.last_step:
            self.last_step, self.last_value = other.last_step, other.last_value


def numeric(value: Any) -> float | None:
    """The value a chart draws, or None (missing, text, a boolean)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def stats_from_points(points: Iterable[tuple[int, Any]], keys: Iterable[str], size: int
                      ) -> dict[tuple[str, int], BlockStats]:
    """{(key, block): stats} of (step, values) points, for blocks of `size` steps (1: one per step)."""
    keys = tuple(keys)
    out: dict[tuple[str, int], BlockStats] = {}
    for step, values in sorted(points, key=lambda p: p[0]):
        if not isinstance(values, dict):
            continue
        for key in keys:
            value = numeric(values.get(key))
            if value is None:
                continue
            point = BlockStats.of_point(step, value)
            held = out.get((key, step // size))
            if held is None:
                out[(key, step // size)] = point
            else:
                held.merge(point)
    return out


def combine(children: Iterable[BlockStats | None]) -> BlockStats | None:
    """The stats of a union of blocks (None where a block holds no value)."""
    out = None
    for child in children:
        if child is None:
            continue
        if out is None:
            out = BlockStats(*child.as_tuple())
        else:
            out.merge(child)
    return out


def rollups_from_points(points: Iterable[tuple[int, Any]], keys: Iterable[str] = ROLLUP_KEYS
                        ) -> dict[tuple[str, int, int], BlockStats]:
    """Every rollup of a set of points, {(key, size, block): stats}: the reference the write path
    must equal, and the backfill."""
    level = stats_from_points(points, keys, BLOCK_SIZES[0])
    out = {(key, BLOCK_SIZES[0], block): stats for (key, block), stats in level.items()}
    for size in BLOCK_SIZES[1:]:
        parents: dict[tuple[str, int], BlockStats] = {}
        for (key, block) in sorted(level, key=lambda kb: kb[1]):
            held = parents.get((key, block // FANOUT))
            if held is None:
                parents[(key, block // FANOUT)] = BlockStats(*level[(key, block)].as_tuple())
            else:
                held.merge(level[(key, block)])
        level = parents
        out.update({(key, size, block): stats for (key, block), stats in level.items()})
    return out


def _runs(blocks: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted blocks as inclusive (first, last) runs of consecutive blocks."""
    runs: list[list[int]] = []
    for block in sorted(set(blocks)):
        if runs and block == runs[-1][1] + 1:
            runs[-1][1] = block
        else:
            runs.append([block, block])
    return [(a, b) for a, b in runs]


def _row(job_id, key: str, size: int, block: int, stats: BlockStats) -> MetricRollup:
    return MetricRollup(job_id=job_id, key=key, size=size, block=block,
                        **dict(zip(STAT_FIELDS, stats.as_tuple())))


def metric_rollups_add(*, job_id, rows: list[tuple[int, dict]]) -> None:
    """Keep the rollups in step with `rows` ((step, values) points) that the caller is about to
    write (insert or overwrite) for the job: call it before writing them.

    Precondition: the caller holds the job's row lock (pod_event_ingest does), so nothing else
    writes this job's points or rollups between the reads here and the caller's write. Two
    queries for new steps (which of them are stored, one upsert), one for a duplicate, four when
    a stored step changes its chart values.
    """
    # A step twice in one batch: the upsert keeps the last values, so do the rollups.
    rows = list({int(step): values if isinstance(values, dict) else {} for step, values in rows}.items())
    if not rows:
        return
    stored = _stored_values(job_id, [step for step, _ in rows])
    if any(step in stored and _charted(stored[step]) != _charted(values) for step, values in rows):
        _recompute(job_id, dict(rows))
        return
    new = [(step, values) for step, values in rows if step not in stored]
    if new:
        _merge(job_id, rollups_from_points(new))


def _stored_values(job_id, steps: list[int]) -> dict[int, Any]:
    """{step: values} of the job's stored points among `steps`."""
    if connection.vendor != "postgresql":
        return dict(MetricPoint.objects.filter(job_id=job_id, step__in=steps).values_list("step", "values"))
    # By hand, with one array parameter (an IN list made a new statement text for every batch
    # size), but not prepared (training.services.hot_sql): a generic plan made while a job's
    # points were few scanned them all once they were many (0.3 ms a call and growing); planned
    # each time it is one index probe per step.
    table, q = MetricPoint._meta.db_table, connection.ops.quote_name
    with hot_cursor(connection) as cursor:
        cursor.execute(f"SELECT {q('step')}, {q('values')} FROM {q(table)} WHERE {q('job_id')} = %s::uuid "
                       f"AND {q('step')} = ANY(%s::integer[])", [job_id, steps], prepare=False)
        return {step: json.loads(values) if isinstance(values, str) else values
                for step, values in cursor.fetchall()}


def _charted(values) -> dict[str, float | None]:
    values = values if isinstance(values, dict) else {}
    return {key: numeric(values.get(key)) for key in ROLLUP_KEYS}


def _merge(job_id, rollups: dict[tuple[str, int, int], BlockStats]) -> None:
    """Add the stats of new points to the stored rollups, one upsert: the merge of BlockStats.merge
    in SQL (every SET expression reads the row as it was; PostgreSQL and SQLite 3.24+ alike)."""
    table, q = MetricRollup._meta.db_table, connection.ops.quote_name
    job_value = MetricRollup._meta.get_field("job").get_db_prep_value(job_id, connection)
    t = q(table)

    def col(name):
        return f"{t}.{q(name)}"

    def new(name):
        return f"excluded.{q(name)}"

    lower = (f"({new('min_value')} < {col('min_value')} OR ({new('min_value')} = {col('min_value')} "
             f"AND {new('min_step')} < {col('min_step')}))")
    higher = (f"({new('max_value')} > {col('max_value')} OR ({new('max_value')} = {col('max_value')} "
              f"AND {new('max_step')} < {col('max_step')}))")
    earlier = f"{new('first_step')} < {col('first_step')}"
    later = f"{new('last_step')} > {col('last_step')}"
    sets = [f"{q('count')} = {col('count')} + {new('count')}", f"{q('total')} = {col('total')} + {new('total')}"]
    for condition, names in ((lower, ("min_value", "min_step")), (higher, ("max_value", "max_step")),
                             (earlier, ("first_step", "first_value")), (later, ("last_step", "last_value"))):
        sets += [f"{q(n)} = CASE WHEN {condition} THEN {new(n)} ELSE {col(n)} END" for n in names]
    _upsert(job_value, [(*k, *stats.as_tuple()) for k, stats in rollups.items()], ", ".join(sets))


def _upsert(job_value, rows: list[tuple], sets: str) -> None:
    """Insert or merge (`sets`) the job's rollup rows, each (key, size, block, *STAT_FIELDS)."""
    if not rows:
        return
    table, q = MetricRollup._meta.db_table, connection.ops.quote_name
    columns = ("job_id", "key", "size", "block", *STAT_FIELDS)
    head = f"INSERT INTO {q(table)} ({', '.join(q(c) for c in columns)}) "
    conflict = f"ON CONFLICT ({q('job_id')}, {q('size')}, {q('key')}, {q('block')}) DO UPDATE SET {sets}"
    with hot_cursor(connection) as cursor:
        if connection.vendor == "postgresql":
            # One array per column (unnest): the statement's text is the same for any number of
            # rows, so psycopg converts it once; a VALUES list of 20 rows x 14 parameters was
            # re-parsed and quoted value by value on every metrics event.
            types = [MetricRollup._meta.get_field(c).db_type(connection) for c in columns[1:]]
            sql = f"{head}SELECT %s::uuid, u.* FROM unnest({', '.join(f'%s::{t}[]' for t in types)}) AS u {conflict}"
            for i in range(0, len(rows), UPSERT_BATCH):
                batch = rows[i:i + UPSERT_BATCH]
                cursor.execute(sql, [job_value, *(list(column) for column in zip(*batch))])
            return
        row = f"({', '.join(['%s'] * len(columns))})"
        for i in range(0, len(rows), UPSERT_BATCH):
            batch = rows[i:i + UPSERT_BATCH]
            cursor.execute(f"{head}VALUES {', '.join([row] * len(batch))} {conflict}",
                           [value for r in batch for value in (job_value, *r)])


def _recompute(job_id, overlay: dict[int, dict]) -> int:
    """Recompute the rollups of every block holding a step of `overlay` from the block's points,
    `overlay` ({step: values}, about to be written) taking the place of what is stored: the
    smallest blocks from their (at most 16) points, each larger one from its four children.
    Returns the rollup rows written or deleted."""
    touched = [sorted({s // BLOCK_SIZES[0] for s in overlay})]
    if not touched[0]:
        return 0
    for _ in BLOCK_SIZES[1:]:
        touched.append(sorted({b // FANOUT for b in touched[-1]}))

    smallest = BLOCK_SIZES[0]
    in_blocks = Q()
    for first, last in _runs(touched[0]):
        in_blocks |= Q(step__gte=first * smallest, step__lt=(last + 1) * smallest)
    points = dict(MetricPoint.objects.filter(job_id=job_id).filter(in_blocks).values_list("step", "values"))
    points.update(overlay)

    # SQL by hand for the rollups, as in _merge: the ORM's filter compilation and per-row model
    # instances cost more than the queries themselves.
    table, q = MetricRollup._meta.db_table, connection.ops.quote_name
    job_value = MetricRollup._meta.get_field("job").get_db_prep_value(job_id, connection)
    # Stored rows: every child of a touched block (the touched child among them), and the
    # touched blocks of the largest size.
    arms, params = [], [job_value, *ROLLUP_KEYS]
    for size, parents in zip(BLOCK_SIZES, touched[1:]):
        for first, last in _runs(parents):
            arms.append(f"({q('size')} = %s AND {q('block')} BETWEEN %s AND %s)")
            params += [size, first * FANOUT, last * FANOUT + FANOUT - 1]
    for first, last in _runs(touched[-1]):
        arms.append(f"({q('size')} = %s AND {q('block')} BETWEEN %s AND %s)")
        params += [BLOCK_SIZES[-1], first, last]
    columns = ("key", "size", "block", *STAT_FIELDS)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(q(c) for c in columns)} FROM {q(table)} WHERE {q('job_id')} = %s "
                       f"AND {q('key')} IN ({', '.join(['%s'] * len(ROLLUP_KEYS))}) AND ({' OR '.join(arms)})", params)
        stored = {(r[0], r[1], r[2]): BlockStats(*r[3:]) for r in cursor.fetchall()}

    fresh: dict[tuple[str, int, int], BlockStats | None] = {}
    level0 = stats_from_points(points.items(), ROLLUP_KEYS, smallest)
    for block in touched[0]:
        for key in ROLLUP_KEYS:
            fresh[(key, smallest, block)] = level0.get((key, block))
    for i, size in enumerate(BLOCK_SIZES[1:], start=1):
        below = BLOCK_SIZES[i - 1]
        for block in touched[i]:
            for key in ROLLUP_KEYS:
                children = []
                for child in range(block * FANOUT, block * FANOUT + FANOUT):
                    k = (key, below, child)
                    children.append(fresh[k] if k in fresh else stored.get(k))
                fresh[(key, size, block)] = combine(children)

    upserts = [(*k, *stats.as_tuple()) for k, stats in fresh.items() if stats is not None and stats != stored.get(k)]
    gone = [k for k, stats in fresh.items() if stats is None and k in stored]
    _upsert(job_value, upserts, ", ".join(f"{q(c)} = excluded.{q(c)}" for c in STAT_FIELDS))
    if gone:  # a re-reported step without a value it had: rare, one more query
        drop = Q()
        for key, size, block in gone:
            drop |= Q(key=key, size=size, block=block)
        MetricRollup.objects.filter(job_id=job_id).filter(drop).delete()
    return len(upserts) + len(gone)


def metric_rollups_rebuild(*, job_id, batch_size: int = 2000) -> int:
    """Recompute every rollup of a job from its points (the backfill, a repair, or after points
    were written without the pod-event path, such as a bulk load). Returns the rows written.
    Under the job's row lock, so a metrics event arriving meanwhile waits for it."""
    with transaction.atomic():
        TrainingJob.objects.select_for_update().filter(pk=job_id).values_list("pk", flat=True).first()
        points = MetricPoint.objects.filter(job_id=job_id).order_by("step").values_list("step", "values")
        rollups = rollups_from_points(points.iterator(chunk_size=batch_size))
        MetricRollup.objects.filter(job_id=job_id).delete()
        MetricRollup.objects.bulk_create([_row(job_id, *k, stats) for k, stats in rollups.items()],
                                         batch_size=batch_size)
    return len(rollups)
