"""OpenAI parity through the official `openai` client: the results file of a job (OpenAI's CSV
columns, over every run of a paused and resumed job), files.content of uploads, files.delete
(refused while a job uses the file), the paused status as the client's types accept it, and the
event text of a pause."""
from __future__ import annotations

import csv
import io

import pytest

from tests.conftest import SAMPLE_FILE

openai = pytest.importorskip("openai")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("isolated_queue")]

LLAMA_8B = "meta-llama/Meta-Llama-3-8B-Instruct"
COLUMNS = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]


@pytest.fixture
def upload(oai):
    return oai.files.create(file=("brightrun-sample.json", SAMPLE_FILE.read_bytes()), purpose="fine-tune")


def _metrics(run_id, steps, *, base: float, valid_every: int = 2):
    from training.models import MetricPoint

    for step in steps:
        values = {"loss": base - step / 100, "learning_rate": 1e-4, "train_mean_token_accuracy": 0.5 + step / 100}
        if step % valid_every == 0:
            values.update(valid_loss=base + 0.1 - step / 200, valid_mean_token_accuracy=0.4 + step / 200)
        MetricPoint.objects.create(job_id=run_id, step=step, values=values)


def _rows(oai, file_id):
    return list(csv.reader(io.StringIO(oai.files.content(file_id).text)))


@pytest.mark.slow
def test_results_file_over_a_paused_and_resumed_job(oai, upload):
    from training import states
    from training.models import TrainingJob
    from training.services.jobs import job_stop_for_budget

    job = oai.fine_tuning.jobs.create(model=LLAMA_8B, training_file=upload.id)
    assert job.result_files == []
    first = job.training_job_id
    _metrics(first, range(1, 5), base=2.0)
    job_stop_for_budget(job_id=first, reason="the budget is spent")
    paused = oai.fine_tuning.jobs.retrieve(job.id)
    assert paused.status == "cancelled" and paused.paused is True and paused.paused_at
    assert len(paused.result_files) == 1
    rows = _rows(oai, paused.result_files[0])
    assert rows[0] == COLUMNS and [r[0] for r in rows[1:]] == ["1", "2", "3", "4"]
    assert rows[1] == ["1", repr(2.0 - 1 / 100), repr(0.5 + 1 / 100), "", ""]  # no evaluation at step 1: empty
    assert rows[2] == ["2", repr(2.0 - 2 / 100), repr(0.5 + 2 / 100), repr(2.0 + 0.1 - 2 / 200), repr(0.4 + 2 / 200)]

    # The same validation figures in the metrics events and the checkpoint's metrics.
    from training.models import Checkpoint

    Checkpoint.objects.create(job_id=first, step=4, uri="file:///ckpt/step-4")
    (checkpoint,) = oai.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoint.metrics.valid_loss == pytest.approx(2.1 - 4 / 200)
    assert checkpoint.metrics.valid_mean_token_accuracy == pytest.approx(0.4 + 4 / 200)
    assert checkpoint.metrics.full_valid_loss == checkpoint.metrics.valid_loss
    step4 = next(e for e in oai.fine_tuning.jobs.list_events(job.id, limit=50).data
                 if e.type == "metrics" and e.data["step"] == 4)
    assert step4.data["valid_loss"] == pytest.approx(2.1 - 4 / 200) and "validation loss=" in step4.message
    step3 = next(e for e in oai.fine_tuning.jobs.list_events(job.id, limit=50).data
                 if e.type == "metrics" and e.data["step"] == 3)
    assert "valid_loss" not in step3.data and step3.data["train_mean_token_accuracy"] == pytest.approx(0.53)

    resumed = oai.fine_tuning.jobs.resume(job.id)
    assert resumed.status == "queued" and resumed.paused is False and resumed.result_files == []
    with pytest.raises(openai.NotFoundError):  # not while it runs again
        oai.files.content(paused.result_files[0])
    second = resumed.training_job_id
    _metrics(second, range(3, 7), base=1.5)
    TrainingJob.objects.filter(pk=second).update(status=states.COMPLETED)
    done = oai.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded" and done.result_files == paused.result_files
    info = oai.files.retrieve(done.result_files[0])
    assert info.purpose == "fine-tune-results" and info.filename == "step_metrics.csv"
    rows = _rows(oai, info.id)
    assert info.bytes == len(oai.files.content(info.id).content)
    assert [r[0] for r in rows[1:]] == ["1", "2", "3", "4", "5", "6"]
    assert rows[3][1] == repr(1.5 - 3 / 100) and rows[2][1] == repr(2.0 - 2 / 100)  # step 3 from the resumed run
    assert rows[6][3] == repr(1.5 + 0.1 - 6 / 200)
    with pytest.raises(openai.BadRequestError):
        oai.files.delete(info.id)


