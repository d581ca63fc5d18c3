"""Everything the Bright Run app writes: its training.jsonl (with and without the `_meta` line), its
per-conversation v4 files, several files at once, and the imperfect conversations its own validator
only warns about. The files here are built from the descriptions of the app's output (issue 19),
from the project's sample file and the shared 72-conversation file."""
import copy
import io
import json

import pytest

from training.datasets.normalize import (
    FIX_CONSULTANT_FIRST,
    FIX_KEPT_ASSISTANT,
    FIX_MERGED_ASSISTANT,
    FIX_MERGED_USER,
    SKIP_CONSULTANT_OPENING,
    parse,
)
from training.errors import DatasetImportError
from training.models import Dataset
from training.services.datasets import dataset_import

pytestmark = pytest.mark.django_db


def _doc(path):
    return json.loads(path.read_bytes())


def training_jsonl(doc, *, meta=True) -> bytes:
    """The app's training.jsonl: an optional first line {"_meta": {...}} with the file's metadata,
    then one training pair per line; client turns (target_response null) are left out."""
    lines = [{"_meta": doc["training_file_metadata"]}] if meta else []
    for conv in doc["conversations"]:
        lines += [p for p in conv["training_pairs"] if p["target_response"] is not None]
    return "\n".join(json.dumps(x) for x in lines).encode() + b"\n"


def conversation_files(doc) -> list[tuple[str, bytes]]:
    """The app's per-conversation v4 files: dataset_metadata, consultant_profile, training_pairs."""
    out = []
    for conv in doc["conversations"]:
        cmeta = conv["conversation_metadata"]
        body = {"dataset_metadata": {**cmeta, "format_spec": "brightrun-lora-v4"},
                "consultant_profile": doc["consultant_profile"], "training_pairs": conv["training_pairs"]}
        out.append((f"conversation-{cmeta['conversation_id']}.json", json.dumps(body, indent=2).encode()))
    return out


def _targets(conversations):
    """What training sees of each conversation: its system prompt and trained replies in order."""
    return sorted((c["messages"][0]["content"], tuple(m["content"] for m in c["messages"] if m.get("train")))
                  for c in conversations)


# --------------------------------------------------------------------------- training.jsonl

@pytest.mark.parametrize("meta", [True, False], ids=["with _meta", "without _meta"])
def test_the_apps_training_jsonl_is_the_same_training_data(real_file, meta):
    doc = _doc(real_file)
    from_json = parse(real_file.read_bytes())
    from_jsonl = parse(training_jsonl(doc, meta=meta))
    assert from_jsonl.format == "brightrun-jsonl"
    assert (len(from_jsonl.conversations), from_jsonl.pairs, from_jsonl.trainable_turns) == (72, 212, 212)
    assert _targets(from_jsonl.conversations) == _targets(from_json.conversations)
    # Every reply comes after exactly the history its pair gave it.
    for conv in doc["conversations"]:
        for pair in conv["training_pairs"]:
            if pair["target_response"] is None:
                continue
            hits = [(c, i) for c in from_jsonl.conversations for i, m in enumerate(c["messages"])
                    if m.get("pair_id") == pair["id"] and m["content"] == pair["target_response"]]
            assert len(hits) == 1
            c, i = hits[0]
            assert [(m["role"], m["content"]) for m in c["messages"][1:i]] == \
                [(h["role"], h["content"]) for h in pair["conversation_history"]]
    if meta:
        assert from_jsonl.file_metadata["format_spec"] == "brightrun-lora-v4"


def test_training_jsonl_meta_may_nest_the_metadata_and_profile(sample_file):
    doc = _doc(sample_file)
    raw = training_jsonl(doc).split(b"\n", 1)[1]
    meta = {"_meta": {"training_file_metadata": doc["training_file_metadata"],
                      "consultant_profile": doc["consultant_profile"]}}
    normalized = parse(json.dumps(meta).encode() + b"\n" + raw)
    assert normalized.consultant_profile == doc["consultant_profile"]
    assert normalized.file_metadata["file_name"] == doc["training_file_metadata"]["file_name"]
    assert len(normalized.conversations) == 16


