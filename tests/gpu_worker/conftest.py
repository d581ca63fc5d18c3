"""Fixtures for the gpu_worker tests: a tiny model built from the real data file, small
slices of that file in the normalized format, and job specs pointing at them.

Nothing here needs a database or Django; `-p no:django` is fine.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import gw_brightrun  # noqa: E402
from gw_helpers import make_spec  # noqa: E402



@pytest.fixture(scope="session")
def real_conversations():
    if not gw_brightrun.REAL_FILE.exists():
        pytest.skip(f"{gw_brightrun.REAL_FILE} is not present")
    return gw_brightrun.load_real_conversations()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, real_conversations):
    from gpu_worker.tiny_model import make_tiny_model

    return make_tiny_model(gw_brightrun.REAL_FILE, tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def short_conversations(real_conversations, tiny_tokenizer):
    """The real conversations ordered shortest first (by rendered length): cheap to train on."""
    def size(conv):
        return len(tiny_tokenizer.apply_chat_template(
            [{"role": m["role"], "content": m["content"]} for m in conv["messages"]], tokenize=False))
    return sorted(real_conversations, key=size)


@pytest.fixture(scope="session")
def dataset_files(tmp_path_factory, short_conversations):
    """train: 8 short conversations; val: 3 others."""
    root = tmp_path_factory.mktemp("data")
    train = gw_brightrun.write_jsonl(short_conversations[:8], root / "train.jsonl")
    val = gw_brightrun.write_jsonl(short_conversations[8:11], root / "val.jsonl")
    return train, val


@pytest.fixture
def spec_factory(tmp_path, tiny_model_dir, dataset_files):
    def factory(**overrides):
        return make_spec(tmp_path, tiny_model_dir, dataset_files, **overrides)
    return factory


@pytest.fixture
def allow_hooks(monkeypatch):
    monkeypatch.setenv("BRIGHTRUN_ALLOW_TEST_HOOKS", "1")


