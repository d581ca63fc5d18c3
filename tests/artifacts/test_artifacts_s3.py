"""The S3 backend against real S3-compatible servers on loopback: moto's server mode and, where
installed, SeaweedFS (which also checks presigned signatures, expiry and POST policies)."""
from __future__ import annotations

import hashlib
import os
import time

import pytest
import requests

from artifacts.storage import StorageError
from artifacts.storage.s3 import S3Storage

from tests.artifacts.artifacts_support import ACCESS_KEY, SECRET_KEY


def make_storage(server, **kw) -> S3Storage:
    return S3Storage(bucket=server.new_bucket(), endpoint_url=server.endpoint, region="us-east-1",
                     access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, prefix="brightrun",
                     addressing_style="path", **kw)


@pytest.mark.slow
def test_put_get_list_delete(s3_server, tmp_path):
    storage = make_storage(s3_server)
    a = storage.put_bytes("jobs/o/j/adapter/adapter_config.json", b'{"r": 4}', "application/json")
    assert a.uri == f"s3://{storage.bucket}/brightrun/jobs/o/j/adapter/adapter_config.json"
    assert a.sha256 == hashlib.sha256(b'{"r": 4}').hexdigest()
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(4096))
    b = storage.put_file("jobs/o/j/adapter/adapter_model.safetensors", src)
    storage.put_bytes("jobs/o/other/eval.json", b"{}")
    assert storage.get_bytes("jobs/o/j/adapter/adapter_config.json") == b'{"r": 4}'
    assert storage.size("jobs/o/j/adapter/adapter_model.safetensors") == 4096
    assert storage.sha256("jobs/o/j/adapter/adapter_model.safetensors") == b.sha256
    assert storage.get_file("jobs/o/j/adapter/adapter_model.safetensors", tmp_path / "back").read_bytes() == src.read_bytes()
    assert storage.list_keys("jobs/o/j/") == ["jobs/o/j/adapter/adapter_config.json",
                                             "jobs/o/j/adapter/adapter_model.safetensors"]
    assert storage.key_for_uri(a.uri) == "jobs/o/j/adapter/adapter_config.json"
    assert storage.exists("jobs/o/j/adapter/adapter_config.json")
    assert storage.delete_prefix("jobs/o/j/") == 2
    assert storage.list_keys("jobs/o/") == ["jobs/o/other/eval.json"]
    assert not storage.exists("jobs/o/j/adapter/adapter_config.json")
    with pytest.raises(StorageError):
        storage.get_bytes("jobs/o/j/adapter/adapter_config.json")
    with pytest.raises(StorageError):
        storage.size("jobs/o/j/adapter/adapter_config.json")


def test_multipart_upload_of_a_large_file(s3_server, tmp_path):
    # 5 MiB parts (the S3 minimum) and a 5 MiB threshold: a 12 MiB file goes up in 3 parts.
    storage = make_storage(s3_server, multipart_threshold_mb=5, multipart_chunk_mb=5)
    big = tmp_path / "optimizer.pt"
    big.write_bytes(os.urandom(12 * 1024 * 1024 + 123))
    stored = storage.put_file("jobs/o/j/checkpoints/step-4/optimizer.pt", big)
    head = storage.client.head_object(Bucket=storage.bucket, Key="brightrun/jobs/o/j/checkpoints/step-4/optimizer.pt")
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # a multipart object's ETag counts its parts
    assert stored.bytes == big.stat().st_size
    assert storage.sha256("jobs/o/j/checkpoints/step-4/optimizer.pt") == hashlib.sha256(big.read_bytes()).hexdigest()


def test_presigned_get_and_put_work_with_plain_requests(s3_server):
    storage = make_storage(s3_server)
    storage.put_bytes("jobs/o/j/packages/p.zip", b"zip-bytes")
    url = storage.presigned_get("jobs/o/j/packages/p.zip", 60, filename="p.zip")
    assert "X-Amz-Expires=60" in url and "X-Amz-Signature=" in url
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200 and resp.content == b"zip-bytes"
    put = storage.presigned_put("jobs/o/j/uploads/new.bin", 60)
    assert requests.put(put, data=b"uploaded", timeout=10).status_code == 200
    assert storage.get_bytes("jobs/o/j/uploads/new.bin") == b"uploaded"


@pytest.mark.slow
def test_expired_or_tampered_presigned_links_are_refused(seaweed_server):
    storage = make_storage(seaweed_server)
    storage.put_bytes("jobs/o/j/report.json", b"{}")
    assert requests.get(f"{seaweed_server.endpoint}/{storage.bucket}/brightrun/jobs/o/j/report.json",
                        timeout=10).status_code == 403  # nothing is public
    url = storage.presigned_get("jobs/o/j/report.json", 1)
    assert requests.get(url, timeout=10).status_code == 200
    tampered = url.replace("jobs/o/j/report.json", "jobs/o/j/other.json")
    assert requests.get(tampered, timeout=10).status_code == 403
    put = storage.presigned_put("jobs/o/j/late.bin", 1)
    time.sleep(2.2)
    expired = requests.get(url, timeout=10)
    assert expired.status_code == 403 and "expired" in expired.text.lower()
    assert requests.put(put, data=b"late", timeout=10).status_code == 403
    assert not storage.exists("jobs/o/j/late.bin")


def test_upload_policy_allows_only_the_job_prefix(s3_server):
    storage = make_storage(s3_server)
    post = storage.presigned_post("jobs/o/j", 60, max_bytes=1024)
    assert post["key_prefix"] == "brightrun/jobs/o/j/"

    def upload(key: str, data: bytes) -> int:
        return requests.post(post["url"], data={**post["fields"], "key": key},
                             files={"file": ("f", data)}, timeout=10).status_code

    assert upload("brightrun/jobs/o/j/checkpoints/step-7/optimizer.pt", b"state") in (200, 201, 204)
    assert storage.get_bytes("jobs/o/j/checkpoints/step-7/optimizer.pt") == b"state"
    if not s3_server.validates_signatures:
        return  # moto stores whatever is posted; the refusals below need a server that checks
    assert upload("brightrun/jobs/o/another-job/adapter/adapter_model.safetensors", b"evil") == 403
    assert upload("brightrun/jobs/o/j/too-big.bin", b"x" * 2048) in (400, 403)
    assert not storage.exists("jobs/o/another-job/adapter/adapter_model.safetensors")
