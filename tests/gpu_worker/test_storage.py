import pytest
from gw_helpers import Receiver

from gpu_worker import storage


def test_file_round_trip_and_dirs(tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("hello")
    uri = (tmp_path / "remote" / "x" / "a.txt").as_uri()
    storage.upload(src, uri)
    assert storage.read_bytes(uri) == b"hello"
    d = tmp_path / "ckpt"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "w.bin").write_bytes(b"123")
    (d / "COMPLETE").write_text("1")
    prefix = (tmp_path / "remote" / "step-1").as_uri()
    uploaded = storage.upload_dir(d, prefix, last="COMPLETE")
    assert uploaded[-1].endswith("/COMPLETE") and uploaded[-2].endswith("/manifest.json")
    back = storage.download_dir(prefix, tmp_path / "back")
    assert (back / "sub" / "w.bin").read_bytes() == b"123"
    assert storage.delete_prefix(prefix) and not (tmp_path / "remote" / "step-1").exists()


def test_missing_objects_raise_storage_error(tmp_path):
    with pytest.raises(storage.StorageError, match="no such file"):
        storage.download((tmp_path / "nope.jsonl").as_uri(), tmp_path / "x")
    with pytest.raises(storage.StorageError):
        storage.download("ftp://host/x", tmp_path / "x")


def test_presigned_urls_get_and_put(tmp_path):
    rx = Receiver()
    try:
        src = tmp_path / "up.bin"
        src.write_bytes(b"payload")
        storage.upload(src, rx.url + "/bucket/up.bin?X-Amz-Signature=abc")
        assert rx.objects["/bucket/up.bin?X-Amz-Signature=abc"] == b"payload"
        assert storage.read_bytes(rx.url + "/bucket/up.bin?X-Amz-Signature=abc") == b"payload"
        with pytest.raises(storage.StorageError, match="HTTP 404") as err:
            storage.download(rx.url + "/missing?X-Amz-Signature=secret", tmp_path / "m")
        assert "secret" not in str(err.value)  # presigned credentials stay out of messages
    finally:
        rx.close()


def test_join_keeps_presigned_query():
    assert storage.join("s3://b/jobs/1", "adapter", "x.json") == "s3://b/jobs/1/adapter/x.json"
    assert storage.join("https://h/p/?sig=1", "a") == "https://h/p/a?sig=1"
