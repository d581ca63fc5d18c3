"""Registering a completed job's outputs: per-client version numbers, one current adapter,
idempotency, metrics exports, reports; the pod's storage grant; retention with a simulated clock."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from artifacts.errors import ArtifactNotReady
from artifacts.models import ArtifactKind, ModelArtifact
from artifacts.services import (
    adapter_set_current,
    checkpoints_prune,
    job_artifacts_register,
    job_output_key,
    pod_storage_grant,
    report_artifact_store,
)
from artifacts.storage import get_storage
from tests.artifacts.artifacts_support import completed_job
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake_adapter(tmp_path):
    d = tmp_path / "adapter"
    d.mkdir()
    (d / "adapter_model.safetensors").write_bytes(b"w" * 64)
    (d / "adapter_config.json").write_text('{"r": 4}')
    (d / "tokenizer.json").write_text("{}")
    return d


def adapters(organization, client):
    return list(ModelArtifact.objects.filter(organization=organization, client=client, kind="adapter")
                .order_by("version").values_list("version", "is_current"))


def test_versions_per_client_and_one_current(organization, other_organization, fake_adapter):
    jobs = [completed_job(organization, adapter_dir=fake_adapter, client="acme") for _ in range(3)]
    other_client = completed_job(organization, adapter_dir=fake_adapter, client="globex-care")
    other_org = completed_job(other_organization, adapter_dir=fake_adapter, client="acme")
    for job in [*jobs, other_client, other_org]:
        job_artifacts_register(job_id=job.pk)
    assert adapters(organization, "acme") == [(1, False), (2, False), (3, True)]
    assert adapters(organization, "globex-care") == [(1, True)]
    assert adapters(other_organization, "acme") == [(1, True)]

    # Registering again (a redelivered task) numbers nothing twice.
    before = ModelArtifact.objects.count()
    job_artifacts_register(job_id=jobs[0].pk)
    assert ModelArtifact.objects.count() == before
    assert adapters(organization, "acme") == [(1, False), (2, False), (3, True)]

    # Roll back to version 1.
    v1 = ModelArtifact.objects.get(organization=organization, client="acme", kind="adapter", version=1)
    adapter_set_current(artifact_id=v1.pk)
    assert adapters(organization, "acme") == [(1, True), (2, False), (3, False)]


def test_registration_records_files_hashes_and_metrics(organization, fake_adapter):
    import hashlib

    job = completed_job(organization, adapter_dir=fake_adapter, checkpoints=2)
    rows = {(a.kind, a.name): a for a in job_artifacts_register(job_id=job.pk)}
    adapter = rows[("adapter", "adapter")]
    assert adapter.sha256 == hashlib.sha256(b"w" * 64).hexdigest()
    assert adapter.bytes == 64 + len('{"r": 4}')
    assert [f["path"] for f in rows[("tokenizer", "tokenizer")].files] == ["tokenizer.json"]
    assert {("checkpoint", "step-4"), ("checkpoint", "step-8"), ("metrics", "eval.json"),
            ("metrics", "metrics.json"), ("metrics", "training-curve.csv"), ("metrics", "training-curve.json")} <= set(rows)
    curve = json.loads(get_storage().get_bytes(rows[("metrics", "training-curve.json")].key))
    assert [p["step"] for p in curve["points"]] == list(range(1, 13))
    assert curve["eval"]["adapted_perplexity"] == 640.2


def test_missing_adapter_and_unfinished_jobs(organization):
    from tests.jobs.factories import make_running_job

    running = make_running_job(organization, status="training")
    assert job_artifacts_register(job_id=running.pk) == []
    empty = completed_job(organization, adapter_dir=None)
    with pytest.raises(ArtifactNotReady, match="no adapter weights"):
        job_artifacts_register(job_id=empty.pk)


def test_report_store_replaces_and_is_kept(organization, fake_adapter):
    job = completed_job(organization, adapter_dir=fake_adapter)
    report_artifact_store(job_id=job.pk, report_json={"score": 1})
    rows = report_artifact_store(job_id=job.pk, report_json={"score": 2}, html="<p>2</p>", pdf=b"%PDF-1.4")
    assert sorted(r.name for r in rows) == ["validation.html", "validation.json", "validation.pdf"]
    assert ModelArtifact.objects.filter(job=job, kind="report").count() == 3
    stored = json.loads(get_storage().get_bytes(f"{job_output_key(job)}/reports/validation.json"))
    assert stored == {"score": 2}


def test_retention_prunes_only_old_checkpoints(organization, fake_adapter, settings):
    settings.ARTIFACT_CHECKPOINT_RETENTION_DAYS = 14
    old = completed_job(organization, adapter_dir=fake_adapter, checkpoints=2)
    recent = completed_job(organization, adapter_dir=fake_adapter, checkpoints=1)
    for job in (old, recent):
        job_artifacts_register(job_id=job.pk)
    report_artifact_store(job_id=old.pk, report_json={"ok": True})
    now = timezone.now()
    type(old).objects.filter(pk=old.pk).update(finished_at=now - timedelta(days=10))
    type(recent).objects.filter(pk=recent.pk).update(finished_at=now)
    storage = get_storage()

    assert checkpoints_prune(now=now + timedelta(days=3))["jobs"] == 0  # simulated clock: 13 days, not yet
    summary = checkpoints_prune(now=now + timedelta(days=5))
    assert summary["jobs"] == 1 and summary["objects_deleted"] == 8
    assert storage.list_keys(f"{job_output_key(old)}/checkpoints/") == []
    assert len(storage.list_keys(f"{job_output_key(recent)}/checkpoints/")) == 4
    assert not old.checkpoints.filter(complete=True).exists()
    pruned = ModelArtifact.objects.filter(job=old, kind="checkpoint")
    assert pruned.count() == 2 and all(a.pruned_at for a in pruned)
    # Adapters, tokenizers, metrics and reports stay, rows and bytes.
    assert storage.exists(f"{job_output_key(old)}/adapter/adapter_model.safetensors")
    assert storage.exists(f"{job_output_key(old)}/reports/validation.json")
    assert not ModelArtifact.objects.filter(job=old).exclude(kind="checkpoint").exclude(pruned_at=None).exists()
    assert checkpoints_prune(now=now + timedelta(days=5))["jobs"] == 0  # nothing left: idempotent
    assert checkpoints_prune(now=now + timedelta(days=15))["jobs"] == 1  # the recent one's turn


def test_prune_is_scheduled_by_beat(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["artifacts: prune checkpoints of finished jobs"]
    assert entry == {"task": "artifacts.tasks.checkpoints_prune", "schedule": 3600.0}


def test_disk_grant_is_file_uris(organization, fake_adapter):
    job = completed_job(organization, adapter_dir=fake_adapter)
    grant = pod_storage_grant(job=job)
    storage = get_storage()
    assert grant["mode"] == "file" and grant["upload"] is None
    assert grant["train_uri"] == storage.uri_for(job.dataset.train_key)
    assert grant["output_uri"] == storage.uri_for(job_output_key(job))


def test_s3_grant_reads_inputs_and_writes_only_under_the_job_prefix(organization, s3_settings):
    from tests.jobs.factories import make_running_job

    parent = completed_job(organization, adapter_dir=None, checkpoints=1)
    job = make_running_job(organization, status="provisioning")
    job.resume_from = parent.checkpoints.get().uri  # a retry resuming from another job's checkpoint
    grant = pod_storage_grant(job=job)
    storage = get_storage()
    assert grant["mode"] == "s3-presigned" and grant["can_delete"] is False
    train = requests.get(grant["train_uri"], timeout=10)
    assert train.status_code == 200 and train.content == storage.get_bytes(job.dataset.train_key)
    assert requests.get(grant["val_uri"], timeout=10).status_code == 200
    assert len(grant["read_urls"]) == 4
    for uri, url in grant["read_urls"].items():
        assert requests.get(url, timeout=10).content == storage.get_bytes(storage.key_for_uri(uri))

    up = grant["upload"]
    out_key = job_output_key(job)
    assert up["key_prefix"] == f"brightrun/{out_key}/"
    assert grant["output_uri"] == f"s3://{s3_settings.S3_BUCKET}/brightrun/{out_key}"
    policy = json.loads(__import__("base64").b64decode(up["fields"]["policy"]))
    assert ["starts-with", "$key", f"brightrun/{out_key}/"] in policy["conditions"]
    assert ["content-length-range", 0, up["max_bytes"]] in policy["conditions"]
    # What a pod does with it: POST a file under its prefix, with plain requests.
    resp = requests.post(up["url"], data={**up["fields"], "key": f"{up['key_prefix']}checkpoints/step-3/COMPLETE"},
                         files={"file": ("COMPLETE", b"ok")}, timeout=10)
    assert resp.status_code in (200, 201, 204)
    assert storage.get_bytes(f"{out_key}/checkpoints/step-3/COMPLETE") == b"ok"
    assert str(parent.pk) not in up["key_prefix"]


@pytest.mark.slow
def test_control_plane_imports_without_torch():
    code = (
        "import sys\n"
        "for name in ('torch', 'peft', 'transformers', 'bitsandbytes'): sys.modules[name] = None\n"
        "import django, os\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings')\n"
        "django.setup()\n"
        "import artifacts.services, artifacts.apis, artifacts.tasks, artifacts.admin, artifacts.package\n"
        "from artifacts.services import job_merged_export\n"
        "from artifacts.errors import MergeNotPossible\n"
        "try:\n"
        "    job_merged_export(job_id='00000000-0000-0000-0000-000000000000')\n"
        "except MergeNotPossible as exc:\n"
        "    print('refused:', exc)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "train` extra" in run.stdout


def test_kinds_cover_the_spec():
    assert {k.value for k in ArtifactKind} == {"adapter", "tokenizer", "checkpoint", "metrics", "report", "package",
                                               "merged"}


def test_retention_keeps_the_adapter_of_a_job_stopped_early(organization, fake_adapter, settings):
    """Stop early completes with the last checkpoint's adapter (adapter_uri inside checkpoints/)."""
    settings.ARTIFACT_CHECKPOINT_RETENTION_DAYS = 1
    job = completed_job(organization, adapter_dir=None, checkpoints=2)
    storage = get_storage()
    ckpt = f"{job_output_key(job)}/checkpoints/step-8"
    for path in fake_adapter.iterdir():
        storage.put_file(f"{ckpt}/adapter/{path.name}", path)
    job.adapter_uri = storage.uri_for(f"{ckpt}/adapter")
    job.result = {**job.result, "stopped_early": True}
    job.save()
    adapter = next(a for a in job_artifacts_register(job_id=job.pk) if a.kind == "adapter")
    assert adapter.key == f"{ckpt}/adapter"
    checkpoints_prune(now=timezone.now() + timedelta(days=2))
    assert storage.exists(f"{ckpt}/adapter/adapter_model.safetensors")
    assert storage.exists(f"{ckpt}/adapter/tokenizer.json")
    assert not storage.exists(f"{ckpt}/optimizer.pt")
    assert storage.list_keys(f"{job_output_key(job)}/checkpoints/step-4/") == []
