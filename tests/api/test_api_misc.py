"""Schema and its offline UI, token auth, CORS for the frontend, the error format, presets,
me, websocket tickets."""
import pytest
from django.test import Client

from accounts.models import Role

pytestmark = pytest.mark.django_db


def test_schema_and_offline_docs(client_as, organization):
    eng = client_as("eng", organization)
    schema = eng.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/v1/jobs/", "/api/v1/jobs/{id}/metrics/series/", "/api/v1/templates/", "/api/v1/ws-tickets/",
                 "/api/v1/jobs/{id}/metrics/export/{fmt}/"):
        assert path in paths, path
    params = {p["name"] for p in paths["/api/v1/jobs/"]["get"]["parameters"]}
    assert {"status", "dataset", "preset", "client", "created_by", "created_after", "ordering", "page"} <= params
    docs = Client()
    docs.force_login(eng.user)
    page = docs.get("/api/docs/").content.decode()
    assert "cdn.jsdelivr.net" not in page and "unpkg.com" not in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert docs.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js").status_code == 200


def test_token_auth_round_trip(organization, make_user):
    make_user("frontend", organization)
    client = Client()
    token = client.post("/api/v1/auth/token/", {"username": "frontend", "password": "pw-frontend"}).json()["token"]
    me = client.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Token {token}").json()
    assert me["organization"]["slug"] == "acme" and me["role"] == "engineer" and me["permissions"]["run_jobs"]
    bad = client.get("/api/v1/me/", HTTP_AUTHORIZATION="Token nope")
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "authentication_failed"


def test_cors_for_frontend_origin_and_csrf_for_sessions(settings, organization, make_user):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    make_user("eng", organization)
    client = Client()
    preflight = client.options("/api/v1/jobs/", HTTP_ORIGIN="https://app.example.com",
                               HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
                               HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type")
    assert preflight["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "authorization" in preflight["Access-Control-Allow-Headers"].lower()
    other = client.options("/api/v1/jobs/", HTTP_ORIGIN="https://evil.example",
                           HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert "Access-Control-Allow-Origin" not in other
    # A session (the dashboard) must send the CSRF token on writes; a token client does not.
    session = Client(enforce_csrf_checks=True)
    session.login(username="eng", password="pw-eng")
    refused = session.post("/api/v1/templates/", {"name": "x"}, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]["message"]


def test_presets_me_and_tickets(client_as, organization):
    viewer = client_as("viewer", organization, Role.VIEWER)
    presets = viewer.get("/api/v1/presets/").json()
    assert [p["name"] for p in presets] == ["conservative", "balanced", "aggressive"]
    assert presets[1]["when_to_choose"] and presets[1]["hyperparameters"]["lora_r"] == 16
    assert viewer.get("/api/v1/me/").json()["permissions"] == {"read": True, "run_jobs": False, "manage_budgets": False}
    ticket = viewer.post("/api/v1/ws-tickets/")
    assert ticket.status_code == 201 and ticket.json()["expires_in"] > 0
    assert ticket.json()["urls"]["jobs"].startswith("/ws/jobs/?ticket=")
