"""tests/conftest.py refuses to run the suite on SQLite: `pytest` by hand without DATABASE_URL
falls back to the embedded SQLite default, which the product does not run on."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def _pytest_without_database_url(**extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BRIGHTRUN_TESTS_ALLOW_SQLITE")}
    # What someone who read an old README would set: it is not what the settings read.
    env.update(TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/brightrun", **extra)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
                           "tests/core/test_architecture.py"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_the_suite_refuses_to_start_on_sqlite_and_says_how_to_fix_it():
    run = _pytest_without_database_url()
    assert run.returncode == 4, run.stdout + run.stderr  # pytest's usage error
    out = run.stdout + run.stderr
    assert "the tests run on PostgreSQL and Redis, but the database is 'django.db.backends.sqlite3'" in out
    assert "DATABASE_URL=postgresql://" in out


@pytest.mark.slow
def test_sqlite_is_allowed_only_when_asked_for():
    run = _pytest_without_database_url(BRIGHTRUN_TESTS_ALLOW_SQLITE="1")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 tests collected" in run.stdout
