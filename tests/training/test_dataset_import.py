"""Importing training files: the real 72-conversation file, identity, split, stats."""
import json

import pytest

from training.datasets.normalize import SKIP_CLIENT_TURN, parse
from training.models import Dataset
from training.services.datasets import dataset_import, dataset_stats_compute

pytestmark = pytest.mark.django_db


def _import(org, path, **kw):
    return dataset_import(organization=org, source=path.read_bytes(), filename=path.name, **kw)


def test_real_file_counts_and_quirks(organization, real_file, storage_root):
    result = _import(organization, real_file)
    ds = result.dataset
    assert result.created
    assert (ds.conversation_count, ds.pair_count, ds.trainable_turns) == (72, 447, 212)
    assert ds.stats["skipped"] == {SKIP_CLIENT_TURN: 235}
    assert "target_response" in SKIP_CLIENT_TURN
    # The normalized files are in storage, one conversation per line.
    train = [json.loads(line) for line in (storage_root / ds.train_key).read_text().splitlines()]
    val = [json.loads(line) for line in (storage_root / ds.val_key).read_text().splitlines()]
    assert len(train) + len(val) == 72
    for conv in train + val:
        roles = [m["role"] for m in conv["messages"]]
        assert roles[0] == "system"
        for a, b in zip(conv["messages"][1:], conv["messages"][2:]):
            assert a["role"] != b["role"], f"{conv['conversation_id']}: two {a['role']} messages in a row"
            assert a["content"] != b["content"]
    targets = sum(1 for c in train + val for m in c["messages"] if m.get("train"))
    assert targets == 212


def test_transcript_matches_the_pairs(real_file):
    """Every target of the file appears once, after exactly the history its pair gave it."""
    data = json.loads(real_file.read_bytes())
    normalized = parse(real_file.read_bytes())
    by_id = {c["conversation_id"]: c for c in normalized.conversations}
    checked = 0
    for conv in data["conversations"]:
        messages = by_id[conv["conversation_metadata"]["conversation_id"]]["messages"][1:]
        for pair in conv["training_pairs"]:
            if pair["target_response"] is None:
                continue
            idx = next(i for i, m in enumerate(messages) if m.get("pair_id") == pair["id"])
            history = [(m["role"], m["content"]) for m in messages[:idx]]
            assert history == [(h["role"], h["content"]) for h in pair["conversation_history"]]
            assert messages[idx]["content"] == pair["target_response"]
            checked += 1
    assert checked == 212


def test_split_is_by_conversation_and_deterministic(organization, other_organization, real_file):
    a = _import(organization, real_file, val_fraction=0.2, seed=7).dataset
    b = _import(other_organization, real_file, val_fraction=0.2, seed=7).dataset
    assert set(a.split["train"]).isdisjoint(a.split["val"])
    assert len(a.split["train"]) + len(a.split["val"]) == 72
    # Each conversation's side is drawn from its content hash and the seed: the share is 0.2 on
    # average (binomial, sd 3.4 for 72 conversations), not exactly.
    assert abs(a.val_conversations - 72 * 0.2) <= 3 * (72 * 0.2 * 0.8) ** 0.5
    assert a.split == b.split  # same content, fraction and seed → same split


def test_importing_twice_yields_one_dataset(organization, real_file):
    first = _import(organization, real_file)
    # Re-serialized JSON (different whitespace, key order) is the same content.
    reserialized = json.dumps(json.loads(real_file.read_bytes()), indent=None, sort_keys=True).encode()
    second = dataset_import(organization=organization, source=reserialized, filename="copy.json")
    assert first.created and not second.created
    assert second.dataset.pk == first.dataset.pk
    assert Dataset.objects.count() == 1
    assert "already imported" in second.message


def test_reimport_with_other_split_keeps_and_says_so(organization, real_file):
    first = _import(organization, real_file, val_fraction=0.1)
    again = _import(organization, real_file, val_fraction=0.3)
    assert again.dataset.pk == first.dataset.pk
    assert "is kept" in again.message