@pytest.mark.slow
def test_results_file_of_another_organization_is_not_found(oai, upload, client_for, make_user, other_organization):
    from training import states
    from training.models import TrainingJob

    job = oai.fine_tuning.jobs.create(model=LLAMA_8B, training_file=upload.id)
    TrainingJob.objects.filter(pk=job.training_job_id).update(status=states.COMPLETED)
    file_id = oai.fine_tuning.jobs.retrieve(job.id).result_files[0]
    intruder = client_for(make_user("intruder", other_organization))
    for call in (intruder.files.retrieve, intruder.files.content):
        with pytest.raises(openai.NotFoundError):
            call(file_id)


@pytest.mark.slow
def test_files_content_and_delete(oai, upload):
    from training import states
    from training.models import TrainingJob

    assert oai.files.content(upload.id).content == SAMPLE_FILE.read_bytes()
    job = oai.fine_tuning.jobs.create(model=LLAMA_8B, training_file=upload.id)
    with pytest.raises(openai.ConflictError) as info:
        oai.files.delete(upload.id)
    assert info.value.code == "file_in_use" and info.value.body["job_ids"] == [job.id]
    assert job.id in info.value.message and info.value.response.headers["x-should-retry"] == "false"
    assert oai.files.retrieve(upload.id).id == upload.id  # nothing deleted

    TrainingJob.objects.filter(pk=job.training_job_id).update(status=states.COMPLETED)
    deleted = oai.files.delete(upload.id)
    assert deleted.id == upload.id and deleted.deleted is True and deleted.object == "file"
    for call in (oai.files.retrieve, oai.files.content, oai.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(upload.id)
    assert upload.id not in [f.id for f in oai.files.list()]
    assert oai.fine_tuning.jobs.retrieve(job.id).training_file == upload.id  # the job still names it
    with pytest.raises(openai.BadRequestError) as info:
        oai.fine_tuning.jobs.create(model=LLAMA_8B, training_file=upload.id)
    assert info.value.param == "training_file"


def test_model_and_metadata_refused_at_create_with_openai_shapes(oai, upload):
    from training.models import TrainingJob

    with pytest.raises(openai.BadRequestError) as info:
        oai.fine_tuning.jobs.create(model="nonexistent/model-xyz", training_file=upload.id)
    assert (info.value.param, info.value.code) == ("model", "model_not_available")
    assert "nonexistent/model-xyz" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        oai.fine_tuning.jobs.create(model=LLAMA_8B, training_file=upload.id, metadata={"run": 3})
    assert (info.value.param, info.value.code) == ("metadata.run", "invalid_type")
    assert info.value.body["message"] == "Invalid type for 'metadata.run': expected a string, but got an integer instead."
    assert not TrainingJob.objects.exists()


def test_pause_before_a_checkpoint_says_what_it_kept(oai, upload):
    job = oai.fine_tuning.jobs.create(model=LLAMA_8B, training_file=upload.id)
    paused = oai.fine_tuning.jobs.pause(job.id)
    assert paused.status == "cancelled" and paused.paused is True
    messages = [e.message for e in oai.fine_tuning.jobs.list_events(job.id)]
    assert messages[0].startswith("The job was paused before its first checkpoint; nothing was kept")
    assert not any("successfully completed" in m for m in messages)


def test_pause_event_text_names_the_kept_checkpoint():
    from finetuning.serializers import _message
    from training.models import JobEvent

    done = JobEvent(type="transition", to_status="completed",
                    message="paused by eng (OpenAI API); adapter kept from the checkpoint at step 40")
    assert _message(done, 0) == ("info", "The job was paused at a step boundary; its checkpoint at step 40 is kept "
                                         "and resume continues from it")
    finished = JobEvent(type="transition", to_status="completed", message="")
    assert _message(finished, 0) == ("info", "The job has successfully completed")
