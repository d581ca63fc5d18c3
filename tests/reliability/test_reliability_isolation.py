"""Item 7 of issue 10: another organization's user gets nothing.

- every `/api/...` route and method: the matrix of tests/api/test_api_isolation.py, run from
  here so its counts reach the table (not duplicated);
- every OpenAI-compatible `/v1/...` route (finetuning) and method, walked from the URL resolver,
  with an API key of another organization (new here);
- download links: another organization cannot obtain one (every artifact of the job), a link
  edited to name another object is refused, an expired one is refused.
"""
from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.models import Role
from tests.conftest import SAMPLE_FILE
from tests.reliability.figures import record

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.mark.slow
def test_api_matrix_reused(client_as, organization, other_organization, make_user, capsys):
    from tests.api.test_api_isolation import test_no_2xx_for_another_organization as matrix

    matrix(client_as, organization, other_organization, make_user)  # asserts 0 leaks
    line = capsys.readouterr().out
    found = re.search(r"isolation matrix: (\d+) routes, (\d+) requests, (\d+) leaks", line)
    assert found, line
    record("7 isolation", "/api/ routes × methods as another org's admin (tests/api matrix)",
           f"{found[1]} routes, {found[2]} requests: {found[3]} successes", target="0")


def v1_routes() -> list[str]:
    out = []

    def walk(patterns, prefix):
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, route)
            elif isinstance(p, URLPattern) and route.startswith("v1/") and "<" in route or route in (
                    "v1/files", "v1/fine_tuning/jobs"):
                out.append(route)

    walk(get_resolver().url_patterns, "")
    return out


@pytest.fixture
def v1_owned(organization, make_user, isolated_queue, settings, tmp_path):
    """An uploaded file and a fine-tuning job of `organization`, made through the /v1/ API."""
    from finetuning.services import api_key_issue

    # `model` must be a hub id or a folder under MODELS_DIR (issue 16): "tiny" is one here.
    settings.MODELS_DIR = str(tmp_path / "models")
    (tmp_path / "models" / "tiny").mkdir(parents=True)

    owner = make_user("v1-owner", organization, Role.ADMIN)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_issue(user=owner, name='owner')[1]}")
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = client.post("/v1/files", {"purpose": "fine-tune",
                                       "file": SimpleUploadedFile("acme-secret.json", SAMPLE_FILE.read_bytes())})
    assert upload.status_code == 200, upload.content
    file_id = upload.json()["id"]
    created = client.post("/v1/fine_tuning/jobs", {"model": "tiny", "training_file": file_id,
                                                   "suffix": "acme-secret"}, content_type="application/json")
    assert created.status_code == 200, created.content
    return client, file_id, created.json()["id"]


def test_v1_routes_refuse_another_organization(v1_owned, other_organization, make_user):
    from finetuning.services import api_key_issue

    owner, file_id, job_id = v1_owned
    intruder = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_issue(user=make_user('v1-intruder', other_organization, Role.ADMIN))[1]}")
    routes = v1_routes()
    assert {"v1/files", "v1/files/<str:file_id>", "v1/fine_tuning/jobs/<str:job_id>/cancel"} <= set(routes), routes
    body = {"model": "tiny", "training_file": file_id, "purpose": "fine-tune"}
    leaks, checked, controls = [], 0, 0
    for route in routes:
        url = "/" + route.replace("<str:file_id>", file_id).replace("<str:job_id>", job_id)
        for method in METHODS:
            if method == "get":
                response = intruder.get(url)
            else:
                response = getattr(intruder, method)(url, body, content_type="application/json")
            checked += 1
            text = response.content.decode(errors="replace")
            # A 404 may echo the id the caller sent; what must never show is the owner's data.
            ok = 200 <= response.status_code < 300
            if ("<" in route and ok) or (ok and (file_id in text or job_id in text)) or "acme-secret" in text:
                leaks.append(f"{method.upper()} {route} → {response.status_code}")
        if "<" in route and "cancel" not in route and "pause" not in route and "resume" not in route:
            controls += owner.get(url).status_code == 200  # the same URL works for its owner
    # The intruder created nothing out of the owner's file.
    from finetuning.models import FineTuningJob

    assert FineTuningJob.objects.filter(organization=other_organization).count() == 0
    record("7 isolation", "/v1/ (OpenAI-compatible) routes × methods as another org's key",
           f"{len(routes)} routes, {checked} requests: {len(leaks)} successes", target="0")
    assert not leaks, leaks
    assert controls >= 4


def test_download_links_cannot_be_obtained_edited_or_used_late(organization, other_organization, make_user, tmp_path,
                                                               monkeypatch, settings):
    import django.core.signing as signing
    from rest_framework.test import APIClient

    from artifacts.services import job_artifacts_register
    from tests.artifacts.artifacts_support import completed_job

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"weights" * 100)
    (adapter / "adapter_config.json").write_text('{"r": 4, "base_model_name_or_path": "tiny"}')
    settings.DOWNLOAD_URL_TTL_S = 60
    job = completed_job(organization, adapter_dir=adapter)
    artifacts = job_artifacts_register(job_id=job.pk)
    outsider, member = APIClient(), APIClient()
    outsider.force_authenticate(make_user("dl-outsider", other_organization, Role.ADMIN))
    member.force_authenticate(make_user("dl-member", organization, Role.VIEWER))
    obtained = 0
    for art in artifacts:
        for url in (f"/api/v1/artifacts/{art.pk}/download/", f"/api/v1/artifacts/{art.pk}/"):
            r = outsider.get(url)
            obtained += 200 <= r.status_code < 300 or b"/artifacts/files/" in r.content
    listed = outsider.get(f"/api/v1/artifacts/?job={job.pk}").json()["results"]
    # Links of the owner's organization: one per file.
    links = []
    for art in artifacts:
        data = member.get(f"/api/v1/artifacts/{art.pk}/download/").json()
        links += [data["url"]] if data.get("url") else [f["url"] for f in data.get("files", []) if f.get("url")]
    anonymous = Client()
    assert links and all(anonymous.get(u).status_code == 200 for u in links)
    # An edited link (another object's key spliced in, or one character changed) is refused.
    edited = 0
    for i, url in enumerate(links):
        token = url.rstrip("/").rsplit("/", 1)[1]
        payload, _, sig = token.partition(":")
        other_sig = links[(i + 1) % len(links)].rstrip("/").rsplit("/", 1)[1].rpartition(":")[2]
        for forged in (url.replace(token, token[:-2] + ("AA" if not token.endswith("AA") else "BB")),
                       url.replace(token, token.rpartition(":")[0] + ":" + other_sig)):
            if forged != url:
                edited += anonymous.get(forged).status_code == 200 and links[(i + 1) % len(links)] != forged
    real_time = signing.time.time

    class Late:
        @staticmethod
        def time():
            return real_time() + settings.DOWNLOAD_URL_TTL_S + 1

    monkeypatch.setattr(signing, "time", Late)
    expired_ok = sum(anonymous.get(u).status_code == 200 for u in links)
    monkeypatch.undo()
    record("7 isolation", "download links: another org obtains / edited link works / expired link works",
           f"{obtained + len(listed)} / {edited} / {expired_ok} (of {len(artifacts)} artifacts, {len(links)} links)",
           target="0 / 0 / 0")
    record("7 isolation", "websockets (another org's job, list socket, tickets)",
           "tests/websockets/test_ws_jobs.py: test_refusals, test_job_list_socket_is_the_organizations, "
           "test_ticket_for_token_clients_single_use")
    assert obtained == 0 and not listed and edited == 0 and expired_ok == 0
