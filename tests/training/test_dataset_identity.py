"""Stable identity and split: a conversation is its content hash, its side is drawn from that hash
and the seed, datasets record the conversations they share, and compare pages warn when the
validation sets differ. The 72-conversation file is, like the real one, a 24- and a
48-conversation file together."""
import copy
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from training import selectors
from training.datasets.identity import conversation_hash
from training.datasets.normalize import parse
from training.models import Dataset, DatasetConversation, StatsStatus, TrainingJob
from training.services.datasets import dataset_import, dataset_stats_compute, dataset_stats_redrive

pytestmark = pytest.mark.django_db


def _part(real_file, start, end) -> bytes:
    doc = json.loads(real_file.read_bytes())
    part = copy.deepcopy(doc)
    part["conversations"] = doc["conversations"][start:end]
    part["training_file_metadata"]["total_conversations"] = end - start
    part["training_file_metadata"].pop("total_training_pairs", None)
    return json.dumps(part).encode()


def _import(org, raw, name, **kw):
    return dataset_import(organization=org, source=raw, filename=name, **kw).dataset


def _sides(ds):
    return {r.conversation_hash: r.side for r in DatasetConversation.objects.filter(dataset=ds)}


def test_a_conversation_lands_on_the_same_side_in_every_file(organization, real_file):
    small = _import(organization, _part(real_file, 24, 72), "48.json", val_fraction=0.2)
    whole = _import(organization, real_file.read_bytes(), "72.json", val_fraction=0.2)
    small_sides, whole_sides = _sides(small), _sides(whole)
    assert len(small_sides) == 48 and len(whole_sides) == 72
    assert all(whole_sides[h] == side for h, side in small_sides.items())
    assert small.val_conversations >= 1 and whole.val_conversations >= 1
    # The 72's stats name the 48 and say no validation conversation of either is trained on by the other.
    [shared] = whole.stats["shared_with"]
    assert shared["dataset_id"] == str(small.pk) and shared["conversations"] == 48
    assert shared["our_val_in_their_train"] == 0 and shared["their_val_in_our_train"] == 0
    assert selectors.dataset_shared_conversations(dataset=small)[0]["conversations"] == 48
    small.refresh_from_db()  # the earlier dataset's stats learn of the later one
    assert small.stats["shared_with"][0]["dataset_id"] == str(whole.pk)


def test_identity_is_the_content_not_the_id(real_file):
    doc = json.loads(real_file.read_bytes())
    renamed = copy.deepcopy(doc)
    for conv in renamed["conversations"]:
        conv["conversation_metadata"]["conversation_id"] += "-copy"
    a = [conversation_hash(c) for c in parse(real_file.read_bytes()).conversations]
    b = [conversation_hash(c) for c in parse(json.dumps(renamed).encode()).conversations]
    assert a == b and len(set(a)) == 72
    edited = copy.deepcopy(doc)
    for pair in edited["conversations"][0]["training_pairs"]:
        pair["system_prompt"] += " Be brief."
    c = [conversation_hash(x) for x in parse(json.dumps(edited).encode()).conversations]
    assert c[0] != a[0] and c[1:] == a[1:]


def test_the_stored_conversations_carry_their_hash(organization, real_file, storage_root):
    ds = _import(organization, real_file.read_bytes(), "72.json")
    stored = [json.loads(line) for line in (storage_root / ds.val_key).read_text().splitlines()]
    assert {c["conversation_hash"] for c in stored} == {h for h, s in _sides(ds).items() if s == "val"}
    assert len(ds.val_fingerprint) == 64


def test_other_seed_leaks_and_the_selector_says_so(organization, real_file):
    a = _import(organization, _part(real_file, 24, 72), "48.json", seed=1, val_fraction=0.3)
    b = _import(organization, real_file.read_bytes(), "72.json", seed=2, val_fraction=0.3)
    assert a.val_fingerprint != b.val_fingerprint
    warnings = selectors.validation_sets_compare(datasets=[a, b])
    assert "different validation sets" in warnings[0]
    assert any(f"validation conversations of {a.name} are training conversations of {b.name}" in w for w in warnings)
    assert any("do not compare their validation figures" in w for w in b.stats["warnings"])
    assert selectors.validation_sets_compare(datasets=[a, a]) == []


def test_compare_pages_warn_when_validation_sets_differ(organization, make_user, real_file):
    a = _import(organization, _part(real_file, 0, 24), "24.json")
    b = _import(organization, real_file.read_bytes(), "72.json")
    jobs = [TrainingJob.objects.create(organization=organization, dataset=ds, name=f"job-{i}", base_model="tiny",
                                       preset="balanced", hyperparameters={}, status="completed")
            for i, ds in enumerate((a, b, a))]
    client = Client()
    client.force_login(make_user("eng", organization))
    page = client.get(f"/jobs/compare/?ids={jobs[0].pk},{jobs[1].pk}").content.decode()
    assert "Validation sets differ" in page
    assert "different validation sets" in page
    same = client.get(f"/jobs/compare/?ids={jobs[0].pk},{jobs[2].pk}").content.decode()
    assert "Validation sets differ" not in same
    report = client.get(f"/reports/compare/?a={jobs[0].pk}&b={jobs[1].pk}").content.decode()
    assert "Validation sets differ" in report


# --------------------------------------------------------------------------- background statistics

