"""A corpus of broken and extreme training files: each is refused with a located message or
imported correctly; never a crash, never a partial dataset."""
import codecs
import json

import pytest

from training.errors import DatasetImportError
from training.models import Dataset
from training.services.datasets import dataset_import

pytestmark = pytest.mark.django_db


def _chat(i, user="hi", assistant="hello"):
    return json.dumps({"messages": [{"role": "user", "content": f"{user} {i}"},
                                    {"role": "assistant", "content": f"{assistant} {i}"}]}, ensure_ascii=False)


SECOND = ("\n" + _chat(99)).encode()  # importable files need two conversations (one is held out)


CORPUS = {
    # name: (raw bytes, expected: "ok" or a substring of the error)
    "utf-16 with BOM": (_chat(1, user="caf\xe9 \U0001F600") + "\n" + _chat(2)).encode("utf-16"),
    "utf-16-be with BOM": codecs.BOM_UTF16_BE + (_chat(3) + "\n" + _chat(4)).encode("utf-16-be"),
    "utf-32 with BOM": (_chat(5) + "\n" + _chat(6)).encode("utf-32"),
    "utf-16 without BOM": (_chat(1) + "\n" + _chat(2)).encode("utf-16-le"),
    "utf-16 BOM, odd length": codecs.BOM_UTF16_LE + (_chat(1) + "\n" + _chat(2)).encode("utf-16-le") + b"x",
    "latin-1 accents": _chat(1, user="caf\xe9").encode("latin-1"),
    "bom utf-8 is fine": b"\xef\xbb\xbf" + _chat(1).encode() + SECOND,
    "null bytes": b"\x00" * 64,
    "number at top": b"42",
    "string at top": b'"hello"',
    "messages is an object": b'{"messages": {"role": "user"}}',
    "content is a number": b'{"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}',
    "content parts": json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]},
                                              {"role": "assistant", "content": "b"}]}).encode() + SECOND,
    "image part": json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
                                           {"role": "assistant", "content": "b"}]}).encode(),
    "weight 2": b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 2}]}',
    "duplicate ids": (json.dumps({"id": "x", "messages": json.loads(_chat(1))["messages"]}) + "\n" +
                      json.dumps({"id": "x", "messages": json.loads(_chat(2))["messages"]})).encode(),
    "huge field": json.dumps({"messages": [{"role": "user", "content": "x" * 5_000_000},
                                           {"role": "assistant", "content": "ok"}]}).encode() + SECOND,
    "deep array": b'{"messages": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
    "brightrun pairs not a list": json.dumps({"training_file_metadata": {"format_spec": "brightrun-lora-v4"},
                                              "conversations": [{"training_pairs": "nope"}]}).encode(),
    "brightrun turn_number text": json.dumps({"training_file_metadata": {"format_spec": "brightrun-lora-v4"},
                                              "conversations": [{"training_pairs": [{"turn_number": "one"}]}]}).encode(),
}
EXPECTED = {
    "utf-16 with BOM": "ok",
    "utf-16-be with BOM": "ok",
    "utf-32 with BOM": "ok",
    "utf-16 without BOM": "UTF-16 (little-endian) without a byte-order mark",
    "utf-16 BOM, odd length": "not valid UTF-16",
    "latin-1 accents": "not UTF-8",
    "bom utf-8 is fine": "ok",
    "null bytes": "neither",
    "number at top": "neither",
    "string at top": "neither",
    "messages is an object": "non-empty array",
    "content is a number": "content must be a string",
    "content parts": "ok",
    "image part": "only text content parts",
    "weight 2": "weight must be 0 or 1",
    "duplicate ids": "more than once",
    "huge field": "ok",
    "deep array": "nested too deeply",
    "brightrun pairs not a list": "training_pairs must be an array",
    "brightrun turn_number text": "turn_number must be an integer",
}


@pytest.mark.parametrize("name", list(CORPUS))
def test_corpus(name, organization, storage_root):
    raw, expected = CORPUS[name], EXPECTED[name]
    if expected == "ok":
        ds = dataset_import(organization=organization, source=raw, filename="f.jsonl").dataset
        assert ds.trainable_turns >= 1
        assert Dataset.objects.count() == 1
        return
    with pytest.raises(DatasetImportError) as info:
        dataset_import(organization=organization, source=raw, filename="f.jsonl")
    assert expected in info.value.message, info.value.message
    assert Dataset.objects.count() == 0
    assert not any(p.is_file() for p in storage_root.rglob("*")) if storage_root.exists() else True


@pytest.mark.slow
def test_a_hundred_thousand_tiny_conversations(organization):
    raw = "\n".join(_chat(i) for i in range(100_000)).encode()
    ds = dataset_import(organization=organization, source=raw, filename="many.jsonl").dataset
    assert ds.conversation_count == 100_000 and ds.trainable_turns == 100_000
    # Sides are drawn per conversation: 10% on average (binomial sd 95 here).
    assert abs(ds.val_conversations - 10_000) <= 400


def test_utf16_export_reads_as_the_same_dataset_as_utf8(organization, storage_root):
    """Windows tools write "Unicode" (UTF-16 with a byte-order mark): the same conversations, the
    same text, the same dataset as the UTF-8 file."""
    text = _chat(1, user="caf\xe9 \U0001F600 \u201cquoted\u201d") + "\n" + _chat(2)
    first = dataset_import(organization=organization, source=text.encode("utf-16"), filename="win.jsonl")
    assert first.created
    stored = Dataset.objects.get()
    from artifacts.storage import get_storage

    train_and_val = (get_storage().get_bytes(stored.train_key) + get_storage().get_bytes(stored.val_key)).decode()
    assert "caf\xe9 \U0001F600 \u201cquoted\u201d 1" in train_and_val
    again = dataset_import(organization=organization, source=text.encode("utf-8"), filename="unix.jsonl")
    assert not again.created and again.dataset.pk == first.dataset.pk