def test_training_jsonl_imports_through_the_api(api_client, organization, make_user, sample_file):
    api_client.force_authenticate(make_user("eng", organization))
    f = io.BytesIO(training_jsonl(_doc(sample_file)))
    f.name = "training.jsonl"
    response = api_client.post("/api/v1/datasets/", {"file": f}, format="multipart")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["source_format"] == "brightrun-jsonl" and body["conversation_count"] == 16
    assert body["trainable_turns"] == 44


def test_training_jsonl_with_a_wrong_meta_spec_names_the_line(sample_file):
    doc = _doc(sample_file)
    doc["training_file_metadata"]["format_spec"] = "brightrun-lora-v9"
    with pytest.raises(DatasetImportError) as info:
        parse(training_jsonl(doc))
    assert "line 1: $._meta.format_spec" in info.value.message and "not supported" in info.value.message


# --------------------------------------------------------------------------- single-conversation files

def test_a_single_conversation_file(sample_file):
    name, raw = conversation_files(_doc(sample_file))[0]
    normalized = parse(raw)
    assert normalized.format == "brightrun-conversation"
    assert len(normalized.conversations) == 1
    conv = normalized.conversations[0]
    assert conv["conversation_id"] == "a4fdcef3-90d3-52f9-bcc0-ef805209c15c"
    assert conv["metadata"]["persona"] == "anxious_planner"
    assert normalized.consultant_profile["name"]


def test_twelve_conversation_files_make_one_dataset(organization, sample_file):
    files = conversation_files(_doc(sample_file))[:12]
    result = dataset_import(organization=organization, files=[(n, raw, len(raw)) for n, raw in files])
    ds = result.dataset
    assert result.created and ds.conversation_count == 12
    assert ds.source_format == "brightrun-conversation"
    assert "from 12 files" in result.message
    assert len(ds.file_metadata["files"]) == 12
    assert ds.train_conversations + ds.val_conversations == 12


def test_several_file_parts_through_the_api(api_client, organization, make_user, sample_file):
    api_client.force_authenticate(make_user("eng", organization))
    parts = []
    for name, raw in conversation_files(_doc(sample_file))[:4]:
        f = io.BytesIO(raw)
        f.name = name
        parts.append(f)
    response = api_client.post("/api/v1/datasets/", {"file": parts}, format="multipart")
    assert response.status_code == 201, response.json()
    assert response.json()["conversation_count"] == 4


def test_too_many_file_parts_is_a_400_naming_the_setting(api_client, organization, make_user, sample_file, settings):
    settings.DATASET_MAX_FILES = 2
    api_client.force_authenticate(make_user("eng", organization))
    parts = []
    for name, raw in conversation_files(_doc(sample_file))[:3]:
        f = io.BytesIO(raw)
        f.name = name
        parts.append(f)
    response = api_client.post("/api/v1/datasets/", {"file": parts}, format="multipart")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "too_many_files" and "DATASET_MAX_FILES" in error["message"]
    assert Dataset.objects.count() == 0


def test_too_many_files_is_refused_with_the_setting(organization, sample_file, settings):
    settings.DATASET_MAX_FILES = 3
    files = conversation_files(_doc(sample_file))[:4]
    with pytest.raises(DatasetImportError) as info:
        dataset_import(organization=organization, files=[(n, raw, None) for n, raw in files])
    assert "DATASET_MAX_FILES" in info.value.message and info.value.code == "too_many_files"
    assert Dataset.objects.count() == 0


def test_several_files_together_over_the_limit(organization, sample_file, settings):
    files = conversation_files(_doc(sample_file))[:4]
    settings.DATASET_MAX_BYTES = sum(len(raw) for _n, raw in files) - 1
    with pytest.raises(DatasetImportError) as info:
        dataset_import(organization=organization, files=[(n, raw, None) for n, raw in files])
    assert "files together" in info.value.message and info.value.http_status == 413
    assert Dataset.objects.count() == 0


