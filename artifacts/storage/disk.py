"""Storage in a folder on disk (embedded default). Writes are atomic: temp file, then rename."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from .base import Storage, StorageError, StoredObject, sha256_file, validate_key


class DiskStorage(Storage):
    name = "disk"

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _atomic_write(self, key: str, writer) -> Path:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                writer(fh)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def put_bytes(self, key, data, content_type=None):
        self._atomic_write(key, lambda fh: fh.write(data))
        return StoredObject(key=key, uri=self.uri_for(key), bytes=len(data), sha256=hashlib.sha256(data).hexdigest())

    def put_file(self, key, path, content_type=None):
        with open(path, "rb") as src:
            target = self._atomic_write(key, lambda fh: shutil.copyfileobj(src, fh, 1 << 20))
        return StoredObject(key=key, uri=self.uri_for(key), bytes=target.stat().st_size, sha256=sha256_file(target))

    def get_bytes(self, key):
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise StorageError(f"no object at {key}") from exc

    def exists(self, key):
        return self._path(key).is_file()

    def delete(self, key):
        self._path(key).unlink(missing_ok=True)

    def list_keys(self, prefix):
        base = self.root
        if not base.exists():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                key = os.path.relpath(os.path.join(dirpath, name), base).replace(os.sep, "/")
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def size(self, key):
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as exc:
            raise StorageError(f"no object at {key}") from exc

    def get_file(self, key, dest):
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(self._path(key), dest)
        except FileNotFoundError as exc:
            raise StorageError(f"no object at {key}") from exc
        return dest

    def sha256(self, key):
        try:
            return sha256_file(self._path(key))
        except FileNotFoundError as exc:
            raise StorageError(f"no object at {key}") from exc

    # A folder has no link of its own: these point at the site's token view
    # (artifacts.apis.StorageFileApi), which checks the signed, expiring token and serves or
    # accepts the file. They are paths; callers make them absolute for the request's host.
    def presigned_get(self, key, ttl_s, *, filename=None, user_id=None):
        from django.urls import reverse

        from .tokens import token_make

        token = token_make(key=validate_key(key), op="get", ttl_s=ttl_s, filename=filename, user_id=user_id)
        return reverse("artifact-storage-file", args=[token])

    def presigned_put(self, key, ttl_s):
        from django.urls import reverse

        from .tokens import token_make

        return reverse("artifact-storage-file", args=[token_make(key=validate_key(key), op="put", ttl_s=ttl_s)])

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def uri_for(self, key):
        return self._path(key).as_uri()

    def key_for_uri(self, uri):
        prefix = self.root.as_uri() + "/"
        if not uri.startswith(prefix):
            raise StorageError(f"{uri} is not inside this storage ({self.root})")
        return validate_key(uri[len(prefix):])
