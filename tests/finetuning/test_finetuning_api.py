"""The /v1/ API through the official `openai` client against a live server, without training:
files, job creation and its mapping onto presets, listing and paging, cancel, retried creates,
and every error as the client's own exception. Jobs created here are never launched (their
launch task waits on a queue no worker reads)."""
from __future__ import annotations

import json
import threading
import time
from decimal import Decimal

import httpx
import pytest

from tests.conftest import SAMPLE_FILE

openai = pytest.importorskip("openai")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("isolated_queue")]

LLAMA_70B = "meta-llama/Meta-Llama-3-70B-Instruct"
CHAT_LINES = [
    {"messages": [{"role": "system", "content": "You are a patient financial coach."},
                  {"role": "user", "content": f"Question {i}: how do I start saving?"},
                  {"role": "assistant", "content": f"Answer {i}: put a small fixed amount aside on payday."}]}
    for i in range(6)
]


def chat_jsonl() -> bytes:
    return "\n".join(json.dumps(line) for line in CHAT_LINES).encode()


@pytest.fixture
def training_file(oai):
    return oai.files.create(file=("brightrun-sample.json", SAMPLE_FILE.read_bytes()), purpose="fine-tune")


def test_files_upload_both_formats_retrieve_and_page(oai, training_file):
    from finetuning.models import FineTuningFile

    assert training_file.object == "file" and training_file.id.startswith("file-")
    assert training_file.filename == "brightrun-sample.json" and training_file.bytes == SAMPLE_FILE.stat().st_size
    assert training_file.purpose == "fine-tune" and training_file.status == "processed"
    chat = oai.files.create(file=("coach.jsonl", chat_jsonl()), purpose="fine-tune")
    assert FineTuningFile.objects.get(pk=chat.id).dataset.source_format == "chat-jsonl"
    assert FineTuningFile.objects.get(pk=training_file.id).dataset.source_format == "brightrun-lora-v4"

    assert oai.files.retrieve(chat.id).filename == "coach.jsonl"
    page = oai.files.list(limit=1)
    assert [f.id for f in page.data] == [chat.id] and page.has_more is True
    assert [f.id for f in oai.files.list(limit=1)] == [chat.id, training_file.id]  # auto-paging
    assert [f.id for f in oai.files.list(order="asc")] == [training_file.id, chat.id]


def test_file_errors_name_the_parameter(oai):
    broken = chat_jsonl() + b'\n{"messages": "not a list"}\n'
    with pytest.raises(openai.BadRequestError) as info:
        oai.files.create(file=("broken.jsonl", broken), purpose="fine-tune")
    assert info.value.param == "file" and "line 7" in info.value.message
    assert info.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as info:
        oai.files.create(file=("coach.jsonl", chat_jsonl()), purpose="assistants")
    assert info.value.param == "purpose"
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve("file-doesnotexist")


