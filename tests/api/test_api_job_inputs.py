"""Issue 16 items 6 and 9: what would cost money before it fails is refused at the request (400,
nothing written), and a signed but malformed pod event is 400, never 500."""
import json
import math

import pytest

from tests.jobs.factories import make_dataset
from training.models import JobEvent, TrainingJob

pytestmark = pytest.mark.django_db

HUB = "meta-llama/Meta-Llama-3-8B-Instruct"


@pytest.fixture
def eng(client_as, organization):
    return client_as("eng", organization)


@pytest.fixture
def dataset(organization):
    return make_dataset(organization)


def _create(eng, dataset, **fields):
    return eng.post("/api/v1/jobs/", {"dataset": str(dataset.pk), **fields}, format="json")


@pytest.mark.parametrize("fields, says", [
    ({"base_model": "/etc"}, "hub id"),
    ({"base_model": "https://evil.example/model"}, "hub id"),
    ({"base_model": "$(rm -rf /)"}, "hub id"),
    ({"base_model": "../../../etc"}, "hub id"),
    ({"base_model": "meta-llama/../../etc"}, "hub id"),
    ({"overrides": {"micro_batch_size": 10 ** 9}}, "micro_batch_size must be <= 1024"),
    ({"overrides": {"gradient_accumulation_steps": 10 ** 9}}, "gradient_accumulation_steps must be <= 4096"),
    ({"overrides": {"seed": 2 ** 80}}, "out of range"),
    ({"overrides": {"seed": 2 ** 40}}, "seed must be <= 4294967295"),
    ({"overrides": {"max_seq_len": 10 ** 12}, "base_model": HUB}, "max_seq_len must be <= 131072"),
    ({"overrides": {"target_modules": ["../../etc/passwd"]}}, "target_modules must be module names"),
    ({"gpu_type": "NVIDIA Imaginary 1TB"}, "unknown gpu_type"),
    ({"notes": "x" * (5 * 1024 * 1024)}, "notes"),
    ({"template": 10 ** 30}, "out of range"),
    ({"template": 2 ** 63}, "out of range"),
])
def test_refused_before_anything_is_written(eng, dataset, fields, says):
    answer = _create(eng, dataset, **fields)
    assert answer.status_code == 400, answer.content[:500]
    assert says in answer.json()["error"]["message"], answer.json()
    assert TrainingJob.objects.count() == 0


def test_the_same_answer_whether_a_path_outside_the_models_folder_exists(eng, dataset, tmp_path, settings):
    settings.MODELS_DIR = str(tmp_path / "models")
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "config.json").write_text("{}")
    real = _create(eng, dataset, base_model=str(tmp_path / "real")).json()
    missing = _create(eng, dataset, base_model=str(tmp_path / "missing")).json()
    assert real == missing


def test_hub_ids_and_model_folders_are_accepted(eng, dataset, settings, tmp_path):
    settings.MODELS_DIR = str(tmp_path / "models")
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    for base_model in (HUB, HUB + "@main", "tiny", str(tmp_path / "models" / "tiny")):
        answer = _create(eng, dataset, base_model=base_model, overrides={"num_epochs": 1},
                         gpu_type="NVIDIA H100 80GB HBM3", notes="fine")
        assert answer.status_code == 201, answer.json()
    assert {j.base_model for j in TrainingJob.objects.all()} == {HUB, HUB + "@main", str(tmp_path / "models" / "tiny")}


def test_json_nesting_and_out_of_range_numbers_are_400(eng, dataset):
    deep = "[" * 10_000 + "]" * 10_000
    answer = eng.generic("POST", "/api/v1/jobs/", deep, content_type="application/json")
    assert answer.status_code == 400 and "nested deeper" in answer.json()["error"]["message"]
    body = json.dumps({"dataset": str(dataset.pk), "overrides": {"learning_rate": 1}}).replace("1}", "NaN}")
    answer = eng.generic("POST", "/api/v1/jobs/", body, content_type="application/json")
    assert answer.status_code == 400 and "NaN" in answer.json()["error"]["message"]
    answer = eng.generic("POST", "/api/v1/jobs/", '{"template": ' + "9" * 40 + "}", content_type="application/json")
    assert answer.status_code == 400


def test_dataset_seed_out_of_range_is_400(eng, sample_file):
    with open(sample_file, "rb") as fh:
        answer = eng.post("/api/v1/datasets/", {"file": fh, "seed": 10 ** 30}, format="multipart")
    assert answer.status_code == 400 and "seed" in answer.json()["error"]["message"]


def test_finetuning_model_is_checked(organization, make_user):
    from django.test import Client

    from finetuning.services import api_key_issue

    user = make_user("ft", organization)
    _key, secret = api_key_issue(user=user, name="t")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    answer = client.post("/v1/fine_tuning/jobs", {"model": "/etc", "training_file": "file-x"},
                         content_type="application/json")
    assert answer.status_code == 400 and "model" in json.dumps(answer.json())


# --------------------------------------------------------------------------- pod events (item 9)

def _post_event(job, body_of, seq):
    from django.test import Client

    from tests.jobs.factories import pod_event, signed_post

    event = pod_event(job, seq, "metrics", step=1, data={"loss": 1.5})
    body = body_of(event.to_dict())
    return signed_post(Client(), event, job.webhook_secret, body=body.encode()), event


@pytest.mark.parametrize("mutate, says", [
    (lambda e: e.update(step=2 ** 40), "step must be within"),
    (lambda e: e.update(attempt=-1), "attempt must be within"),
    (lambda e: e["data"].update(points=[{"step": 10 ** 12, "loss": 1.0}]), "points[0].step"),
    (lambda e: e["data"].update(points=[{"step": 1, "loss": "high"}]), "points[0].loss must be a number"),
    (lambda e: e["data"].update(points="many"), "points must be a list"),
    (lambda e: e.update(seq=10 ** 30), "out of range"),
])
def test_signed_malformed_pod_events_are_400(running_job, mutate, says):
    def body_of(event):
        mutate(event)
        return json.dumps(event)

    answer, event = _post_event(running_job, body_of, 100)
    assert answer.status_code == 400, answer.content
    assert says in answer.json()["error"]["message"], answer.json()
    assert not JobEvent.objects.filter(event_id=event.event_id).exists()


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_signed_pod_events_with_non_finite_numbers_are_400(running_job, raw):
    answer, event = _post_event(running_job, lambda e: json.dumps(e).replace("1.5", raw), 101)
    assert answer.status_code == 400, answer.content
    assert not JobEvent.objects.filter(event_id=event.event_id).exists()


def test_signed_deep_pod_event_is_400_and_a_good_one_still_goes_in(running_job):
    deep = lambda e: json.dumps(e)[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}"  # noqa: E731
    answer, _ = _post_event(running_job, deep, 102)
    assert answer.status_code == 400 and "nested deeper" in answer.json()["error"]["message"]
    answer, event = _post_event(running_job, json.dumps, 103)
    assert answer.status_code == 200, answer.content
    assert JobEvent.objects.filter(event_id=event.event_id).exists()
    assert math.isfinite(answer.json().get("status") and 1.0)