def test_stats(organization, real_file, settings, tmp_path):
    settings.TOKENIZER_PATH = None
    settings.DEFAULT_BASE_MODEL = str(tmp_path / "no-model-here")
    stats = _import(organization, real_file).dataset.stats
    assert stats["turns_per_conversation"]["min"] == 4
    assert stats["turns_per_conversation"]["max"] == 10
    assert sum(stats["distributions"]["persona"].values()) == 72
    assert len(stats["distributions"]["topic"]) == 12
    tokens = stats["tokens"]
    assert tokens["method"] == "estimate" and "estimate" in tokens["description"]
    # Pair by pair repeats each earlier conversation: about 2.1x the tokens.
    assert 1.9 < tokens["pair_by_pair_ratio"] < 2.3
    assert stats["train_tokens"] + stats["val_tokens"] == tokens["per_epoch"]


def test_exact_tokens_with_a_tokenizer(organization, sample_file, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.train_from_iterator(["hello world money feelings"] * 10, trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"]))
    tok.save(str(tmp_path / "tokenizer.json"))
    ds = _import(organization, sample_file, tokenizer_path=str(tmp_path)).dataset
    # The import answers with estimates; the background task counts exactly.
    assert ds.stats_status == "pending" and ds.stats["tokens"]["method"] == "estimate"
    stats = dataset_stats_compute(dataset_id=ds.pk).stats
    assert stats["tokens"]["method"] == "exact_content"
    assert str(tmp_path) in stats["tokens"]["description"]


def test_chat_jsonl(organization):
    lines = [
        {"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello!"}]},
        {"messages": [{"role": "user", "content": "A"}, {"role": "assistant", "content": "B", "weight": 0},
                      {"role": "user", "content": "C"}, {"role": "assistant", "content": "D"}]},
    ]
    raw = "\n".join(json.dumps(x) for x in lines).encode()
    ds = dataset_import(organization=organization, source=raw, filename="chat.jsonl").dataset
    assert ds.source_format == "chat-jsonl"
    assert (ds.conversation_count, ds.pair_count, ds.trainable_turns) == (2, 3, 2)
    assert sum(ds.stats["skipped"].values()) == 1


def test_sample_dataset_imports(organization, sample_file):
    ds = _import(organization, sample_file).dataset
    assert ds.conversation_count >= 12
    dist = ds.stats["distributions"]
    assert len(dist["persona"]) >= 3 and len(dist["emotional_arc"]) >= 3 and len(dist["topic"]) >= 6
    assert ds.stats["warnings"] == []


@pytest.mark.slow
def test_exact_tokens_with_a_chat_template(organization, real_file, tmp_path):
    """With a Hugging Face tokenizer that has a chat template, counts are exact: the same as
    tokenizing the rendered transcript, and pair by pair costs about 2.1x per conversation."""
    pytest.importorskip("transformers")
    from gpu_worker.tiny_model import build_tokenizer, dataset_texts

    tokenizer = build_tokenizer(dataset_texts(real_file), vocab_size=2000)
    tokenizer.save_pretrained(tmp_path / "tok")
    ds = _import(organization, real_file, tokenizer_path=str(tmp_path / "tok")).dataset
    assert ds.stats_status == "pending"
    ds = dataset_stats_compute(dataset_id=ds.pk)
    assert ds.stats_status == "ready" and ds.stats_updated_at is not None
    tokens = ds.stats["tokens"]
    assert tokens["method"] == "exact"
    conversations = parse(real_file.read_bytes()).conversations
    expected = 0
    for conv in conversations:
        messages = conv["messages"]
        last = max(i for i, m in enumerate(messages) if m.get("train"))
        rendered = tokenizer.apply_chat_template([{"role": m["role"], "content": m["content"]}
                                                  for m in messages[:last + 1]], tokenize=True)
        expected += len(rendered["input_ids"] if not isinstance(rendered, list) else rendered)
    assert tokens["per_epoch"] == expected
    assert 1.9 < tokens["pair_by_pair_ratio"] < 2.3
