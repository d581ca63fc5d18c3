"""GET /healthz against the real services, and with each one down."""
import pytest

pytestmark = pytest.mark.django_db


def test_all_ok(client):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert set(body["checks"]) == {"database", "broker", "channel_layer", "storage"}
    assert all(c["status"] == "ok" for c in body["checks"].values())


def test_broker_down(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert body["checks"]["broker"]["status"] == "error"
    assert "Connection" in body["checks"]["broker"]["error"] or "refused" in body["checks"]["broker"]["error"]
    assert body["checks"]["database"]["status"] == "ok"


def test_channel_layer_down(client, settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}}
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    try:
        response = client.get("/healthz")
    finally:
        channel_layers.backends.clear()
    assert response.status_code == 503
    assert response.json()["checks"]["channel_layer"]["status"] == "error"


def test_storage_down(client, settings, tmp_path):
    from artifacts.storage import _build

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the storage folder should be")
    settings.STORAGE_DISK_ROOT = str(blocker)
    _build.cache_clear()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"]["status"] == "error"


def test_database_down(client, monkeypatch):
    from config import health

    def broken():
        raise ConnectionError("could not connect to server")

    monkeypatch.setitem(health.CHECKS, "database", broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert "could not connect" in response.json()["checks"]["database"]["error"]