def test_authentication_and_permission_errors(live_server, oai, engineer, organization, make_user, client_for,
                                              issue_key):
    from accounts.models import Role
    from finetuning.models import ApiKey
    from finetuning.services import api_key_revoke

    wrong = client_for("sk-br-not-a-real-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        wrong.fine_tuning.jobs.list()
    assert info.value.code == "invalid_api_key" and "sk-br-no" in info.value.message

    # No Authorization header at all (the client always sends one): 401 in the same body.
    bare = httpx.get(f"{live_server.url}/v1/fine_tuning/jobs")
    assert bare.status_code == 401 and "didn't provide an API key" in bare.json()["error"]["message"]

    raw = issue_key(engineer, "to revoke")
    keyed = client_for(raw, max_retries=0)
    keyed.fine_tuning.jobs.list()
    key = ApiKey.objects.get(name="to revoke")
    assert key.last_used_at is not None and raw.startswith(key.prefix) and key.key_hash != raw
    api_key_revoke(api_key=key)
    with pytest.raises(openai.AuthenticationError):
        keyed.fine_tuning.jobs.list()

    viewer = client_for(make_user("viewer", organization, role=Role.VIEWER))
    assert viewer.fine_tuning.jobs.list().data == []  # reading is allowed
    with pytest.raises(openai.PermissionDeniedError) as info:
        viewer.files.create(file=("coach.jsonl", chat_jsonl()), purpose="fine-tune")
    assert "viewer" in info.value.message and "engineer" in info.value.message

    # An unknown route answers in OpenAI's error body too.
    with pytest.raises(openai.NotFoundError) as info:
        oai.get("/nothing/here", cast_to=object)
    assert "Unknown request URL" in info.value.message


def test_create_maps_auto_and_numbers_onto_the_preset(oai, training_file):
    from gpu_worker.presets import PRESETS
    from training.models import TrainingJob

    balanced = PRESETS["balanced"].hyperparameters
    auto = oai.fine_tuning.jobs.create(model=LLAMA_70B, training_file=training_file.id, suffix="coach",
                                       hyperparameters={"n_epochs": "auto", "batch_size": "auto",
                                                        "learning_rate_multiplier": "auto"})
    assert auto.object == "fine_tuning.job" and auto.id.startswith("ftjob-") and auto.status == "queued"
    assert auto.model == LLAMA_70B and auto.training_file == training_file.id and auto.fine_tuned_model is None
    assert auto.hyperparameters.n_epochs == int(balanced.num_epochs)
    assert auto.hyperparameters.batch_size == balanced.micro_batch_size * balanced.gradient_accumulation_steps
    assert auto.hyperparameters.learning_rate_multiplier == 1.0
    assert auto.seed == balanced.seed and auto.method.type == "supervised"

    chosen = oai.fine_tuning.jobs.create(
        model=LLAMA_70B, training_file=training_file.id, seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 2, "batch_size": 6, "learning_rate_multiplier": 0.5}}})
    hp = TrainingJob.objects.get(pk=chosen.training_job_id).hyperparameters
    assert hp["num_epochs"] == 2 and hp["micro_batch_size"] == 2 and hp["gradient_accumulation_steps"] == 3
    assert hp["learning_rate"] == pytest.approx(balanced.learning_rate * 0.5) and hp["seed"] == 7
    assert chosen.hyperparameters.batch_size == 6 and chosen.hyperparameters.learning_rate_multiplier == 0.5
    odd = oai.fine_tuning.jobs.create(model=LLAMA_70B, training_file=training_file.id,
                                      hyperparameters={"batch_size": 7, "lora_r": 4})
    hp = TrainingJob.objects.get(pk=odd.training_job_id).hyperparameters
    assert (hp["micro_batch_size"], hp["gradient_accumulation_steps"], hp["lora_r"]) == (1, 7, 4)

    # A validation file is the run's validation split (its dataset composes both files; see
    # test_finetuning_validation_file.py); the job reports both ids as sent.
    validation = oai.files.create(file=("coach.jsonl", chat_jsonl()), purpose="fine-tune")
    validated = oai.fine_tuning.jobs.create(model=LLAMA_70B, training_file=training_file.id,
                                            validation_file=validation.id)
    assert validated.validation_file == validation.id and validated.training_file == training_file.id
    run = TrainingJob.objects.get(pk=validated.training_job_id)
    assert validation.id in run.notes and run.dataset.val_conversations == len(CHAT_LINES)


INVALID_CREATES = [
    ({"hyperparameters": {"n_epochs": "lots"}}, "hyperparameters.n_epochs"),
    ({"hyperparameters": {"batch_size": 0}}, "hyperparameters.batch_size"),
    ({"hyperparameters": {"learning_rate_multiplier": 1000}}, "hyperparameters.learning_rate_multiplier"),
    ({"hyperparameters": {"warp_factor": 9}}, "hyperparameters"),
    ({"hyperparameters": {"lora_r": 0}}, "hyperparameters.lora_r"),
    ({"hyperparameters": {"n_epochs": 2, "num_epochs": 3}}, "hyperparameters.num_epochs"),
    ({"training_file": "file-missing"}, "training_file"),
    ({"validation_file": "file-missing"}, "validation_file"),
    ({"method": {"type": "dpo"}}, "method.type"),
    ({"suffix": "has:colon"}, "suffix"),
    ({"seed": -1}, "seed"),
    ({"integrations": [{"type": "wandb", "wandb": {"project": "x"}}]}, "integrations"),
    ({"extra_body": {"colour": "blue"}}, "colour"),
    ({"model": "nonexistent/model-xyz"}, "model"),
    ({"model": "/no/such/model/folder"}, "model"),
    ({"metadata": {"run": 1}}, "metadata.run"),
    ({"metadata": {"run": "x" * 513}}, "metadata.run"),
]


def test_invalid_creates_are_bad_requests_naming_the_param(oai, training_file, server_requests):
    # One test for every case: each live-server test pays a database flush.
    from training.models import TrainingJob

    for kwargs, param in INVALID_CREATES:
        request = {"model": LLAMA_70B, "training_file": training_file.id, **kwargs}
        with pytest.raises(openai.BadRequestError) as info:
            oai.fine_tuning.jobs.create(**request)
        assert info.value.param == param, (kwargs, info.value.body)
        assert info.value.body["type"] == "invalid_request_error" and info.value.message
    assert not TrainingJob.objects.exists()
    assert server_requests["POST /v1/fine_tuning/jobs"] == len(INVALID_CREATES)  # none retried