def test_a_bad_file_among_several_is_named(organization, sample_file, storage_root):
    files = conversation_files(_doc(sample_file))[:3]
    files.append(("notes.json", b'{"title": "my notes"}'))
    with pytest.raises(DatasetImportError) as info:
        dataset_import(organization=organization, files=[(n, raw, None) for n, raw in files])
    message = info.value.message
    assert message.startswith("notes.json: $:") and "top-level keys title" in message
    assert Dataset.objects.count() == 0
    assert not any(p.is_file() for p in storage_root.rglob("*"))


def test_overlapping_files_are_deduplicated_by_content(organization, real_file):
    doc = _doc(real_file)
    first, second = copy.deepcopy(doc), copy.deepcopy(doc)
    first["conversations"] = doc["conversations"][:48]
    second["conversations"] = doc["conversations"][24:]  # 24 of them also in the first file
    result = dataset_import(organization=organization, files=[("a.json", json.dumps(first).encode(), None),
                                                              ("b.json", json.dumps(second).encode(), None)])
    ds = result.dataset
    assert ds.conversation_count == 72 and ds.stats["duplicates_removed"] == 24
    assert ds.trainable_turns == 212
    # The same conversations as the 72-conversation file: the same dataset.
    again = dataset_import(organization=organization, source=real_file.read_bytes(), filename=real_file.name)
    assert not again.created and again.dataset.pk == ds.pk


def test_cli_takes_several_paths(tmp_path, sample_file):
    from io import StringIO

    from django.core.management import call_command

    paths = []
    for name, raw in conversation_files(_doc(sample_file))[:5]:
        path = tmp_path / name
        path.write_bytes(raw)
        paths.append(str(path))
    out = StringIO()
    call_command("import_dataset", *paths, "--json", stdout=out)
    payload = json.loads(out.getvalue())
    assert payload["conversations"] == 5 and payload["created"]


# --------------------------------------------------------------------------- imperfect conversations

SYSTEM = "You are a warm financial planning assistant."


def _pair(pid, turn, history, user, target, emotion=None):
    return {"id": pid, "turn_number": turn, "system_prompt": SYSTEM, "conversation_history": history,
            "current_user_input": user, "target_response": target,
            "emotional_context": {"detected_emotions": {"primary": emotion}} if emotion else None,
            "training_metadata": {}}


def _h(role, content, emotion=None):
    entry = {"role": role, "content": content}
    if emotion:
        entry["emotional_state"] = {"primary": emotion}
    return entry


def _file(*conversations):
    convs = [{"conversation_metadata": {"conversation_id": f"c{i}", "scaffolding": {"persona_key": "p"}},
              "training_pairs": pairs} for i, pairs in enumerate(conversations)]
    return json.dumps({"training_file_metadata": {"format_spec": "brightrun-lora-v4"}, "consultant_profile": {},
                       "conversations": convs}).encode()


def _plain(i):
    return [_pair(f"n{i}-1", 1, [], f"Question {i}", None, "anxiety"),
            _pair(f"n{i}-2", 2, [_h("user", f"Question {i}")], f"Question {i}", f"Answer {i}")]


def consultant_first():
    """The consultant opens; the app writes current_user_input "" for that turn."""
    hello = "Hi, I'm Naomi. What brings you here today?"
    return [
        _pair("cf-1", 1, [], "", hello),
        _pair("cf-2", 2, [_h("assistant", hello)], "I have debt.", None, "shame"),
        _pair("cf-3", 3, [_h("assistant", hello), _h("user", "I have debt.")], "I have debt.", "Thank you for saying so."),
    ]


