"""The pod-event path's database statements, written by hand for speed (every pod event runs them,
and a fleet sends hundreds a second): the job's locked read with its cost row, the event's
store-once insert and the metric points' upsert. Same rows and the same semantics as the ORM
calls they replace (named in each docstring); on databases other than PostgreSQL they are those
ORM calls. The rules that decide what an event does are in training/services/pod_events.py;
statement preparation is training/services/hot_sql.py.
"""
from __future__ import annotations

import json

from django.db import IntegrityError, transaction
from django.utils import timezone

from gpu_worker.contracts import PodEvent
from training.models import JobEvent, MetricPoint, TrainingJob
from training.services.hot_sql import hot_cursor
from training.services.jobs import job_locked_mark


def metric_points_write(job: TrainingJob, attempt: int, rows: list[tuple[int, dict]]) -> None:
    """Insert the points (one per step: the caller drops a step's earlier duplicates), or overwrite a
    step's values (a resumed attempt re-running steps)."""
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        MetricPoint.objects.bulk_create(
            [MetricPoint(job=job, step=step, attempt=attempt, values=vals) for step, vals in rows],
            update_conflicts=True, unique_fields=["job", "step"], update_fields=["values", "attempt"],
        )
        return
    # The same upsert with one array per column: one statement text for any number of points
    # (psycopg converts it once), where bulk_create wrote a new one for every batch size.
    table, q = MetricPoint._meta.db_table, connection.ops.quote_name
    with hot_cursor(connection) as cursor:
        cursor.execute(
            f"INSERT INTO {q(table)} ({q('job_id')}, {q('step')}, {q('attempt')}, {q('values')}, {q('created_at')}) "
            f"SELECT %s::uuid, u.step, %s::integer, u.vals::jsonb, %s::timestamptz "
            f"FROM unnest(%s::integer[], %s::text[]) AS u(step, vals) "
            f"ON CONFLICT ({q('job_id')}, {q('step')}) DO UPDATE SET {q('values')} = excluded.{q('values')}, "
            f"{q('attempt')} = excluded.{q('attempt')}",
            [job.pk, attempt, timezone.now(), [step for step, _ in rows], [json.dumps(v) for _, v in rows]])


_JOB_LOCKED: dict[str, tuple] = {}  # per database vendor: (SQL, job converters, cost converters)


def _job_locked_plan(connection) -> tuple:
    from billing.models import JobCost  # noqa: PLC0415

    plan = _JOB_LOCKED.get(connection.vendor)
    if plan is None:
        q = connection.ops.quote_name
        columns = [f"j.{q(f.column)}" for f in TrainingJob._meta.concrete_fields]
        columns += [f"c.{q(f.column)}" for f in JobCost._meta.concrete_fields]
        lock = " FOR UPDATE OF j" if connection.features.has_select_for_update_of else ""
        sql = (f"SELECT {', '.join(columns)} FROM {q(TrainingJob._meta.db_table)} j "
               f"LEFT JOIN {q(JobCost._meta.db_table)} c ON c.{q('job_id')} = j.{q('id')} WHERE j.{q('id')} = %s{lock}")
        plan = _JOB_LOCKED[connection.vendor] = (sql, _converters(TrainingJob, connection), _converters(JobCost, connection))
    return plan


def _converters(model, connection) -> list[tuple]:
    """Per concrete field, (column, what the ORM applies to its value as read): the backend's and
    the field's own converters, as SQLCompiler.get_converters gathers them."""
    out = []
    for field in model._meta.concrete_fields:
        col = field.get_col(model._meta.db_table)
        out.append((col, connection.ops.get_db_converters(col) + col.get_db_converters(connection)))
    return out


def _instance(model, connection, converters: list[tuple], values):
    converted = []
    for (col, field_converters), value in zip(converters, values):
        for converter in field_converters:
            value = converter(value, col, connection)
        converted.append(value)
    return model.from_db(connection.alias, [f.attname for f in model._meta.concrete_fields], converted)


def job_locked(job_id) -> TrainingJob:
    """The job, locked (FOR UPDATE OF the job's row), with its cost row (not locked) attached as
    `job.cost`: what `select_for_update(of=("self",)).select_related("cost").get(pk=job_id)`
    gives, without compiling that query on every event (it was a fifth of the web process's CPU
    per pod event). Raises TrainingJob.DoesNotExist."""
    from billing.models import JobCost  # noqa: PLC0415

    connection = transaction.get_connection()
    pk = TrainingJob._meta.pk.get_db_prep_value(job_id, connection)
    sql, job_converters, cost_converters = _job_locked_plan(connection)
    with hot_cursor(connection) as cursor:
        cursor.execute(sql, [pk])
        row = cursor.fetchone()
    if row is None:
        raise TrainingJob.DoesNotExist(f"no job {job_id}")
    n = len(TrainingJob._meta.concrete_fields)
    job = _instance(TrainingJob, connection, job_converters, row[:n])
    if row[n] is not None:  # the cost row's id: a job without one gets DoesNotExist on access, as before
        cost = _instance(JobCost, connection, cost_converters, row[n:])
        TrainingJob._meta.get_field("cost").set_cached_value(job, cost)
        JobCost._meta.get_field("job").set_cached_value(cost, job)
    return job_locked_mark(job)  # job_move accepts it: it holds the row lock_locked_mark(job)


# event_store's statement on PostgreSQL, written once.
_EVENT_COLUMNS = [f for f in JobEvent._meta.concrete_fields if not f.primary_key]
_EVENT_INSERT = ('INSERT INTO "%s" (%s) VALUES (%s) ON CONFLICT (job_id, event_id) DO NOTHING RETURNING 1' % (
    JobEvent._meta.db_table, ", ".join(f'"{f.column}"' for f in _EVENT_COLUMNS), ", ".join(["%s"] * len(_EVENT_COLUMNS))))


def event_store(job: TrainingJob, event: PodEvent) -> bool:
    """Store the pod event once (the caller holds the job's lock): False when it is already stored.
    On PostgreSQL one INSERT ... ON CONFLICT DO NOTHING; elsewhere a savepoint around the INSERT,
    whose unique-constraint error marks the duplicate."""
    fields = dict(job=job, event_id=event.event_id, source=JobEvent.SOURCE_POD, type=event.type,
                  attempt=event.attempt, seq=event.seq, step=event.step, data=event.data,
                  pod_timestamp=event.timestamp, message=str(event.data.get("message", ""))[:2000])
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        try:
            with transaction.atomic():
                JobEvent.objects.create(**fields)
        except IntegrityError:
            return False
        return True
    # Two round trips fewer per event than the savepoint (SAVEPOINT, RELEASE), on the hot path.
    row = JobEvent(**fields, created_at=timezone.now())
    values = [f.get_db_prep_save(f.pre_save(row, add=True), connection) for f in _EVENT_COLUMNS]
    with hot_cursor(connection) as cursor:
        cursor.execute(_EVENT_INSERT, values)
        return cursor.fetchone() is not None
