"""The validation split holds the gates' minimum evidence when the file is big enough (5
conversations and ceil(20 / 0.8) = 25 replies by default), topped up by a rule of content and seed
alone; a file too small for it keeps its drawn split and the import says why."""
import random

import pytest

from training.datasets.split import SplitMinimum, split_conversations, split_with_minimum
from training.services.datasets import dataset_import

pytestmark = pytest.mark.django_db


def _replies_in(dataset):
    from artifacts.storage import get_storage
    from gpu_worker.evaluation.pod_eval import reply_items
    import json

    raw = get_storage().get_bytes(dataset.val_key).decode()
    return len(reply_items([json.loads(line) for line in raw.splitlines() if line.strip()]))


def test_the_72_file_is_topped_up_to_the_gates_minimum(organization, other_organization, real_file):
    # The plain 10% draw with the default seed holds out only 4 of the 72 conversations (15 replies).
    result = dataset_import(organization=organization, source=real_file.read_bytes(), filename=real_file.name)
    ds = result.dataset
    assert ds.val_conversations >= 5 and _replies_in(ds) >= 25
    assert ds.stats["val_minimum"] == {"applied": True, "conversations": 5, "replies": 25, "max_val_share": 0.3333,
                                       "topped_up": ds.val_conversations - 4, "shortfall": None}
    assert "added to the validation split" in result.message
    # Deterministic: the same content in another organization gets the very same split.
    again = dataset_import(organization=other_organization, source=real_file.read_bytes(), filename=real_file.name)
    assert again.dataset.split == ds.split and again.dataset.val_fingerprint == ds.val_fingerprint


def test_the_shipped_sample_is_too_small_and_the_import_says_so(organization, sample_file):
    result = dataset_import(organization=organization, source=sample_file.read_bytes(), filename=sample_file.name)
    ds = result.dataset
    # 16 conversations: 25 replies would need about 9 of them, more than a third; the draw is kept.
    assert ds.stats["val_minimum"]["topped_up"] == 0
    assert "every gate of its reports will be inconclusive" in ds.stats["val_minimum"]["shortfall"]
    assert "warning:" in result.message and "Import a larger file" in result.message


def test_top_up_follows_the_draws_not_the_file_order():
    hashes = {f"c{i}": f"hash-{i}" for i in range(60)}
    replies = {c: 3 for c in hashes}
    minimum = SplitMinimum(conversations=5, replies=25, max_val_share=1 / 3)
    first = split_with_minimum(hashes, replies, val_fraction=0.05, seed=7, minimum=minimum)
    drawn = split_conversations(hashes, val_fraction=0.05, seed=7)[1]
    assert set(drawn) <= set(first.val_ids) and len(first.val_ids) == 9 and first.topped_up == 9 - len(drawn)
    keys = list(hashes)
    random.Random(3).shuffle(keys)
    shuffled = split_with_minimum({k: hashes[k] for k in keys}, replies, val_fraction=0.05, seed=7, minimum=minimum)
    assert set(shuffled.val_ids) == set(first.val_ids)
    # No minimum: the plain draw, unchanged.
    plain = split_with_minimum(hashes, replies, val_fraction=0.05, seed=7, minimum=None)
    assert plain.val_ids == drawn and plain.topped_up == 0


def test_training_keeps_its_share_when_the_minimum_is_out_of_reach():
    hashes = {f"c{i}": f"hash-{i}" for i in range(12)}
    out = split_with_minimum(hashes, {c: 2 for c in hashes}, val_fraction=0.1, seed=1,
                             minimum=SplitMinimum(conversations=5, replies=25, max_val_share=1 / 3))
    assert out.topped_up == 0 and "12 conversations" in out.shortfall
    assert out.val_ids == split_conversations(hashes, val_fraction=0.1, seed=1)[1]


def test_a_chosen_val_fraction_is_kept_and_a_short_one_is_flagged(organization, real_file):
    result = dataset_import(organization=organization, source=real_file.read_bytes(), filename=real_file.name,
                            val_fraction=0.1)
    ds = result.dataset
    assert ds.val_conversations == 4 and ds.stats["val_minimum"]["topped_up"] == 0
    assert "larger val_fraction" in ds.stats["val_minimum"]["shortfall"] and "warning:" in result.message
