"""Composing a dataset from a training import and a validation import (the OpenAI API's
validation_file): every conversation of one trains, every conversation of the other validates;
identity, overlap refusal, id renames, stats, and nothing half-written."""
from __future__ import annotations

import json

import pytest

from tests.conftest import SAMPLE_FILE
from training.datasets.stats import TokenCounter, token_stats
from training.errors import DatasetImportError
from training.models import Dataset
from training.services.dataset_compose import COMPOSED_SPLIT_SEED, dataset_compose
from training.services.datasets import dataset_import

pytestmark = pytest.mark.django_db


def _chat(i: int, *, topic: str = "saving", id_: str | None = None) -> dict:
    line = {"messages": [{"role": "system", "content": "You are a patient financial coach."},
                         {"role": "user", "content": f"Question {i} about {topic}?"},
                         {"role": "assistant", "content": f"Answer {i} about {topic}."}]}
    if id_ is not None:
        line["id"] = id_
    return line


def _jsonl(lines: list[dict]) -> bytes:
    return "\n".join(json.dumps(line) for line in lines).encode()


def _import(org, data: bytes, filename: str) -> Dataset:
    return dataset_import(organization=org, source=data, filename=filename).dataset


def _stored(storage_root, key) -> list[dict]:
    return [json.loads(line) for line in (storage_root / key).read_text().splitlines()]


def _files(storage_root) -> set:
    return {p for p in storage_root.rglob("*") if p.is_file()}


@pytest.fixture
def pair(organization, storage_root):
    train = _import(organization, SAMPLE_FILE.read_bytes(), "brightrun-sample.json")
    val = _import(organization, _jsonl([_chat(i, topic="debt") for i in range(3)]), "holdout.jsonl")
    return train, val


def test_trains_on_all_of_one_and_validates_on_all_of_the_other(organization, storage_root, pair):
    train, val = pair
    result = dataset_compose(organization=organization, train=train, val=val)
    ds = result.dataset
    assert result.created

    train_all = _stored(storage_root, train.train_key) + _stored(storage_root, train.val_key)
    val_all = _stored(storage_root, val.train_key) + _stored(storage_root, val.val_key)
    assert len(train_all) == train.conversation_count == 16 and len(val_all) == 3
    assert _stored(storage_root, ds.train_key) == train_all  # byte-for-byte the imports' conversations
    assert _stored(storage_root, ds.val_key) == val_all
    assert ds.split == {"train": [c["conversation_id"] for c in train_all],
                        "val": [c["conversation_id"] for c in val_all]}

    assert (ds.train_conversations, ds.val_conversations, ds.conversation_count) == (16, 3, 19)
    assert ds.pair_count == train.pair_count + val.pair_count
    assert ds.trainable_turns == train.trainable_turns + val.trainable_turns
    assert ds.val_fraction == round(3 / 19, 4) and ds.split_seed == COMPOSED_SPLIT_SEED
    assert ds.consultant_profile == train.consultant_profile and ds.consultant_profile
    assert ds.source_format == train.source_format

    # Stats as an import computes them: each side's tokens are its file's tokens.
    counter = TokenCounter(None)
    assert ds.stats["train_tokens"] == token_stats(train_all, counter)["per_epoch"] == train.stats["tokens"]["per_epoch"]
    assert ds.stats["val_tokens"] == val.stats["tokens"]["per_epoch"]
    assert ds.stats["conversations"] == 19
    assert ds.composition["train"]["dataset_id"] == str(train.pk)
    assert ds.composition["val"] == {"dataset_id": str(val.pk), "name": val.name, "source_filename": "holdout.jsonl",
                                     "source_format": "chat-jsonl", "content_sha256": val.content_sha256,
                                     "conversations": 3}
    manifest = json.loads((storage_root / ds.source_key).read_text())
    assert manifest["val"]["dataset_id"] == str(val.pk) and ds.source_bytes == (storage_root / ds.source_key).stat().st_size