def test_list_pages_newest_first_and_filters_by_metadata(oai, training_file):
    ids = [oai.fine_tuning.jobs.create(model=LLAMA_70B, training_file=training_file.id, seed=i,
                                       metadata={"team": "voice" if i % 2 else "search", "n": str(i)}).id
           for i in range(5)]
    first = oai.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in first.data] == ids[::-1][:2] and first.has_more is True
    second = oai.fine_tuning.jobs.list(limit=2, after=first.data[-1].id)
    assert [j.id for j in second.data] == ids[::-1][2:4]
    raw = oai.fine_tuning.jobs.with_raw_response.list(limit=2).http_response.json()
    assert raw["first_id"] == ids[-1] and raw["last_id"] == ids[-2] and raw["object"] == "list"
    assert [j.id for j in oai.fine_tuning.jobs.list(limit=2)] == ids[::-1]  # auto-paging follows has_more
    voice = [j.id for j in oai.fine_tuning.jobs.list(metadata={"team": "voice"})]
    assert voice == [ids[3], ids[1]]
    assert [j.id for j in oai.fine_tuning.jobs.list(metadata={"team": "voice", "n": "3"})] == [ids[3]]
    bare = oai.fine_tuning.jobs.create(model=LLAMA_70B, training_file=training_file.id, suffix="bare")
    assert [j.id for j in oai.fine_tuning.jobs.list(extra_query={"metadata": "null"})] == [bare.id]
    with pytest.raises(openai.BadRequestError) as info:
        oai.fine_tuning.jobs.list(after="ftjob-unknown")
    assert info.value.param == "after"


def test_retrieve_cancel_and_state_conflicts(oai, client_for, training_file, other_organization, make_user,
                                             server_requests):
    job = oai.fine_tuning.jobs.create(model=LLAMA_70B, training_file=training_file.id)
    assert oai.fine_tuning.jobs.retrieve(job.id).status == "queued"
    cancelled = oai.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert oai.fine_tuning.jobs.cancel(job.id).status == "cancelled"  # again: harmless
    messages = [e.message for e in oai.fine_tuning.jobs.list_events(job.id)]
    assert messages[0].startswith("The job was cancelled") and messages[-1] == "Created fine-tuning job"

    server_requests.clear()
    with pytest.raises(openai.ConflictError) as info:
        oai.fine_tuning.jobs.resume(job.id)
    assert "only a paused job" in info.value.message
    assert server_requests[f"POST /v1/fine_tuning/jobs/{job.id}/resume"] == 1  # 409 said: do not retry
    with pytest.raises(openai.ConflictError):
        oai.fine_tuning.jobs.pause(job.id)

    with pytest.raises(openai.NotFoundError) as info:
        oai.fine_tuning.jobs.retrieve("ftjob-doesnotexist")
    assert info.value.param == "fine_tuning_job_id"
    outsider = client_for(make_user("outsider", other_organization))
    with pytest.raises(openai.NotFoundError):
        outsider.fine_tuning.jobs.retrieve(job.id)
    with pytest.raises(openai.NotFoundError):
        outsider.fine_tuning.jobs.list_events(job.id)


def test_the_same_create_sent_again_yields_one_job(oai, training_file):
    from training.models import TrainingJob

    body = {"model": LLAMA_70B, "training_file": training_file.id, "suffix": "twice", "metadata": {"run": "1"}}
    first = oai.fine_tuning.jobs.create(**body)
    again = oai.fine_tuning.jobs.with_raw_response.create(**body)
    assert again.parse().id == first.id and again.headers["x-idempotent-replay"] == "true"
    assert TrainingJob.objects.count() == 1
    other = oai.fine_tuning.jobs.create(**{**body, "metadata": {"run": "2"}})
    assert other.id != first.id and TrainingJob.objects.count() == 2
    # With an explicit Idempotency-Key the key decides, and reusing it for another body is refused.
    keyed = oai.fine_tuning.jobs.create(**{**body, "suffix": "keyed"}, extra_headers={"Idempotency-Key": "k-1"})
    assert oai.fine_tuning.jobs.create(**{**body, "suffix": "keyed"}, extra_headers={"Idempotency-Key": "k-1"}).id == keyed.id
    with pytest.raises(openai.BadRequestError) as info:
        oai.fine_tuning.jobs.create(**{**body, "suffix": "other"}, extra_headers={"Idempotency-Key": "k-1"})
    assert info.value.param == "Idempotency-Key"