def test_consultant_first_trains_from_the_first_client_message(organization):
    ds = dataset_import(organization=organization, source=_file(consultant_first(), _plain(1)), filename="f.json").dataset
    normalized = parse(_file(consultant_first(), _plain(1)))
    conv = normalized.conversations[0]
    assert [(m["role"], bool(m.get("train"))) for m in conv["messages"]] == [
        ("system", False), ("assistant", False), ("user", False), ("assistant", True)]
    assert ds.stats["imperfect"] == {FIX_CONSULTANT_FIRST: 1}
    assert ds.stats["skipped"][SKIP_CONSULTANT_OPENING] == 1
    assert ds.trainable_turns == 2


def test_two_client_turns_in_a_row_are_merged(organization):
    pairs = [
        _pair("u-1", 1, [], "I lost my job.", None, "fear"),
        _pair("u-2", 2, [_h("user", "I lost my job.")], "And my rent is due.", None, "panic"),
        _pair("u-3", 3, [_h("user", "I lost my job."), _h("user", "And my rent is due.")], "And my rent is due.",
              "That is a lot at once."),
    ]
    ds = dataset_import(organization=organization, source=_file(pairs, _plain(1)), filename="f.json").dataset
    conv = parse(_file(pairs, _plain(1))).conversations[0]
    assert [m["role"] for m in conv["messages"]] == ["system", "user", "assistant"]
    assert conv["messages"][1]["content"] == "I lost my job.\n\nAnd my rent is due."
    assert conv["messages"][1]["emotion"] == {"primary": "panic"}
    assert ds.stats["imperfect"] == {FIX_MERGED_USER: 1}


def test_two_consultant_turns_in_a_row(organization):
    pairs = [
        _pair("a-1", 1, [], "Help.", None),
        _pair("a-2", 2, [_h("user", "Help.")], "Help.", "I am here."),
        _pair("a-3", 3, [_h("user", "Help."), _h("assistant", "I am here.")], "", "Tell me more."),
    ]
    ds = dataset_import(organization=organization, source=_file(pairs, _plain(1)), filename="f.json").dataset
    conv = parse(_file(pairs, _plain(1))).conversations[0]
    assert [m["role"] for m in conv["messages"]] == ["system", "user", "assistant"]
    assert conv["messages"][2]["content"] == "I am here.\n\nTell me more." and conv["messages"][2]["train"]
    assert conv["messages"][2]["pair_ids"] == ["a-2", "a-3"]
    assert ds.stats["imperfect"] == {FIX_MERGED_ASSISTANT: 1}
    assert ds.trainable_turns == 2


def test_a_context_reply_next_to_a_target_is_kept_apart():
    raw = (json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0},
                                    {"role": "assistant", "content": "c"}]}) + "\n" +
           json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]})).encode()
    normalized = parse(raw)
    assert [(m["role"], m["train"]) for m in normalized.conversations[0]["messages"][1:]] == [
        ("assistant", False), ("assistant", True)]
    assert normalized.fixes == {FIX_KEPT_ASSISTANT: 1}


# --------------------------------------------------------------------------- on_error=skip

def _with_one_bad():
    bad = _plain(9)
    bad[1]["target_response"] = 42
    return _file(_plain(1), bad, _plain(2), _plain(3))


def test_one_bad_conversation_refuses_the_file_by_default(organization):
    with pytest.raises(DatasetImportError) as info:
        dataset_import(organization=organization, source=_with_one_bad(), filename="f.json")
    assert "$.conversations[1].training_pairs[1]" in info.value.message
    assert Dataset.objects.count() == 0


def test_on_error_skip_imports_the_rest_and_lists_what_was_left_out(organization):
    result = dataset_import(organization=organization, source=_with_one_bad(), filename="f.json", on_error="skip")
    ds = result.dataset
    assert ds.conversation_count == 3
    [skipped] = ds.stats["skipped_conversations"]
    assert skipped["location"].startswith("$.conversations[1].training_pairs[1] (conversation c1, pair n9-2)")
    assert "must be a string or null" in skipped["reason"] and skipped["code"] == "invalid_field"
    assert "1 conversations could not be read" in result.message


