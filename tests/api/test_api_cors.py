"""CORS for the OpenAI-style API from a browser (openai-node with dangerouslyAllowBrowser): the
preflight allows the headers the client sends, and the headers it reads are exposed."""
import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

ORIGIN = "https://app.example.com"
# What openai-node 4.x/5.x sends on a fine-tuning job create.
SENT = ["authorization", "content-type", "idempotency-key", "x-stainless-arch", "x-stainless-lang",
        "x-stainless-os", "x-stainless-package-version", "x-stainless-retry-count", "x-stainless-runtime",
        "x-stainless-runtime-version", "x-stainless-timeout", "openai-organization", "openai-project"]


@pytest.fixture
def frontend(settings):
    settings.CORS_ALLOWED_ORIGINS = [ORIGIN]


@pytest.mark.slow
def test_preflight_allows_openai_node_headers(frontend):
    response = Client().options("/v1/fine_tuning/jobs", HTTP_ORIGIN=ORIGIN, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
                                HTTP_ACCESS_CONTROL_REQUEST_HEADERS=",".join(SENT))
    assert response.status_code == 200
    assert response["access-control-allow-origin"] == ORIGIN
    allowed = {h.strip() for h in response["access-control-allow-headers"].split(",")}
    assert set(SENT) <= allowed, set(SENT) - allowed


def test_retry_and_replay_headers_are_exposed(frontend, organization, make_user):
    from finetuning.services import api_key_issue

    key = api_key_issue(user=make_user("k", organization), name="t")[1]
    response = Client().delete("/v1/fine_tuning/jobs", HTTP_ORIGIN=ORIGIN, HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 405 and response["x-should-retry"] == "false"
    exposed = {h.strip() for h in response["access-control-expose-headers"].split(",")}
    assert {"x-should-retry", "x-idempotent-replay"} <= exposed


def test_other_origins_get_no_cors_headers(frontend):
    response = Client().options("/v1/files", HTTP_ORIGIN="https://evil.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")
    assert "access-control-allow-origin" not in response
