"""Fixtures shared by every test. Tests run against the real PostgreSQL and Redis named by
DATABASE_URL and REDIS_URL (`make test` sets both); storage goes to a temporary folder."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
REAL_FILE = SHARED_DATA / "brightrun-72-conversations.json"
SAMPLE_FILE = REPO_ROOT / "training" / "sample_data" / "brightrun-sample.json"


def pytest_configure(config):
    """Refuse to run the suite on SQLite. Without DATABASE_URL the settings fall back to the
    embedded SQLite default, and `pytest` run by hand with only TEST_DATABASE_URL would silently
    test a database the product does not run on (one concurrency test then fails with "database
    table is locked", others pass for the wrong reason). The pod's tests (`-p no:django`) need no
    database."""
    if not config.pluginmanager.hasplugin("django") or os.environ.get("BRIGHTRUN_TESTS_ALLOW_SQLITE") == "1":
        return
    try:
        from django.conf import settings

        engine = settings.DATABASES["default"]["ENGINE"]
    except Exception:  # noqa: BLE001 - Django not configured: pytest-django reports that itself
        return
    if "postgresql" not in engine:
        raise pytest.UsageError(
            f"the tests run on PostgreSQL and Redis, but the database is {engine!r}: run `make test` "
            "(it sets DATABASE_URL and REDIS_URL), or set DATABASE_URL=postgresql://... and REDIS_URL=redis://... "
            "yourself (BRIGHTRUN_TESTS_ALLOW_SQLITE=1 to run on SQLite anyway)")


@pytest.fixture
def real_file() -> Path:
    if not REAL_FILE.exists():
        pytest.fail(f"{REAL_FILE} is missing: the shared data folder must sit beside the checkout")
    return REAL_FILE


@pytest.fixture
def sample_file() -> Path:
    return SAMPLE_FILE


@pytest.fixture
def storage_root(tmp_path, settings):
    """Point the disk storage at a fresh folder for this test."""
    try:
        from artifacts.storage import _build
    except Exception:  # pragma: no cover - Django not configured (gpu_worker-only runs)
        yield tmp_path / "storage"
        return
    root = tmp_path / "storage"
    settings.STORAGE_BACKEND = "disk"
    settings.STORAGE_DISK_ROOT = str(root)
    _build.cache_clear()
    yield root
    _build.cache_clear()


@pytest.fixture
def organization(db):
    from accounts.services import organization_get_or_create

    return organization_get_or_create(slug="acme", name="Acme")


@pytest.fixture
def other_organization(db):
    from accounts.services import organization_get_or_create

    return organization_get_or_create(slug="globex", name="Globex")


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model

    from accounts.models import Role
    from accounts.services import membership_grant

    def make(username: str, organization, role: str = Role.ENGINEER):
        user = get_user_model().objects.create_user(username=username, password="pw-" + username)
        membership_grant(user=user, organization=organization, role=role)
        return user

    return make


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture(autouse=True)
def _isolated_from_var(request, tmp_path):
    """No test reads or writes the project's var/ folder: storage goes to a temporary folder and
    no tokenizer or model from an earlier `make demo` changes what a test sees."""
    if request.config.pluginmanager.hasplugin("django"):
        request.getfixturevalue("storage_root")
        settings = request.getfixturevalue("settings")
        settings.TOKENIZER_PATH = None
        settings.DEFAULT_BASE_MODEL = str(tmp_path / "no-default-model")
        # Failed logins are counted in the shared Redis (accounts/lockout.py): each test its own.
        settings.LOGIN_LOCKOUT_PREFIX = f"test-login-{uuid.uuid4().hex}"