def _tokenizer(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.train_from_iterator(["money feelings plan"] * 10, trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"]))
    tok.save(str(tmp_path / "tokenizer.json"))
    return str(tmp_path)


def test_without_a_tokenizer_the_estimates_are_final(organization, sample_file):
    ds = _import(organization, sample_file.read_bytes(), "s.json")
    assert ds.stats_status == StatsStatus.READY and ds.stats["tokens"]["method"] == "estimate"


@pytest.mark.slow
def test_the_import_schedules_the_exact_count_after_commit(organization, sample_file, tmp_path, settings, monkeypatch,
                                                           django_capture_on_commit_callbacks):
    settings.TOKENIZER_PATH = _tokenizer(tmp_path)
    sent = []
    from training import tasks

    monkeypatch.setattr(tasks.dataset_stats_compute, "delay", lambda pk: sent.append(pk))
    with django_capture_on_commit_callbacks(execute=True):
        ds = _import(organization, sample_file.read_bytes(), "s.json")
    assert ds.stats_status == StatsStatus.PENDING and sent == [str(ds.pk)]
    assert tasks.dataset_stats_compute.run(str(ds.pk)) == "ready"
    ds.refresh_from_db()
    assert ds.stats["tokens"]["method"] == "exact_content"
    assert ds.stats["train_tokens"] + ds.stats["val_tokens"] == ds.stats["tokens"]["per_epoch"]


def test_a_failed_count_keeps_the_estimates(organization, sample_file, tmp_path, settings, monkeypatch):
    settings.TOKENIZER_PATH = _tokenizer(tmp_path)
    ds = _import(organization, sample_file.read_bytes(), "s.json")
    from artifacts.storage import get_storage

    monkeypatch.setattr(get_storage(), "get_bytes", lambda key: (_ for _ in ()).throw(OSError("bucket gone")))
    ds = dataset_stats_compute(dataset_id=ds.pk)
    assert ds.stats_status == StatsStatus.FAILED and "bucket gone" in ds.stats["stats_error"]
    assert ds.stats["tokens"]["method"] == "estimate"


def test_stuck_pending_statistics_are_sent_again(organization, sample_file, tmp_path, settings, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    settings.TOKENIZER_PATH = _tokenizer(tmp_path)
    settings.DATASET_STATS_REDRIVE_S = 60
    ds = _import(organization, sample_file.read_bytes(), "s.json")
    sent = []
    from training import tasks

    monkeypatch.setattr(tasks.dataset_stats_compute, "delay", lambda pk: sent.append(pk))
    assert dataset_stats_redrive() == []  # young: its task may still be on its way
    Dataset.objects.filter(pk=ds.pk).update(created_at=timezone.now() - timedelta(seconds=120))
    assert dataset_stats_redrive() == [str(ds.pk)] and sent == [str(ds.pk)]
    assert dataset_stats_redrive() == []  # sent once per DATASET_STATS_REDRIVE_S, not every reconcile


@pytest.mark.slow
def test_admin_lists_the_status_and_recounts(organization, sample_file, tmp_path, settings, monkeypatch):
    from django.contrib.auth import get_user_model

    settings.TOKENIZER_PATH = _tokenizer(tmp_path)
    ds = _import(organization, sample_file.read_bytes(), "s.json")
    ds = dataset_stats_compute(dataset_id=ds.pk)
    sent = []
    from training import tasks

    monkeypatch.setattr(tasks.dataset_stats_compute, "delay", lambda pk: sent.append(pk))
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", password="pw-root-1"))
    page = client.get("/admin/training/dataset/")
    assert page.status_code == 200 and "ready" in page.content.decode().lower()
    response = client.post("/admin/training/dataset/", {"action": "stats_recompute", "_selected_action": [str(ds.pk)]})
    assert response.status_code == 302 and sent == [str(ds.pk)]
    ds.refresh_from_db()
    assert ds.stats_status == StatsStatus.PENDING


def test_dataset_stats_command(organization, sample_file, tmp_path, settings):
    settings.TOKENIZER_PATH = _tokenizer(tmp_path)
    ds = _import(organization, sample_file.read_bytes(), "s.json")
    out = StringIO()
    call_command("dataset_stats", "--all", stdout=out)
    assert f"{ds.pk} ready" in out.getvalue() and "exact_content" in out.getvalue()
    ds.refresh_from_db()
    assert ds.stats_status == StatsStatus.READY
    out = StringIO()
    call_command("dataset_stats", "--all", stdout=out)
    assert "nothing to do" in out.getvalue()


def test_dataset_page_shows_status_shared_conversations_and_warnings(organization, make_user, real_file):
    small = _import(organization, _part(real_file, 24, 72), "48.json", seed=1, val_fraction=0.3)
    whole = _import(organization, real_file.read_bytes(), "72.json", seed=2, val_fraction=0.3)
    client = Client()
    client.force_login(make_user("eng", organization))
    page = client.get(f"/datasets/{whole.pk}/").content.decode()
    assert "Conversations shared with other datasets" in page and small.name in page
    assert f"/datasets/{small.pk}/" in page and "do not compare their validation figures" in page
    assert "Ready" in page


def test_a_dataset_from_before_the_hashes_is_filled_in(organization, sample_file, storage_root):
    ds = _import(organization, sample_file.read_bytes(), "s.json")
    fingerprint, sides = ds.val_fingerprint, _sides(ds)
    # As an import before this change left it: no rows, no fingerprint, no hash in the stored lines.
    DatasetConversation.objects.filter(dataset=ds).delete()
    Dataset.objects.filter(pk=ds.pk).update(val_fingerprint="")
    for key in (ds.train_key, ds.val_key):
        path = storage_root / key
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({k: v for k, v in c.items() if k != "conversation_hash"}) + "\n"
                                for c in lines))
    out = StringIO()
    call_command("dataset_stats", "--all", stdout=out)
    ds.refresh_from_db()
    assert ds.val_fingerprint == fingerprint and _sides(ds) == sides
