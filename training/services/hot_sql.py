"""A cursor for the statements the pod-event path runs on every event (training.services.pod_events,
training.services.metric_rollups).

Django's psycopg cursors bind parameters on the client: every statement is sent as text with its
values quoted in, so PostgreSQL parses and plans it again each time (planning the job's row lock
alone cost more than executing it), and psycopg re-splits and quotes the text in Python. On
PostgreSQL this cursor binds on the server instead and prepares each statement on the connection
the first time it runs it, so from then on each event's statements are executed without parsing
and (once PostgreSQL settles on a generic plan) without planning. Same connection, same
transaction, the same Django exceptions (`wrap_database_errors`). Other databases get Django's
cursor.

Django turns psycopg's automatic preparation off (`prepare_threshold`) so that transaction-mode
connection poolers work; this cursor turns it back on for its connection, which affects only
server-binding cursors, that is, these few statements. Behind a pooler that does not
keep prepared statements (PgBouncer before 1.21 in transaction mode), set
`DATABASE_PREPARE_STATEMENTS=0`: they are then bound on the server without being prepared.

Only for hand-written statements with typed parameters (`%s::integer[]`): server-side binding
needs PostgreSQL to infer every parameter's type. They do not appear in Django's query log
(`connection.queries`, assertNumQueries); the tests that count queries count reads, which stay
on the ORM.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from django.conf import settings


@contextlib.contextmanager
def hot_cursor(connection) -> Iterator:
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    import psycopg  # noqa: PLC0415 - only with PostgreSQL

    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = connection.connection
        if settings.DATABASE_PREPARE_STATEMENTS and raw.prepare_threshold is None:
            # Prepare on first use. Only server-binding cursors (this one) ever prepare: Django's
            # client-binding cursors inline their parameters and never do.
            raw.prepare_threshold = 0
        cursor = psycopg.Cursor(raw)
        try:
            yield cursor
        finally:
            cursor.close()
