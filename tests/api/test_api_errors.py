"""One error format on every /api/ and /v1/ path: unknown paths, malformed ids, wrong methods,
missing objects and invalid input all answer JSON with a specific code; the slash-less spelling of
a route is routed, not redirected (a browser `fetch` turns a 301 on a POST into a GET)."""
import uuid

import pytest
from django.test import Client

from tests.jobs.factories import make_dataset
from training.models import TrainingJob

pytestmark = pytest.mark.django_db


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    error = response.json()["error"]
    assert set(error) == {"code", "message", "detail"} and error["code"] == code, error
    assert error["message"]
    return error


@pytest.mark.parametrize("path", ["/api/v1/nope/", "/api/v1/nope", "/api/v1/jobs/not-a-uuid/",
                                  "/api/v1/jobs/not-a-uuid/cancel/", "/api/v1/templates/abc/", "/api/anything"])
def test_unknown_paths_and_malformed_ids_are_json_404(client_as, organization, path):
    eng = client_as("eng", organization)
    for method in ("get", "post", "delete"):
        error = _error(getattr(eng, method)(path), 404, "not_found")
        assert path in error["message"]


def test_missing_object_is_not_found(client_as, organization):
    eng = client_as("eng", organization)
    _error(eng.get(f"/api/v1/jobs/{uuid.uuid4()}/"), 404, "not_found")
    _error(eng.get(f"/api/v1/datasets/{uuid.uuid4()}/"), 404, "not_found")
    _error(eng.get("/api/v1/templates/999999/"), 404, "not_found")


def test_wrong_method_validation_and_auth_codes(client_as, organization):
    eng = client_as("eng", organization)
    _error(eng.delete("/api/v1/jobs/"), 405, "method_not_allowed")
    _error(eng.put("/api/v1/presets/", {}, format="json"), 405, "method_not_allowed")
    error = _error(eng.post("/api/v1/jobs/", {}, format="json"), 400, "validation_error")
    assert "dataset" in error["message"] and "dataset" in error["detail"]
    _error(eng.post("/api/v1/jobs/", "{not json", content_type="application/json"), 400, "parse_error")
    _error(Client().get("/api/v1/jobs/"), 401, "not_authenticated")


def test_slashless_routes_answer_without_redirect(client_as, organization):
    eng = client_as("eng", organization)
    dataset = make_dataset(organization)
    created = eng.post("/api/v1/jobs", {"dataset": str(dataset.pk), "preset": "conservative", "name": "no-slash"},
                       format="json")
    assert created.status_code == 201, created.content[:300]
    job_id = created.json()["id"]
    assert TrainingJob.objects.filter(pk=job_id, name="no-slash").exists()
    listed = eng.get("/api/v1/jobs")
    assert listed.status_code == 200 and listed.json()["count"] == 1
    detail = eng.get(f"/api/v1/jobs/{job_id}")
    assert detail.status_code == 200 and detail.json()["name"] == "no-slash"
    assert eng.get("/api/v1/presets").status_code == 200
    _error(eng.get(f"/api/v1/jobs/{job_id}/nonsense"), 404, "not_found")


def test_slashless_route_keeps_csrf_for_session_auth(organization, make_user):
    """The fallback calls the route's view itself; a session-authenticated POST without a CSRF
    token is still refused, with or without the slash."""
    make_user("sess", organization)
    client = Client(enforce_csrf_checks=True)
    assert client.login(username="sess", password="pw-sess")
    for path in ("/api/v1/jobs/", "/api/v1/jobs"):
        response = client.post(path, {}, content_type="application/json")
        assert response.status_code == 403, (path, response.status_code)
        assert response.json()["error"]["code"] == "permission_denied"


def test_v1_errors_are_openai_shaped_with_or_without_slash(organization, make_user):
    from finetuning.services import api_key_issue

    key = api_key_issue(user=make_user("k", organization), name="t")[1]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    unknown = client.get("/v1/nothing/here")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_url"
    assert set(unknown.json()["error"]) == {"message", "type", "param", "code"}
    assert client.get("/v1/fine_tuning/jobs/").status_code == 200
    assert client.get("/v1/files/").status_code == 200
    missing = client.get("/v1/fine_tuning/jobs/ftjob-nope/")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = client.delete("/v1/fine_tuning/jobs")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
