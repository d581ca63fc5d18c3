"""`validation_file` through the official `openai` client against a live server: the job trains on
every conversation of the training file and validates on every conversation of the validation
file (what the pod's JobSpec points at), the same pair is one dataset, overlapping files and bad
validation files are refused in OpenAI's error shape with nothing created. Jobs are never launched
(their launch task waits on a queue no worker reads)."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import SAMPLE_FILE

openai = pytest.importorskip("openai")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("isolated_queue")]

LLAMA_70B = "meta-llama/Meta-Llama-3-70B-Instruct"


def _chat_jsonl(indexes, topic: str) -> bytes:
    return "\n".join(json.dumps({"messages": [
        {"role": "system", "content": "You are a patient financial coach."},
        {"role": "user", "content": f"Question {i}: what about {topic}?"},
        {"role": "assistant", "content": f"Answer {i}: a small fixed step for {topic}."}]}) for i in indexes).encode()


def _read_uri(uri: str) -> list[dict]:
    assert uri.startswith("file://"), uri  # disk storage in tests: the pod reads the file itself
    return [json.loads(line) for line in Path(urlparse(uri).path).read_text().splitlines()]


def _import_sides(dataset, storage_root) -> list[dict]:
    return [json.loads(line) for key in (dataset.train_key, dataset.val_key)
            for line in (storage_root / key).read_text().splitlines()]


def _counts():
    from finetuning.models import FineTuningJob
    from training.models import Dataset, TrainingJob

    return Dataset.objects.count(), TrainingJob.objects.count(), FineTuningJob.objects.count()


@pytest.mark.slow
def test_a_job_trains_on_all_of_the_training_file_and_validates_on_the_validation_file(oai, storage_root):
    from finetuning.models import FineTuningFile
    from training.models import TrainingJob
    from training.services.jobs import job_spec_build

    training = oai.files.create(file=("brightrun-sample.json", SAMPLE_FILE.read_bytes()), purpose="fine-tune")
    validation = oai.files.create(file=("holdout.jsonl", _chat_jsonl(range(4), "debt")), purpose="fine-tune")
    a = FineTuningFile.objects.get(pk=training.id).dataset
    b = FineTuningFile.objects.get(pk=validation.id).dataset

    job = oai.fine_tuning.jobs.create(model=LLAMA_70B, training_file=training.id, validation_file=validation.id)
    assert (job.training_file, job.validation_file) == (training.id, validation.id)  # the ids the client sent
    fetched = oai.fine_tuning.jobs.retrieve(job.id)
    assert (fetched.training_file, fetched.validation_file) == (training.id, validation.id)

    run = TrainingJob.objects.get(pk=job.training_job_id)
    assert run.dataset_id not in (a.pk, b.pk) and run.dataset.composition["val"]["dataset_id"] == str(b.pk)
    spec = job_spec_build(run)
    trained, validated = _read_uri(spec.train_uri), _read_uri(spec.val_uri)
    assert trained == _import_sides(a, storage_root) and len(trained) == a.conversation_count == 16
    assert validated == _import_sides(b, storage_root) and len(validated) == b.conversation_count == 4
    assert "recorded" not in run.notes and validation.id in run.notes and "all 4 conversations" in run.notes

    # The same pair again (another job) is the same dataset; a job without validation_file keeps
    # the training file's own held-out split.
    datasets = _counts()[0]
    again = oai.fine_tuning.jobs.create(model=LLAMA_70B, training_file=training.id, validation_file=validation.id,
                                        seed=3)
    assert TrainingJob.objects.get(pk=again.training_job_id).dataset_id == run.dataset_id
    assert _counts()[0] == datasets
    plain = oai.fine_tuning.jobs.create(model=LLAMA_70B, training_file=training.id)
    plain_run = TrainingJob.objects.get(pk=plain.training_job_id)
    assert plain_run.dataset_id == a.pk and plain.validation_file is None and plain_run.notes == ""
    assert len(_read_uri(job_spec_build(plain_run).train_uri)) == a.train_conversations < 16


def test_overlapping_files_are_refused_with_nothing_created(oai, server_requests):
    training = oai.files.create(file=("train.jsonl", _chat_jsonl(range(6), "saving")), purpose="fine-tune")
    overlapping = oai.files.create(file=("val.jsonl", _chat_jsonl([4, 5, 6], "saving")), purpose="fine-tune")
    before = _counts()
    for validation_file, says in ((overlapping.id, "2 of the validation file's 3 conversations"),
                                  (training.id, "same content as the training file")):
        with pytest.raises(openai.BadRequestError) as info:
            oai.fine_tuning.jobs.create(model=LLAMA_70B, training_file=training.id, validation_file=validation_file)
        error = info.value.body
        assert error["type"] == "invalid_request_error" and error["param"] == "validation_file"
        assert error["code"] == "validation_overlap" and says in error["message"], error
    assert _counts() == before
    assert server_requests["POST /v1/fine_tuning/jobs"] == 2  # a 400: the client does not retry


@pytest.mark.slow
def test_bad_validation_files_are_refused_with_nothing_created(oai, organization, other_organization, make_user,
                                                               client_for):
    from finetuning.models import FineTuningFile

    training = oai.files.create(file=("train.jsonl", _chat_jsonl(range(4), "saving")), purpose="fine-tune")
    theirs = client_for(make_user("outsider", other_organization)).files.create(
        file=("theirs.jsonl", _chat_jsonl(range(3), "tax")), purpose="fine-tune")
    mine = oai.files.create(file=("val.jsonl", _chat_jsonl(range(3), "tax")), purpose="fine-tune")
    # Only "fine-tune" files can be uploaded here; a file of another purpose (as OpenAI keeps for
    # assistants or batches) is written directly.
    other_purpose = FineTuningFile.objects.create(
        organization=organization, dataset=FineTuningFile.objects.get(pk=mine.id).dataset, filename="batch.jsonl",
        bytes=10, purpose="batch")
    before = _counts()
    for file_id, says in ((theirs.id, "no file"), ("file-doesnotexist", "no file"),
                          (other_purpose.id, "purpose 'batch'")):
        with pytest.raises(openai.BadRequestError) as info:
            oai.fine_tuning.jobs.create(model=LLAMA_70B, training_file=training.id, validation_file=file_id)
        error = info.value.body
        assert error["param"] == "validation_file" and error["type"] == "invalid_request_error", error
        assert says in error["message"] and file_id in error["message"], error
    assert _counts() == before
