"""Listing and downloading artifacts: organization isolation, roles, short-lived links that are
refused once expired (disk tokens with a simulated clock; S3 presigned URLs on moto)."""
from __future__ import annotations

import pytest
import requests

from accounts.models import Role
from artifacts.services import job_artifacts_register
from tests.artifacts.artifacts_support import completed_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake_adapter(tmp_path):
    d = tmp_path / "adapter"
    d.mkdir()
    (d / "adapter_model.safetensors").write_bytes(b"weights" * 100)
    (d / "adapter_config.json").write_text('{"r": 4, "base_model_name_or_path": "tiny"}')
    (d / "tokenizer.json").write_text("{}")
    (d / "tokenizer_config.json").write_text("{}")
    (d / "manifest.json").write_text("{}")
    return d


def login(api_client, user):
    api_client.force_authenticate(user)
    return api_client


def test_list_by_job_and_download_on_disk(organization, make_user, api_client, fake_adapter, settings):
    job = completed_job(organization, adapter_dir=fake_adapter)
    job_artifacts_register(job_id=job.pk)
    viewer = make_user("vera", organization, role=Role.VIEWER)
    client = login(api_client, viewer)
    listing = client.get(f"/api/v1/artifacts/?job={job.pk}")
    assert listing.status_code == 200
    kinds = sorted(a["kind"] for a in listing.json()["results"])
    assert kinds == ["adapter", "metrics", "metrics", "metrics", "metrics", "tokenizer"]
    adapter = next(a for a in listing.json()["results"] if a["kind"] == "adapter")
    assert adapter["version"] == 1 and adapter["is_current"]
    assert [f["path"] for f in adapter["files"]] == ["adapter_config.json", "adapter_model.safetensors"]

    links = client.get(f"/api/v1/artifacts/{adapter['id']}/download/")
    assert links.status_code == 200, links.content
    body = links.json()
    assert body["expires_in"] == settings.DOWNLOAD_URL_TTL_S
    weights = next(f for f in body["files"] if f["path"] == "adapter_model.safetensors")
    assert weights["url"].startswith("http://testserver/api/v1/artifacts/files/")
    api_client.force_authenticate(None)  # the link is the credential, like a presigned URL
    got = api_client.get(weights["url"])
    assert got.status_code == 200
    assert b"".join(got.streaming_content) == b"weights" * 100
    assert 'filename="adapter_model.safetensors"' in got["Content-Disposition"]

    csv_row = next(a for a in listing.json()["results"] if a["name"] == "training-curve.csv")
    link = login(api_client, viewer).get(f"/api/v1/artifacts/{csv_row['id']}/download/").json()["url"]
    text = b"".join(api_client.get(link).streaming_content).decode()
    assert text.splitlines()[0].startswith("step,attempt,epoch,loss,learning_rate")
    assert len(text.splitlines()) == 13  # header + 12 steps


def test_expired_or_tampered_disk_links_are_refused(organization, make_user, api_client, fake_adapter, monkeypatch,
                                                    settings):
    import django.core.signing as signing

    settings.DOWNLOAD_URL_TTL_S = 60
    job = completed_job(organization, adapter_dir=fake_adapter)
    arts = job_artifacts_register(job_id=job.pk)
    report = next(a for a in arts if a.name == "eval.json")
    user = make_user("erin", organization)
    url = login(api_client, user).get(f"/api/v1/artifacts/{report.pk}/download/").json()["url"]
    api_client.force_authenticate(None)
    assert api_client.get(url).status_code == 200

    real_time = signing.time.time

    class Clock:  # TimestampSigner reads time.time() from django.core.signing's `time`
        @staticmethod
        def time():
            return real_time() + 61

    monkeypatch.setattr(signing, "time", Clock)
    expired = api_client.get(url)
    assert expired.status_code == 403
    assert "expired" in expired.json()["error"]["message"]
    monkeypatch.undo()
    assert api_client.get(url).status_code == 200
    token = url.rstrip("/").rsplit("/", 1)[1]
    forged = url.replace(token, token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB"))
    assert api_client.get(forged).status_code == 403
    # A download token does not allow uploads.
    assert api_client.put(url, data=b"x", content_type="application/octet-stream").status_code == 403


def test_other_organizations_cannot_see_or_download(organization, other_organization, make_user, api_client,
                                                     fake_adapter):
    job = completed_job(organization, adapter_dir=fake_adapter)
    adapter = next(a for a in job_artifacts_register(job_id=job.pk) if a.kind == "adapter")
    outsider = make_user("otto", other_organization, role=Role.ADMIN)
    client = login(api_client, outsider)
    assert client.get(f"/api/v1/artifacts/?job={job.pk}").json()["results"] == []
    assert client.get(f"/api/v1/artifacts/{adapter.pk}/").status_code == 404
    denied = client.get(f"/api/v1/artifacts/{adapter.pk}/download/")
    assert denied.status_code == 404 and "url" not in denied.json()
    assert client.post(f"/api/v1/jobs/{job.pk}/package/").status_code == 404
    api_client.force_authenticate(None)
    assert api_client.get(f"/api/v1/artifacts/{adapter.pk}/download/").status_code in (401, 403)


def test_viewers_download_but_do_not_build_packages(organization, make_user, api_client, fake_adapter):
    job = completed_job(organization, adapter_dir=fake_adapter)
    job_artifacts_register(job_id=job.pk)
    client = login(api_client, make_user("vic", organization, role=Role.VIEWER))
    refused = client.post(f"/api/v1/jobs/{job.pk}/package/")
    assert refused.status_code == 403
    assert "engineer or admin" in refused.json()["error"]["message"]


@pytest.mark.slow
def test_s3_download_links_are_presigned_and_expire_in_the_setting(organization, make_user, api_client, s3_settings,
                                                                   fake_adapter):
    s3_settings.DOWNLOAD_URL_TTL_S = 120
    job = completed_job(organization, adapter_dir=fake_adapter)
    arts = job_artifacts_register(job_id=job.pk)
    assert arts[0].uri.startswith(f"s3://{s3_settings.S3_BUCKET}/brightrun/jobs/")
    ev = next(a for a in arts if a.name == "eval.json")
    body = login(api_client, make_user("sam", organization, role=Role.VIEWER)).get(
        f"/api/v1/artifacts/{ev.pk}/download/").json()
    assert body["url"].startswith(s3_settings.S3_ENDPOINT_URL) and "X-Amz-Expires=120" in body["url"]
    resp = requests.get(body["url"], timeout=10)
    assert resp.status_code == 200 and b"adapted_perplexity" in resp.content
