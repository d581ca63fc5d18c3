"""S3-compatible object storage through boto3 (AWS S3, MinIO, Supabase Storage)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from .base import Storage, StorageError, StoredObject, sha256_file, validate_key


class S3Storage(Storage):
    name = "s3"

    def __init__(self, *, bucket, endpoint_url=None, region="us-east-1", access_key_id=None,
                 secret_access_key=None, prefix=""):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, signature_version="s3v4"),
        )

    def _full(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_bytes(self, key, data, content_type=None):
        extra = {"ContentType": content_type} if content_type else {}
        self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data, **extra)
        return StoredObject(key=key, uri=self.uri_for(key), bytes=len(data), sha256=hashlib.sha256(data).hexdigest())

    def put_file(self, key, path, content_type=None):
        # upload_file switches to multipart above its threshold (8 MB by default).
        extra = {"ContentType": content_type} if content_type else None
        self.client.upload_file(str(path), self.bucket, self._full(key), ExtraArgs=extra)
        size = Path(path).stat().st_size
        return StoredObject(key=key, uri=self.uri_for(key), bytes=size, sha256=sha256_file(Path(path)))

    def get_bytes(self, key):
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"].read()
        except self.client.exceptions.NoSuchKey as exc:
            raise StorageError(f"no object at {key}") from exc

    def exists(self, key):
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._full(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise

    def delete(self, key):
        self.client.delete_object(Bucket=self.bucket, Key=self._full(key))

    def list_keys(self, prefix):
        paginator = self.client.get_paginator("list_objects_v2")
        full_prefix = self._full(prefix) if prefix else self.prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
            keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(keys)

    def uri_for(self, key):
        return f"s3://{self.bucket}/{self._full(key)}"

    def key_for_uri(self, uri):
        head = f"s3://{self.bucket}/" + (f"{self.prefix}/" if self.prefix else "")
        if not uri.startswith(head):
            raise StorageError(f"{uri} is not inside bucket {self.bucket}")
        return validate_key(uri[len(head):])

    def presigned_get(self, key: str, ttl_s: int) -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._full(key)}, ExpiresIn=ttl_s
        )

    def presigned_put(self, key: str, ttl_s: int) -> str:
        return self.client.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": self._full(key)}, ExpiresIn=ttl_s
        )
