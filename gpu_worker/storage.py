"""Reading and writing the URIs a job spec names: file://, s3:// (boto3) and http(s):// URLs.

- `file:///abs/path` (and plain paths): the embedded default and the local provider.
- `s3://bucket/key`: boto3 with credentials and endpoint from the pod's environment
  (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION / AWS_DEFAULT_REGION).
- `https://...` presigned URLs: GET to read, PUT to write. Prefix operations (listing,
  deleting) are not possible on presigned URLs; a checkpoint therefore carries a manifest.json
  listing its files so it can be downloaded from a URL prefix.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import urllib.parse
from pathlib import Path

MANIFEST = "manifest.json"

# The storage grant of this attempt (JobSpec.storage_grant), installed once by the runner:
# presigned GET URLs for the objects the pod may read and one S3 POST policy for everything
# under its job prefix. With a grant the pod needs no S3 credentials.
_grant: dict | None = None


def install_grant(grant: dict | None) -> None:
    global _grant
    _grant = dict(grant) if grant else None


def _granted_read_url(uri: str) -> str | None:
    if _grant and scheme(uri) == "s3":
        return (_grant.get("read_urls") or {}).get(uri)
    return None


def _granted_upload(uri: str) -> dict | None:
    if _grant and scheme(uri) == "s3" and _grant.get("upload"):
        return _grant["upload"]
    return None


def _post_with_policy(path: Path, uri: str, policy: dict, timeout_s: float) -> None:
    import requests

    _bucket, key = _s3_split(uri)
    if not key.startswith(policy["key_prefix"]):
        raise StorageError(uri, f"outside this job's storage prefix ({policy['key_prefix']}); the grant does not cover it")
    with open(path, "rb") as fh:
        resp = requests.post(policy["url"], data={**policy["fields"], "key": key},
                             files={"file": (Path(path).name, fh)}, timeout=timeout_s)
    if resp.status_code not in (200, 201, 204):
        raise StorageError(uri, f"HTTP {resp.status_code} on upload: {resp.text[:200]}")


class StorageError(Exception):
    def __init__(self, uri: str, message: str):
        self.uri = uri
        # Library messages may repeat the URL, query string (credentials) included.
        message = re.sub(r"\?[^\s'\")]+", "?<redacted>", message)
        super().__init__(f"{_redact(uri)}: {message}")


def _redact(uri: str) -> str:
    # Presigned URLs carry credentials in the query string; keep them out of messages.
    return uri.split("?", 1)[0]


def scheme(uri: str) -> str:
    if "://" not in uri:
        return "file"
    return uri.split("://", 1)[0].lower()


def local_path(uri: str) -> Path:
    if uri.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path))
    return Path(uri)


def join(prefix: str, *parts: str) -> str:
    """Join path segments onto a URI prefix, keeping a presigned query string in place."""
    base, query = (prefix.split("?", 1) + [""])[:2] if scheme(prefix) in ("http", "https") else (prefix, "")
    out = base.rstrip("/")
    for part in parts:
        out += "/" + part.strip("/")
    return out + (f"?{query}" if query else "")


def _s3_client():
    import boto3  # only pods that use S3 need it

    kwargs = {}
    if os.environ.get("AWS_ENDPOINT_URL"):
        kwargs["endpoint_url"] = os.environ["AWS_ENDPOINT_URL"]
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region_name"] = region
    return boto3.client("s3", **kwargs)


def _s3_split(uri: str) -> tuple[str, str]:
    parsed = urllib.parse.urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def download(uri: str, dest: Path, *, timeout_s: float = 60) -> Path:
    """Copy the object at `uri` to `dest`. Raises StorageError."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    granted = _granted_read_url(uri)
    if granted:
        try:
            return download(granted, dest, timeout_s=timeout_s)
        except StorageError as exc:
            raise StorageError(uri, str(exc).split(": ", 1)[-1]) from exc
    kind = scheme(uri)
    try:
        if kind == "file":
            src = local_path(uri)
            if not src.is_file():
                raise StorageError(uri, "no such file")
            shutil.copyfile(src, dest)
        elif kind in ("http", "https"):
            import requests

            with requests.get(uri, stream=True, timeout=timeout_s) as resp:
                if resp.status_code != 200:
                    raise StorageError(uri, f"HTTP {resp.status_code}")
                tmp = dest.with_suffix(dest.suffix + ".part")
                with open(tmp, "wb") as fh:
                    for chunk in resp.iter_content(1 << 20):
                        fh.write(chunk)
                tmp.replace(dest)
        elif kind == "s3":
            bucket, key = _s3_split(uri)
            _s3_client().download_file(bucket, key, str(dest))
        else:
            raise StorageError(uri, f"unsupported URI scheme {kind!r}")
    except StorageError:
        raise
    except OSError as exc:
        if getattr(exc, "errno", None) == 28:  # ENOSPC is the pod's problem, not the storage's
            raise
        raise StorageError(uri, f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # requests/botocore errors: unreachable, denied, missing
        raise StorageError(uri, f"{type(exc).__name__}: {exc}") from exc
    return dest


def read_bytes(uri: str, *, timeout_s: float = 60) -> bytes:
    kind = scheme(uri)
    if kind == "file":
        path = local_path(uri)
        if not path.is_file():
            raise StorageError(uri, "no such file")
        return path.read_bytes()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return download(uri, Path(tmp) / "obj", timeout_s=timeout_s).read_bytes()


def upload(path: Path, uri: str, *, timeout_s: float = 300) -> None:
    """Copy local file `path` to `uri`. Raises StorageError."""
    kind = scheme(uri)
    try:
        if kind == "file":
            dest = local_path(uri)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if Path(path).resolve() != dest.resolve():
                tmp = dest.with_name(dest.name + ".part")
                shutil.copyfile(path, tmp)
                tmp.replace(dest)
        elif kind in ("http", "https"):
            import requests

            with open(path, "rb") as fh:
                resp = requests.put(uri, data=fh, timeout=timeout_s)
            if resp.status_code not in (200, 201, 204):
                raise StorageError(uri, f"HTTP {resp.status_code} on upload")
        elif kind == "s3" and _granted_upload(uri):
            _post_with_policy(Path(path), uri, _granted_upload(uri), timeout_s)
        elif kind == "s3":
            bucket, key = _s3_split(uri)
            _s3_client().upload_file(str(path), bucket, key)
        else:
            raise StorageError(uri, f"unsupported URI scheme {kind!r}")
    except StorageError:
        raise
    except OSError as exc:
        if getattr(exc, "errno", None) == 28:
            raise
        raise StorageError(uri, f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise StorageError(uri, f"{type(exc).__name__}: {exc}") from exc


def upload_dir(directory: Path, prefix: str, *, last: str | None = None) -> list[str]:
    """Upload every file under `directory` to `prefix`; `last` (a file name) goes up last.

    Writes `manifest.json` (relative paths and sizes) before `last`, so a reader that sees
    `last` sees a complete directory. Returns the uploaded URIs.
    """
    directory = Path(directory)
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)
    rel = [p.relative_to(directory).as_posix() for p in files]
    manifest = {"files": {r: p.stat().st_size for r, p in zip(rel, files)}}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    ordered = [r for r in rel if r != last] + [MANIFEST] + ([last] if last in rel else [])
    uris = []
    for r in ordered:
        uri = join(prefix, r)
        upload(directory / r, uri)
        uris.append(uri)
    return uris


def download_dir(prefix: str, dest: Path) -> Path:
    """Download a directory written by `upload_dir` (reads its manifest). Raises StorageError."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if scheme(prefix) == "file" and not local_path(prefix).is_dir():
        raise StorageError(prefix, "no such directory")
    manifest = json.loads(read_bytes(join(prefix, MANIFEST)))
    for rel in manifest["files"]:
        download(join(prefix, rel), dest / rel)
    return dest


def delete_prefix(prefix: str) -> bool:
    """Remove everything under `prefix`. Returns False where the scheme cannot delete (URLs)."""
    kind = scheme(prefix)
    if kind == "file":
        shutil.rmtree(local_path(prefix), ignore_errors=True)
        return True
    if kind == "s3" and _grant and not _grant.get("can_delete", True):
        return False  # a granted pod cannot delete; retention prunes after the job ends
    if kind == "s3":
        bucket, key = _s3_split(prefix)
        client = _s3_client()
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=key.rstrip("/") + "/"):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                client.delete_objects(Bucket=bucket, Delete={"Objects": objects})
        return True
    return False
