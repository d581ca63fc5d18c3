"""Partial indexes for the two reads of a job's events that must not grow with its metrics events
(docs/performance.md): metering's billable stretches (its transitions: `to_status <> ''`) and the
job page's recent events (everything but metrics, heartbeats and stage reports). A long job has
one metrics event per step; without these both reads walk all of them.

Written as SQL (PostgreSQL and SQLite both take partial indexes) so the models stay as they are;
the migration state does not change, so `makemigrations` finds nothing to add.
"""
from django.db import migrations

INDEXES = {
    "event_job_transitions": "(job_id, created_at, id) WHERE to_status <> ''",
    "event_job_recent": "(job_id, created_at, id) WHERE type NOT IN ('metrics', 'heartbeat', 'stage_changed')",
}


class Migration(migrations.Migration):
    dependencies = [("training", "0004_job_template")]

    operations = [
        migrations.RunSQL(f"CREATE INDEX IF NOT EXISTS {name} ON training_jobevent {spec}",
                          reverse_sql=f"DROP INDEX IF EXISTS {name}")
        for name, spec in INDEXES.items()
    ]
