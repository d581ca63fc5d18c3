"""The validation report says where its validation data came from: a file of its own (the OpenAI
API's validation_file, a composed dataset) or the part of the training file held out of training."""
from __future__ import annotations

import json

import pytest
from django.utils.html import escape

from tests.api.conftest import drive
from tests.jobs.factories import make_running_job
from training.services.dataset_compose import dataset_compose
from training.services.datasets import dataset_import

pytestmark = pytest.mark.django_db


def _holdout(organization):
    lines = [{"messages": [{"role": "user", "content": f"Question {i} about debt?"},
                           {"role": "assistant", "content": f"Answer {i} about debt."}]} for i in range(3)]
    data = "\n".join(json.dumps(line) for line in lines).encode()
    return dataset_import(organization=organization, source=data, filename="holdout.jsonl").dataset


def _report(job):
    from validation import report, services

    run = services.validation_run_for_job(job_id=job.pk)
    assert run.status == "completed", run.errors
    document = report.report_document(run)
    return run, document, report.render_html(document)


def test_a_validation_file_is_named_as_the_validation_data(organization, storage_root):
    job = make_running_job(organization, status="provisioning", name="with a validation file")
    composed = dataset_compose(organization=organization, train=job.dataset, val=_holdout(organization)).dataset
    job.dataset = composed
    job.save(update_fields=["dataset"])
    run, document, html = _report(drive(job))

    source = run.inputs["dataset"]
    assert source["source"] == "validation_file" and source["id"] == str(composed.pk)
    assert source["validation_file"]["source_filename"] == "holdout.jsonl" and source["val_conversations"] == 3
    assert source["training_file"]["conversations"] == composed.train_conversations == 16
    said = document["job"]["validation_data"]
    assert said.startswith("the validation file holdout.jsonl (3 conversations, none trained on)")
    assert "all 16 conversations of the training file sample.json" in said
    assert f"Validation data: {escape(said)}" in html


def test_a_held_out_split_is_named_as_such(organization, storage_root):
    job = drive(make_running_job(organization, status="provisioning", name="held out"))
    run, document, html = _report(job)
    assert run.inputs["dataset"]["source"] == "held_out_split"
    said = document["job"]["validation_data"]
    assert said == (f"{job.dataset.val_conversations} of the training file's {job.dataset.conversation_count} "
                    f"conversations, held out of training (val_fraction {job.dataset.val_fraction}, "
                    f"seed {job.dataset.split_seed})")
    assert f"Validation data: {escape(said)}" in html
