"""POST/GET /api/v1/datasets/: upload, list, detail, errors and organization isolation."""
import io
import json

import pytest

from training.models import Dataset

pytestmark = pytest.mark.django_db


def _upload(client, path_or_bytes, name="file.json", **extra):
    data = path_or_bytes.read_bytes() if hasattr(path_or_bytes, "read_bytes") else path_or_bytes
    f = io.BytesIO(data)
    f.name = name
    return client.post("/api/v1/datasets/", {"file": f, **extra}, format="multipart")


@pytest.mark.slow
def test_upload_list_detail(api_client, organization, make_user, sample_file):
    api_client.force_authenticate(make_user("eng", organization))
    created = _upload(api_client, sample_file, name="sample.json", val_fraction=0.25, seed=3)
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["created"] is True and body["conversation_count"] >= 12
    assert body["stats"]["train_conversations"] + body["stats"]["val_conversations"] == body["conversation_count"]
    again = _upload(api_client, sample_file, name="sample.json")
    assert again.status_code == 200 and again.json()["id"] == body["id"]

    listed = api_client.get("/api/v1/datasets/").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == body["id"]
    assert "stats" not in listed["results"][0]  # list stays small; detail has the stats
    detail = api_client.get(f"/api/v1/datasets/{body['id']}/").json()
    assert detail["stats"]["trainable_turns"] == body["trainable_turns"]


def test_bad_upload_is_400_with_location(api_client, organization, make_user):
    api_client.force_authenticate(make_user("eng", organization))
    response = _upload(api_client, b'{"training_file_metadata": {"format_spec": "v9"}, "conversations": []}')
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_format_spec"
    assert error["detail"]["location"] == "$.training_file_metadata.format_spec"
    assert Dataset.objects.count() == 0


def test_missing_file_field(api_client, organization, make_user):
    api_client.force_authenticate(make_user("eng", organization))
    response = api_client.post("/api/v1/datasets/", {"name": "x"}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()["error"]["message"]


def test_too_large_is_413(api_client, organization, make_user, settings):
    settings.DATASET_MAX_BYTES = 100
    api_client.force_authenticate(make_user("eng", organization))
    response = _upload(api_client, b"{" + b" " * 500 + b"}")
    assert response.status_code == 413
    assert "DATASET_MAX_BYTES" in response.json()["error"]["message"]


def test_other_organization_sees_nothing(api_client, organization, other_organization, make_user, sample_file):
    api_client.force_authenticate(make_user("eng", organization))
    ds_id = _upload(api_client, sample_file).json()["id"]
    api_client.force_authenticate(make_user("spy", other_organization))
    assert api_client.get("/api/v1/datasets/").json()["count"] == 0
    assert api_client.get(f"/api/v1/datasets/{ds_id}/").status_code == 404


def test_anonymous_is_refused(api_client):
    response = api_client.get("/api/v1/datasets/")
    assert response.status_code in (401, 403)
    assert "error" in response.json()


def test_user_without_organization(api_client, db):
    from django.contrib.auth import get_user_model

    api_client.force_authenticate(get_user_model().objects.create_user("loner"))
    response = api_client.get("/api/v1/datasets/")
    assert response.status_code == 403
    assert "no organization" in response.json()["error"]["message"]


def test_schema_lists_dataset_routes(api_client):
    response = api_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert "/api/v1/datasets/" in schema["paths"] and "post" in schema["paths"]["/api/v1/datasets/"]
