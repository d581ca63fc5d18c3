"""get_storage(): the configured backend (STORAGE_BACKEND = disk | s3), built once per settings."""
from __future__ import annotations

from functools import lru_cache

from django.conf import settings

from .base import Storage, StorageError, StoredObject

__all__ = ["Storage", "StorageError", "StoredObject", "get_storage"]


@lru_cache(maxsize=4)
def _build(backend: str, disk_root: str, bucket: str, endpoint: str | None, region: str,
           key_id: str | None, secret: str | None, prefix: str, multipart_threshold_mb: int = 64,
           multipart_chunk_mb: int = 64, addressing_style: str | None = None) -> Storage:
    if backend == "disk":
        from .disk import DiskStorage

        return DiskStorage(disk_root)
    if backend == "s3":
        from .s3 import S3Storage

        return S3Storage(bucket=bucket, endpoint_url=endpoint, region=region, access_key_id=key_id,
                         secret_access_key=secret, prefix=prefix, multipart_threshold_mb=multipart_threshold_mb,
                         multipart_chunk_mb=multipart_chunk_mb, addressing_style=addressing_style)
    raise StorageError(f"STORAGE_BACKEND={backend!r} is not supported; use 'disk' or 's3'")


def get_storage() -> Storage:
    return _build(
        settings.STORAGE_BACKEND, str(settings.STORAGE_DISK_ROOT), settings.S3_BUCKET,
        settings.S3_ENDPOINT_URL, settings.S3_REGION, settings.S3_ACCESS_KEY_ID,
        settings.S3_SECRET_ACCESS_KEY, settings.S3_PREFIX or "",
        int(getattr(settings, "S3_MULTIPART_THRESHOLD_MB", 64)), int(getattr(settings, "S3_MULTIPART_CHUNK_MB", 64)),
        getattr(settings, "S3_ADDRESSING_STYLE", None),
    )
