"""manage.py validation_calibrate: the dataset's own replies pass brand voice, a canned reply and
replies shuffled across items do not (the real offline judge and embeddings; no model, no GPU)."""
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from training.services.datasets import dataset_import

pytestmark = pytest.mark.django_db


def _calibrate(dataset, *extra) -> dict[str, dict]:
    out = StringIO()
    call_command("validation_calibrate", "--dataset", str(dataset.pk), "--json", "--resamples", "500", *extra,
                 stdout=out)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all(set(r) == {"gate", "control", "verdict", "value", "ci", "n"} for r in rows)
    assert all(r["verdict"] in ("pass", "fail", "inconclusive", "not_valid") for r in rows)
    return {r["control"]: r for r in rows if r["gate"] == "brand_voice"}


@pytest.mark.slow
def test_calibrate_on_the_shipped_sample(organization, storage_root, sample_file):
    dataset = dataset_import(organization=organization, source=sample_file.read_bytes(), val_fraction=0.5).dataset
    rows = _calibrate(dataset)
    assert rows["reference"]["verdict"] == "pass", rows
    assert rows["reference"]["n"] >= 20 and rows["reference"]["ci"][0] >= 0.5
    assert rows["canned"]["verdict"] != "pass" and rows["shuffled"]["verdict"] != "pass", rows
    assert rows["word_salad"]["verdict"] == "fail" and rows["word_salad"]["value"] <= 0.2, rows
    print(json.dumps({k: [v["verdict"], v["value"], v["ci"], v["n"]] for k, v in rows.items()}))


@pytest.mark.slow
def test_calibrate_on_the_real_72_conversation_file(organization, storage_root, real_file):
    # The default split (hash of the conversation ids, 10%) holds 4 conversations of this file: below
    # the gates' minimum evidence, so every verdict is inconclusive. A third gives enough client turns.
    dataset = dataset_import(organization=organization, source=real_file.read_bytes(), val_fraction=0.3).dataset
    rows = _calibrate(dataset)
    assert rows["reference"]["verdict"] == "pass", rows
    assert rows["canned"]["verdict"] != "pass" and rows["shuffled"]["verdict"] != "pass", rows
    assert rows["word_salad"]["verdict"] == "fail" and rows["word_salad"]["value"] <= 0.2, rows
    print(json.dumps({k: [v["verdict"], v["value"], v["ci"], v["n"]] for k, v in rows.items()}))


def test_calibrate_unknown_dataset_says_what_to_do(db):
    with pytest.raises(CommandError, match="no dataset with id 'nope'"):
        call_command("validation_calibrate", "--dataset", "nope", "--json")
