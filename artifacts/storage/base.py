"""Object storage behind one small interface, addressed by keys ("datasets/<hash>/train.jsonl").

Each backend also gives every object a URI the GPU worker can read (`file://` for disk,
`s3://` for S3-compatible services) and can issue presigned links.
"""
from __future__ import annotations

import abc
import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StoredObject:
    key: str
    uri: str
    bytes: int
    sha256: str


class StorageError(Exception):
    pass


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def validate_key(key: str) -> str:
    if not key or key.startswith("/") or ".." in key.split("/") or "\\" in key:
        raise StorageError(f"invalid storage key {key!r}")
    return key


class Storage(abc.ABC):
    name = "abstract"

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> StoredObject: ...

    @abc.abstractmethod
    def put_file(self, key: str, path: Path, content_type: str | None = None) -> StoredObject: ...

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def list_keys(self, prefix: str) -> list[str]: ...

    @abc.abstractmethod
    def uri_for(self, key: str) -> str: ...

    @abc.abstractmethod
    def key_for_uri(self, uri: str) -> str:
        """Inverse of uri_for; raises StorageError for a URI outside this storage."""

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """Bytes of the object at `key`; raises StorageError when there is none."""

    def get_file(self, key: str, dest: Path) -> Path:
        """Copy the object at `key` to the local file `dest` (parents created)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.get_bytes(key))
        return dest

    def sha256(self, key: str) -> str:
        return hashlib.sha256(self.get_bytes(key)).hexdigest()

    @abc.abstractmethod
    def presigned_get(self, key: str, ttl_s: int, *, filename: str | None = None, user_id: int | None = None) -> str:
        """A link that reads the object for `ttl_s` seconds without other credentials.
        `filename` makes browsers save it under that name. Disk: a path on this site, whose token
        also names `user_id` (the view re-checks that user's membership)."""

    @abc.abstractmethod
    def presigned_put(self, key: str, ttl_s: int) -> str:
        """A link that accepts one HTTP PUT of the object's bytes for `ttl_s` seconds."""

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_keys(prefix)
        for key in keys:
            self.delete(key)
        return len(keys)

    def health_check(self) -> None:
        key = f"healthz/{uuid.uuid4().hex}"
        payload = b"ok"
        self.put_bytes(key, payload)
        try:
            if self.get_bytes(key) != payload:
                raise StorageError("read back different bytes than written")
        finally:
            self.delete(key)