def test_the_same_pair_twice_is_one_dataset_and_the_reverse_another(organization, storage_root, pair):
    train, val = pair
    first = dataset_compose(organization=organization, train=train, val=val).dataset
    files = _files(storage_root)
    again = dataset_compose(organization=organization, train=train, val=val)
    assert not again.created and again.dataset.pk == first.pk and "already composed" in again.message
    assert _files(storage_root) == files  # nothing written again
    reverse = dataset_compose(organization=organization, train=val, val=train).dataset
    assert reverse.pk != first.pk and (reverse.train_conversations, reverse.val_conversations) == (3, 16)
    # A composed dataset never takes the identity of an import of the same conversations.
    assert first.content_sha256 not in {train.content_sha256, val.content_sha256}


def test_a_conversation_in_both_files_is_refused_and_nothing_is_stored(organization, storage_root):
    train = _import(organization, _jsonl([_chat(i) for i in range(6)]), "train.jsonl")
    # Conversation 4 of the training file again, under another id: the same messages.
    val = _import(organization, _jsonl([_chat(4, id_="copied"), _chat(9, topic="debt")]), "val.jsonl")
    rows, files = Dataset.objects.count(), _files(storage_root)
    with pytest.raises(DatasetImportError) as info:
        dataset_compose(organization=organization, train=train, val=val)
    assert info.value.code == "validation_overlap"
    assert "1 of the validation file's 2 conversations" in info.value.message
    assert "copied (= training line-5)" in info.value.message and "dishonest" in info.value.message
    assert Dataset.objects.count() == rows and _files(storage_root) == files

    with pytest.raises(DatasetImportError) as info:
        dataset_compose(organization=organization, train=train, val=train)
    assert info.value.code == "validation_overlap" and "same content as the training file" in info.value.message
    assert Dataset.objects.count() == rows


def test_a_shared_id_with_other_messages_is_renamed_and_said(organization, storage_root):
    train = _import(organization, _jsonl([_chat(i, id_=f"c{i}") for i in range(3)] + [_chat(9, id_="val-c1")]),
                    "train.jsonl")
    val = _import(organization, _jsonl([_chat(1, topic="debt", id_="c1"), _chat(2, topic="debt", id_="fresh")]),
                  "val.jsonl")
    ds = dataset_compose(organization=organization, train=train, val=val).dataset
    # "val-c1" is taken by a training conversation, so the next deterministic name is used.
    assert ds.composition["renamed_val_ids"] == {"c1": "val2-c1"}
    expected = [{"c1": "val2-c1"}.get(i, i) for i in val.split["train"] + val.split["val"]]
    assert sorted(expected) == ["fresh", "val2-c1"] and ds.split["val"] == expected
    assert [c["conversation_id"] for c in _stored(storage_root, ds.val_key)] == expected
    assert len(set(ds.split["train"]) | set(ds.split["val"])) == ds.conversation_count
    assert any("renamed: c1 → val2-c1" in w for w in ds.stats["warnings"])


def test_a_failed_write_leaves_nothing(organization, storage_root, pair, monkeypatch):
    from artifacts.storage import get_storage

    train, val = pair
    storage = get_storage()
    real_put = storage.put_bytes
    rows, files = Dataset.objects.count(), _files(storage_root)

    def flaky(key, data, content_type=None):
        if key.endswith("val.jsonl"):
            raise OSError("disk full")
        return real_put(key, data, content_type)

    monkeypatch.setattr(storage, "put_bytes", flaky)
    with pytest.raises(OSError):
        dataset_compose(organization=organization, train=train, val=val)
    assert Dataset.objects.count() == rows and _files(storage_root) == files


def test_another_organizations_dataset_is_refused(organization, other_organization, storage_root, pair):
    train, _ = pair
    theirs = _import(other_organization, _jsonl([_chat(i, topic="tax") for i in range(2)]), "theirs.jsonl")
    with pytest.raises(DatasetImportError) as info:
        dataset_compose(organization=organization, train=train, val=theirs)
    assert info.value.code == "wrong_organization"
