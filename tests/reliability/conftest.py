"""The reliability suite: fixtures shared by its tests, and the table of figures printed at the
end of the run (every test records what it measured through figures.record)."""
from __future__ import annotations

import pytest

from tests.jobs.conftest import job_stack, tiny_model_path  # noqa: F401  (fixtures reused as they are)
from tests.reliability.figures import FIGURES, FULL


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not FIGURES:
        return
    tr = terminalreporter
    tr.section(f"reliability figures ({'full size, RELIABILITY_FULL=1' if FULL else 'fast size'})")
    rows = [("item", "figure", "measured", "target", "size")] + [
        (f.item, f.name, f.value, f.target, f.size) for f in FIGURES]
    widths = [min(60, max(len(r[i]) for r in rows)) for i in range(5)]
    for n, row in enumerate(rows):
        tr.write_line("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            tr.write_line("  ".join("-" * w for w in widths))


@pytest.fixture
def isolated_queue(settings):
    """Tasks sent by a test without a worker go to a queue of their own, emptied afterwards, so
    no other worker (other sessions share the machine's Redis) ever runs them."""
    import uuid

    from config.celery import app as celery_app

    queue = f"test-rel-{uuid.uuid4().hex[:10]}"
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    yield queue
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)
        conn.default_channel.queue_purge(f"{queue}.pods")  # pod control (config/celery_routes.py)
    celery_app.conf.task_default_queue = previous


from tests.api.conftest import client_as  # noqa: E402,F401  (the API tests' fixture, reused)
