"""Dataset import through the API: the request a user waits on, and the background statistics.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/brightrun REDIS_URL=redis://127.0.0.1:6379/0 \\
      .venv/bin/python benchmarks/dataset_import.py [--repeats 5]

In a dedicated PostgreSQL database (`brightrun_bench_import`, created, migrated and dropped here),
POST /api/v1/datasets/ (multipart, token-authenticated, Django's test client: the whole middleware,
DRF, parsing, storage and database stack, no HTTP server) of
  - the shared 4 MB, 72-conversation file (../shared/data/brightrun-72-conversations.json),
  - the project's 0.6 MB sample, and the same as the app's training.jsonl,
each `--repeats` times into a fresh organization (a new dataset every time), then the same file
again (already imported: the existing dataset is returned). A tokenizer is configured, as in a
deployment, so every import leaves its exact token counts to `dataset_stats_compute`; the task is
queued (recorded here, not sent) and timed separately, run as the worker runs it.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _support as S  # noqa: E402

DB = "brightrun_bench_import"
REAL = S.ROOT.parent / "shared" / "data" / "brightrun-72-conversations.json"
SAMPLE = S.ROOT / "training" / "sample_data" / "brightrun-sample.json"


def _tokenizer(folder: Path) -> str | None:
    """A small byte-level BPE tokenizer (the `tokenizers` package), trained here on the file's text:
    the exact-count path, with no download."""
    try:
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    except ImportError:
        return None
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    text = REAL.read_text(encoding="utf-8") if REAL.exists() else SAMPLE.read_text(encoding="utf-8")
    tok.train_from_iterator(text.splitlines(), trainers.BpeTrainer(vocab_size=4000, special_tokens=["[UNK]"]))
    tok.save(str(folder / "tokenizer.json"))
    return str(folder)


def _training_jsonl(path: Path) -> bytes:
    doc = json.loads(path.read_bytes())
    lines = [{"_meta": doc["training_file_metadata"]}]
    for conv in doc["conversations"]:
        lines += [p for p in conv["training_pairs"] if p["target_response"] is not None]
    return "\n".join(json.dumps(x) for x in lines).encode() + b"\n"


def _user(slug: str):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from accounts.services import membership_grant, organization_get_or_create

    org = organization_get_or_create(slug=slug, name=slug)
    user = get_user_model().objects.create_user(f"{slug}-user", password="bench-pass-1")
    membership_grant(user=user, organization=org, role="admin")
    return Token.objects.create(user=user).key


def _post(client, raw: bytes, name: str):
    f = io.BytesIO(raw)
    f.name = name
    t = time.perf_counter()
    response = client.post("/api/v1/datasets/", {"file": f})
    elapsed = time.perf_counter() - t
    assert response.status_code in (200, 201), response.content[:500]
    return elapsed, response.json()


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--keep-db", action="store_true")
    args = ap.parse_args(argv)
    if not REAL.exists():
        raise SystemExit(f"{REAL} is missing: the shared data folder must sit beside the checkout")
    S.database_recreate(DB)
    rows = []
    try:
        S.django_setup(DB)
        from django.conf import settings
        from django.test import Client

        from training import tasks
        from training.services.datasets import dataset_stats_compute

        tmp = Path(tempfile.mkdtemp(prefix="bench-import-"))
        settings.STORAGE_BACKEND, settings.STORAGE_DISK_ROOT = "disk", str(tmp / "storage")
        settings.TOKENIZER_PATH = _tokenizer(tmp)
        queued: list[str] = []
        tasks.dataset_stats_compute.delay = lambda pk: queued.append(pk)  # timed below, as the worker runs it

        files = [("72 conversations, JSON", REAL.read_bytes(), REAL.name),
                 ("16 conversations, JSON (sample)", SAMPLE.read_bytes(), SAMPLE.name),
                 ("16 conversations, training.jsonl", _training_jsonl(SAMPLE), "training.jsonl")]
        n = 0
        for label, raw, name in files:
            times, body = [], None
            for _ in range(args.repeats):
                n += 1
                client = Client(HTTP_AUTHORIZATION=f"Token {_user(f'bench-{n}')}")
                elapsed, body = _post(client, raw, name)
                assert body["created"], body
                times.append(elapsed)
            again, again_body = _post(client, raw, name)
            assert not again_body["created"]
            task_times = []
            for pk in queued[-args.repeats:]:
                t = time.perf_counter()
                ds = dataset_stats_compute(dataset_id=pk)
                task_times.append(time.perf_counter() - t)
                assert ds.stats_status == "ready", ds.stats.get("stats_error")
            rows.append([label, f"{len(raw) / 1e6:.2f} MB", body["stats_status"], S.median(times), min(times),
                         max(times), again, S.median(task_times), ds.stats["tokens"]["method"]])
    finally:
        if not args.keep_db:
            from django.db import connections

            connections.close_all()
            S.database_drop(DB)
    me = "benchmarks/dataset_import.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = S.table(f"Dataset import through the API: seconds per request ({args.repeats} fresh imports each), "
                  "and the background statistics task",
                  ["file", "size", "status after POST", "POST p50 s", "min s", "max s", "again s", "stats task s",
                   "token method"], rows, f".venv/bin/python {me.strip()}")
    print(out, flush=True)
    return out


if __name__ == "__main__":
    main()
