"""S3-compatible object storage through boto3 (AWS S3, MinIO, Supabase Storage)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from .base import Storage, StorageError, StoredObject, sha256_file, validate_key


class S3Storage(Storage):
    name = "s3"

    def __init__(self, *, bucket, endpoint_url=None, region="us-east-1", access_key_id=None,
                 secret_access_key=None, prefix="", multipart_threshold_mb=64, multipart_chunk_mb=64,
                 addressing_style=None):
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        s3_options = {"addressing_style": addressing_style} if addressing_style else {}
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, signature_version="s3v4",
                          s3=s3_options),
        )
        # Above the threshold upload_file/download_file split the object into parts (sent in
        # parallel, each retried alone); S3 requires parts of at least 5 MiB except the last.
        mib = 1024 * 1024
        self.transfer = TransferConfig(multipart_threshold=max(1, multipart_threshold_mb) * mib,
                                       multipart_chunksize=max(5, multipart_chunk_mb) * mib)

    def _full(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_bytes(self, key, data, content_type=None):
        extra = {"ContentType": content_type} if content_type else {}
        self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data, **extra)
        return StoredObject(key=key, uri=self.uri_for(key), bytes=len(data), sha256=hashlib.sha256(data).hexdigest())

    def put_file(self, key, path, content_type=None):
        extra = {"ContentType": content_type} if content_type else None
        self.client.upload_file(str(path), self.bucket, self._full(key), ExtraArgs=extra, Config=self.transfer)
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

    def _missing(self, exc) -> bool:
        return exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}

    def size(self, key):
        from botocore.exceptions import ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self._full(key))["ContentLength"])
        except ClientError as exc:
            if self._missing(exc):
                raise StorageError(f"no object at {key}") from exc
            raise

    def get_file(self, key, dest):
        from botocore.exceptions import ClientError

        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(self.bucket, self._full(key), str(dest), Config=self.transfer)
        except ClientError as exc:
            if self._missing(exc):
                raise StorageError(f"no object at {key}") from exc
            raise
        return dest

    def sha256(self, key):
        digest = hashlib.sha256()
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"]
        except self.client.exceptions.NoSuchKey as exc:
            raise StorageError(f"no object at {key}") from exc
        for chunk in body.iter_chunks(1 << 20):
            digest.update(chunk)
        return digest.hexdigest()

    def presigned_get(self, key, ttl_s, *, filename=None, user_id=None):
        params = {"Bucket": self.bucket, "Key": self._full(key)}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=int(ttl_s))

    def presigned_put(self, key, ttl_s):
        return self.client.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": self._full(key)}, ExpiresIn=int(ttl_s)
        )

    def presigned_post(self, prefix: str, ttl_s: int, *, max_bytes: int) -> dict:
        """An upload policy (S3 "POST Object"): any key that starts with `prefix`/, objects up to
        `max_bytes`, for `ttl_s` seconds. The service checks the policy's signature and
        conditions, so whoever holds it can write under the prefix and nowhere else.

        Returns {"url", "fields", "key_prefix"}: POST multipart/form-data with the fields, a
        `key` field (key_prefix + the relative path) and the file last."""
        key_prefix = self._full(validate_key(prefix.strip("/"))) + "/"
        post = self.client.generate_presigned_post(
            self.bucket, key_prefix + "${filename}",
            Conditions=[["starts-with", "$key", key_prefix], ["content-length-range", 0, int(max_bytes)]],
            ExpiresIn=int(ttl_s),
        )
        fields = {k: v for k, v in post["fields"].items() if k != "key"}
        return {"url": post["url"], "fields": fields, "key_prefix": key_prefix}

