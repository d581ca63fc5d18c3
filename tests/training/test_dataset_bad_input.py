"""Every bad input gets an error that names its place, and creates nothing."""
import copy
import json

import pytest

from training.errors import DatasetImportError, DatasetTooLarge
from training.models import Dataset
from training.services.datasets import dataset_import

pytestmark = pytest.mark.django_db


def _pair(pid, turn, history, user, target, system="You are kind."):
    return {"id": pid, "turn_number": turn, "system_prompt": system, "conversation_history": history,
            "current_user_input": user, "target_response": target, "emotional_context": {},
            "training_metadata": {}}


def valid_doc():
    u1 = {"turn": 1, "role": "user", "content": "I feel lost."}
    a2 = {"turn": 2, "role": "assistant", "content": "That is normal."}
    convs = []
    for n in range(3):
        convs.append({
            "conversation_metadata": {"conversation_id": f"c{n}"},
            "training_pairs": [
                _pair(f"c{n}-t1", 1, [], "I feel lost.", None),
                _pair(f"c{n}-t2", 2, [u1], "I feel lost.", "That is normal."),
                _pair(f"c{n}-t3", 3, [u1, a2], "Thanks " * (n + 1), None),
            ],
        })
    return {"training_file_metadata": {"format_spec": "brightrun-lora-v4"}, "consultant_profile": {}, "conversations": convs}


def _bytes(doc):
    return json.dumps(doc).encode()


def mutate(fn):
    doc = valid_doc()
    fn(doc)
    return _bytes(doc)


def _set(path, value):
    def apply(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return apply


DELETE = object()
PAIR = ["conversations", 1, "training_pairs", 1]

BAD_INPUTS = {
    "empty file": (b"", "empty", None),
    "whitespace only": (b"  \n\n ", "empty", None),
    "not json": (b"name,turns\nfoo,3\n", "neither", "line 1"),
    "truncated json": (_bytes(valid_doc())[:-40], "truncated", "line 1"),
    "invalid json": (b'{"training_file_metadata": {format_spec: 1}}', "invalid JSON", "line 1 column"),
    "top-level array": (b"[1, 2]", "neither", "line 1"),
    "not utf-8": (b'{"a": "\xff\xfe"}', "UTF-8", "byte"),
    "unknown format_spec": (mutate(_set(["training_file_metadata", "format_spec"], "brightrun-lora-v9")),
                            "brightrun-lora-v9", "$.training_file_metadata.format_spec"),
    "missing format_spec": (mutate(_set(["training_file_metadata", "format_spec"], DELETE)), "missing",
                            "$.training_file_metadata.format_spec"),
    "conversations not a list": (mutate(_set(["conversations"], {"a": 1})), "must be an array", "$.conversations"),
    "pair missing system_prompt": (mutate(_set(PAIR + ["system_prompt"], DELETE)), "system_prompt",
                                   "$.conversations[1].training_pairs[1] (conversation c1, pair c1-t2).system_prompt"),
    "history not a list": (mutate(_set(PAIR + ["conversation_history"], "I feel lost.")), "must be an array",
                           "$.conversations[1].training_pairs[1] (conversation c1, pair c1-t2).conversation_history"),
    "no assistant turn": (mutate(_set(PAIR + ["target_response"], None)), "nothing to train on",
                          "$.conversations[1] (conversation c1)"),
    "pair history contradicts itself": (mutate(_set(["conversations", 1, "training_pairs", 0, "conversation_history"],
                                                    [{"turn": 1, "role": "assistant", "content": "Hi"}])),
                                        "differs from turn 1", "conversation c1, pair c1-t2"),
    "history disagrees with earlier turns": (mutate(_set(PAIR + ["conversation_history"],
                                                         [{"turn": 1, "role": "user", "content": "Other"}])),
                                             "differs from turn 1", "pair c1-t2).conversation_history[0]"),
    "target wrong type": (mutate(_set(PAIR + ["target_response"], 42)), "must be a string or null", "pair c1-t2"),
    "deeply nested": (b'{"training_file_metadata": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested", None),
    "jsonl system not first": (b'{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]}\n',
                               "only allowed first", "line 1: $.messages[1]"),
    "jsonl only a consultant opening": (b'{"messages": [{"role": "assistant", "content": "a"}, {"role": "user", '
                                        b'"content": "b"}]}\n', "nothing to train on", "line 1"),
    "jsonl no assistant": (b'{"messages": [{"role": "user", "content": "a"}]}\n', "no assistant", "line 1"),
    "jsonl bad line": (b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n{oops}\n'
                       b'{"messages": []}\n', "invalid JSON", "line 2"),
    "jsonl truncated": (b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
                        b'{"messages": [{"role": "user", "con', "truncated", "line 2"),
    "jsonl unknown role": (b'{"messages": [{"role": "tool", "content": "a"}]}\n', "not supported", "line 1: $.messages[0].role"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_located_and_creates_nothing(name, organization, storage_root):
    raw, words, location = BAD_INPUTS[name]
    with pytest.raises(DatasetImportError) as info:
        dataset_import(organization=organization, source=raw, filename="bad.json")
    message = info.value.message
    assert words in message, message
    if location:
        assert location in message, message
    assert Dataset.objects.count() == 0
    assert not storage_root.exists() or not any(p.is_file() for p in storage_root.rglob("*"))


def test_file_over_the_limit(organization, storage_root, settings):
    settings.DATASET_MAX_BYTES = 1000
    raw = _bytes(valid_doc()) + b" " * 2000
    with pytest.raises(DatasetTooLarge) as info:
        dataset_import(organization=organization, source=raw, filename="big.json")
    assert "limit is" in info.value.message and "DATASET_MAX_BYTES" in info.value.message
    assert info.value.http_status == 413
    assert Dataset.objects.count() == 0


def test_valid_doc_of_these_tests_imports(organization):
    """The mutations above break a document that is otherwise valid."""
    ds = dataset_import(organization=organization, source=_bytes(valid_doc()), filename="ok.json").dataset
    assert (ds.conversation_count, ds.pair_count, ds.trainable_turns) == (3, 9, 3)


def test_storage_failure_leaves_no_row(organization, monkeypatch, storage_root):
    from artifacts.storage import get_storage

    storage = get_storage()
    real_put = storage.put_bytes
    calls = []

    def flaky(key, data, content_type=None):
        calls.append(key)
        if key.endswith("val.jsonl"):
            raise OSError("disk full")
        return real_put(key, data, content_type)

    monkeypatch.setattr(storage, "put_bytes", flaky)
    with pytest.raises(OSError):
        dataset_import(organization=organization, source=_bytes(valid_doc()), filename="ok.json")
    assert Dataset.objects.count() == 0
    assert not any(p.is_file() for p in storage_root.rglob("*"))
    assert len(calls) == 3


def test_copy_does_not_mutate():
    doc = valid_doc()
    snapshot = copy.deepcopy(doc)
    mutate(_set(PAIR + ["system_prompt"], DELETE))
    assert doc == snapshot
