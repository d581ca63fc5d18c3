"""What a pod may touch in storage: its dataset (read), the checkpoint it resumes from (read),
and its own job prefix (write), nothing else.

S3: presigned GET URLs for the inputs and one S3 POST policy for the outputs. The policy is
signed by the control plane and allows any key that starts with the job's prefix (checkpoint
steps and file names are not known in advance: a SIGTERM checkpoint lands at whatever step the
pod was at) up to POD_UPLOAD_MAX_BYTES per object, until it expires. The service enforces the
policy (signature, key prefix, size, expiry), so the pod holds no credentials at all.
We chose this over the alternatives:
- scoped STS credentials (AssumeRole with a session policy): not offered by every S3-compatible
  service (Supabase Storage has no STS; MinIO and moto only in some modes);
- presigned PUTs for known keys: cannot cover checkpoints saved at unforeseen steps.
Disk (embedded default, local provider): plain file:// URIs; the pod is a process on this
machine.
"""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from artifacts.storage import StorageError, get_storage

from .registry import job_output_key

SIGV4_MAX_TTL_S = 7 * 24 * 3600


def pod_read_uri(key: str) -> str:
    """What a pod reads one stored object from: file:// on disk, a presigned GET on S3."""
    storage = get_storage()
    if storage.name != "s3":
        return storage.uri_for(key)
    return storage.presigned_get(key, min(int(settings.POD_STORAGE_GRANT_TTL_S), SIGV4_MAX_TTL_S))


def pod_storage_grant(*, job) -> dict:
    """The storage part of a pod's job spec for this attempt. Keys:

    - mode: "file" or "s3-presigned"
    - train_uri, val_uri: what the pod reads its splits from (https presigned GET, or file://)
    - output_uri: the job's prefix as a URI (s3://bucket/.../jobs/<org>/<job>); the pod builds
      its keys under it exactly as today (adapter/, checkpoints/step-<n>/, metrics.json, ...)
    - upload: None (file mode) or {url, fields, key_prefix, max_bytes}: to write
      s3://bucket/<key>, POST multipart/form-data to url with the fields, key=<key> (which
      must start with key_prefix) and the file as the last field, named "file"
    - read_urls: {s3 uri: https presigned GET} for every object of the checkpoint the job
      resumes from (which may be another job's, after a retry with resume)
    - resume_from: the checkpoint URI, unchanged
    - can_delete: False for S3 (the pod cannot delete; retention prunes after the job ends)
    - expires_at: ISO time the grant stops working
    """
    storage = get_storage()
    out = job_output_key(job)
    dataset = job.dataset
    resume_key = None
    if job.resume_from:
        try:
            resume_key = storage.key_for_uri(job.resume_from).rstrip("/")
        except StorageError:
            resume_key = None  # not in our storage (e.g. a URL); handed over as it is
    if storage.name != "s3":
        return {
            "mode": "file",
            "train_uri": storage.uri_for(dataset.train_key),
            "val_uri": storage.uri_for(dataset.val_key) if dataset.val_key else None,
            "output_uri": storage.uri_for(out),
            "upload": None,
            "read_urls": {},
            "resume_from": job.resume_from or None,
            "can_delete": True,
            "expires_at": None,
        }
    ttl = min(int(settings.POD_STORAGE_GRANT_TTL_S), SIGV4_MAX_TTL_S)
    read_urls = {}
    if resume_key:
        for key in storage.list_keys(resume_key + "/"):
            read_urls[storage.uri_for(key)] = storage.presigned_get(key, ttl)
    upload = storage.presigned_post(out, ttl, max_bytes=int(settings.POD_UPLOAD_MAX_BYTES))
    upload["max_bytes"] = int(settings.POD_UPLOAD_MAX_BYTES)
    return {
        "mode": "s3-presigned",
        "train_uri": storage.presigned_get(dataset.train_key, ttl),
        "val_uri": storage.presigned_get(dataset.val_key, ttl) if dataset.val_key else None,
        "output_uri": storage.uri_for(out),
        "upload": upload,
        "read_urls": read_urls,
        "resume_from": job.resume_from or None,
        "can_delete": False,
        "expires_at": (timezone.now() + timedelta(seconds=ttl)).isoformat(),
    }