def test_a_create_whose_response_is_lost_is_retried_by_the_client_into_the_same_job(client_for, engineer, training_file,
                                                                                   server_requests):
    """The first response arrives after the client's timeout (the job is created all the same);
    the client retries the same body and gets that job back, not a second one."""
    from django.db.models.signals import post_save

    from finetuning.models import FineTuningJob
    from training.models import TrainingJob

    slowed = threading.Event()

    def slow_first_create(sender, created, **kwargs):
        if created and not slowed.is_set():
            slowed.set()
            time.sleep(1.5)  # inside the create's transaction: the response is late

    post_save.connect(slow_first_create, sender=FineTuningJob, weak=False)
    try:
        impatient = client_for(engineer, timeout=0.75, max_retries=3)
        job = impatient.fine_tuning.jobs.create(model=LLAMA_70B, training_file=training_file.id, suffix="retried")
    finally:
        post_save.disconnect(slow_first_create, sender=FineTuningJob)
    assert slowed.is_set()
    assert server_requests["POST /v1/fine_tuning/jobs"] >= 2  # the client did retry
    assert FineTuningJob.objects.count() == 1 and TrainingJob.objects.count() == 1
    assert job.id == FineTuningJob.objects.get().id


def test_a_budget_refusal_says_so_and_is_not_retried(oai, organization, training_file, settings, server_requests):
    from billing.services.budgets import budget_create
    from training.models import TrainingJob

    settings.GPU_PROVIDER = "runpod"  # the local provider costs nothing, so no budget would refuse it
    budget_create(organization=organization, limit=Decimal("0.01"))
    with pytest.raises(openai.APIStatusError) as info:
        oai.fine_tuning.jobs.create(model=LLAMA_70B, training_file=training_file.id)
    err = info.value
    assert err.status_code == 402 and not isinstance(err, openai.RateLimitError)
    assert err.code == "budget_exceeded" and err.type == "insufficient_quota"
    assert "budget" in err.message and "retrying will not help" in err.message
    assert err.response.headers["x-should-retry"] == "false"
    assert server_requests["POST /v1/fine_tuning/jobs"] == 1  # max_retries=2, yet one request
    assert not TrainingJob.objects.exists()


def test_failed_and_budget_stopped_jobs_as_the_client_sees_them(oai, training_file):
    """A failure carries our error and its fix; a job the budget enforcer stopped is `paused`
    (it kept its checkpoint) and resumes as a new run under the same id."""
    from training import states
    from training.models import TrainingJob
    from tests.jobs.factories import move_locked
    from training.services.jobs import job_stop_for_budget

    failing = oai.fine_tuning.jobs.create(model=LLAMA_70B, training_file=training_file.id, suffix="oom")
    move_locked(failing.training_job_id, states.FAILED, reason="out of memory",
                   error_class="oom", error_message="Out of GPU memory at step 212",
                   error_suggestion="lower micro_batch_size to 1")
    failed = oai.fine_tuning.jobs.retrieve(failing.id)
    assert failed.status == "failed" and failed.error.code == "oom" and failed.fine_tuned_model is None
    assert failed.error.message == "Out of GPU memory at step 212. lower micro_batch_size to 1"
    with pytest.raises(openai.ConflictError):
        oai.fine_tuning.jobs.cancel(failing.id)

    stopped = oai.fine_tuning.jobs.create(model=LLAMA_70B, training_file=training_file.id, suffix="capped")
    job_stop_for_budget(job_id=stopped.training_job_id, reason="the March budget is spent")
    paused = oai.fine_tuning.jobs.retrieve(stopped.id)
    # "paused" is outside the client's status type: it reads "cancelled" with paused=True.
    assert paused.status == "cancelled" and paused.paused is True and paused.error.code == "budget_exceeded"
    assert "the March budget is spent" in paused.error.message
    resumed = oai.fine_tuning.jobs.resume(stopped.id)
    assert resumed.id == stopped.id and resumed.status == "queued" and resumed.error is None
    run = TrainingJob.objects.get(pk=resumed.training_job_id)
    assert str(run.parent_id) == stopped.training_job_id
    events = [e.message for e in oai.fine_tuning.jobs.list_events(stopped.id)]
    assert events[0] == "Resumed from the last checkpoint (run 2)" and events[-1] == "Created fine-tuning job"