def test_on_error_skip_through_the_api_and_the_cli(api_client, organization, make_user, tmp_path):
    api_client.force_authenticate(make_user("eng", organization))
    f = io.BytesIO(_with_one_bad())
    f.name = "f.json"
    refused = api_client.post("/api/v1/datasets/", {"file": f}, format="multipart")
    assert refused.status_code == 400
    f.seek(0)
    response = api_client.post("/api/v1/datasets/", {"file": f, "on_error": "skip"}, format="multipart")
    assert response.status_code == 201, response.json()
    assert len(response.json()["stats"]["skipped_conversations"]) == 1

    from io import StringIO

    from django.core.management import call_command

    path = tmp_path / "f.json"
    path.write_bytes(_with_one_bad())
    out = StringIO()
    call_command("import_dataset", str(path), "--on-error", "skip", "--org", "other", stdout=out)
    assert "left out" in out.getvalue() and "conversation c1" in out.getvalue()


def test_skip_in_jsonl_lists_bad_lines():
    raw = (json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}) +
           "\n{oops}\n" +
           json.dumps({"messages": [{"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]})).encode()
    normalized = parse(raw, on_error="skip")
    assert len(normalized.conversations) == 2
    assert normalized.skipped_conversations[0]["location"] == "line 2"


def test_skip_when_every_conversation_is_bad_still_refuses():
    bad = _plain(1)
    bad[1]["target_response"] = 42
    with pytest.raises(DatasetImportError) as info:
        parse(_file(bad), on_error="skip")
    assert "every conversation of the file was refused" in info.value.message


# --------------------------------------------------------------------------- labels, names, prompts

def test_emotion_labels_are_the_datasets_own(organization, real_file):
    ds = dataset_import(organization=organization, source=real_file.read_bytes(), filename=real_file.name).dataset
    labels = ds.stats["emotion_labels"]
    # One spelling per label: "cautious hope" and "cautious_hope" are one.
    assert "cautious_hope" in labels["labels"] and "cautious hope" not in labels["labels"]
    assert labels["counts"]["cautious_hope"] == 2 and labels["aliases"]["cautious hope"] == "cautious_hope"
    assert labels["counts"]["clarity"] == 43
    assert labels["labelled_client_turns"] == sum(labels["counts"].values()) == 235
    from training.selectors import dataset_emotion_labels

    assert dataset_emotion_labels(dataset=ds) == labels["labels"]


def test_emotion_label_falls_back_to_the_later_history():
    pairs = [
        _pair("e-1", 1, [], "I am lost.", None),  # no emotional_context
        _pair("e-2", 2, [_h("user", "I am lost.", emotion="confusion")], "I am lost.", "Let's look together."),
    ]
    conv = parse(_file(pairs, _plain(1))).conversations[0]
    assert conv["messages"][1]["emotion"] == {"primary": "confusion"}


def test_empty_scaffolding_names_fall_back_to_the_pairs(organization, sample_file):
    doc = _doc(sample_file)
    for conv in doc["conversations"][:3]:
        conv["conversation_metadata"]["scaffolding"]["persona_key"] = ""
        conv["conversation_metadata"]["scaffolding"]["training_topic_key"] = ""
    ds = dataset_import(organization=organization, source=json.dumps(doc).encode(), filename="f.json").dataset
    dist = ds.stats["distributions"]
    assert "" not in dist["persona"] and "" not in dist["topic"]
    assert sum(dist["persona"].values()) == 16 and sum(dist["topic"].values()) == 16


def test_a_changed_system_prompt_is_warned_per_pair():
    pairs = _plain(5) + [_pair("n5-3", 3, [_h("user", "Question 5"), _h("assistant", "Answer 5")], "More?", None)]
    pairs[1]["system_prompt"] = "Another prompt."
    pairs[2]["system_prompt"] = "A third prompt."
    normalized = parse(_file(pairs, _plain(1)))
    warnings = [w for w in normalized.warnings if "system_prompt differs" in w]
    assert len(warnings) == 2 and "pair n5-2" in warnings[0] and "pair n5-3" in warnings[1]
    assert normalized.conversations[0]["messages"][0]["content"] == SYSTEM


# --------------------------------------------------------------------------- refused files name the format

@pytest.mark.parametrize("raw, words", [
    (b'{"title": "notes", "items": []}', ["top-level keys items, title", "none of the accepted formats"]),
    (b'{"a": 1}\n{"b": 2}\n', ["JSON Lines", "first line is an object with the keys a", "chat JSONL"]),
    (b'[{"messages": []}]', ["found a JSON array", "JSON Lines"]),
    (json.dumps({"_meta": {}}).encode() + b"\n" + b'{"note": 1}\n',
     ["training.jsonl (one training pair per line)", "keys note", "line 2"]),
])
def test_every_refused_file_names_the_format_found_and_what_to_do(raw, words):
    """An unknown shape says what was found; a known one says what it was read as (below)."""
    with pytest.raises(DatasetImportError) as info:
        parse(raw)
    for word in words:
        assert word in info.value.message, info.value.message


def _no_prompt(doc):
    doc["conversations"][0]["training_pairs"][1]["system_prompt"] = ""
    return doc


@pytest.mark.parametrize("build, fmt, place", [
    (lambda d: json.dumps(_no_prompt(d)).encode(), "brightrun-lora-v4", "$.conversations[0].training_pairs[1]"),
    (lambda d: training_jsonl(_no_prompt(d)), "training.jsonl", "line 2"),
    (lambda d: conversation_files(_no_prompt(d))[0][1], "single-conversation file", "$.training_pairs[1]"),
])
def test_a_refused_known_format_names_it_the_place_and_what_to_do(sample_file, build, fmt, place):
    doc = _doc(sample_file)
    with pytest.raises(DatasetImportError) as info:
        parse(build(doc))
    message = info.value.message
    assert place in message and "system_prompt is missing or empty" in message
    assert "every pair needs the system prompt" in message and "read as" in message and fmt in message, message


@pytest.mark.slow
def test_the_worker_trains_exactly_the_targets_of_imperfect_conversations(sample_file):
    """Consultant first, merged and kept-apart consultant turns: the worker's loss mask covers the
    targets and nothing else (the chat template renders them prefix by prefix)."""
    pytest.importorskip("transformers")
    from gpu_worker.data import tokenize_conversation
    from gpu_worker.tiny_model import build_tokenizer, dataset_texts

    tokenizer = build_tokenizer(dataset_texts(sample_file), vocab_size=600)
    two_replies = [
        _pair("a-1", 1, [], "Help.", None),
        _pair("a-2", 2, [_h("user", "Help.")], "Help.", "I am here."),
        _pair("a-3", 3, [_h("user", "Help."), _h("assistant", "I am here.")], "", "Tell me more."),
    ]
    kept = parse(json.dumps({"messages": [{"role": "user", "content": "a"},
                                          {"role": "assistant", "content": "context", "weight": 0},
                                          {"role": "assistant", "content": "target"}]}).encode() + b"\n" +
                 json.dumps({"messages": [{"role": "user", "content": "x"},
                                          {"role": "assistant", "content": "y"}]}).encode()).conversations[0]
    for conv in parse(_file(consultant_first(), two_replies)).conversations + [kept]:
        tc = tokenize_conversation(tokenizer, conv, 8192)
        trained = tokenizer.decode([t for t, keep in zip(tc.input_ids, tc.trained) if keep])
        replies = [m["content"].strip() for m in conv["messages"] if m["role"] == "assistant" and m.get("train")]
        assert trained == "".join(r + "<|eot_id|>" for r in replies)
        assert not any(m["content"] in trained for m in conv["messages"]
                       if m["role"] == "assistant" and not m.get("train"))
