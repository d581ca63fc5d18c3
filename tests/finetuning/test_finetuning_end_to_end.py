"""A job driven only through the official `openai` client trains for real: the live server, a
Celery worker, the local provider and the real gpu_worker on the tiny model (tests/jobs/conftest.py's
job_stack). Upload, create with "auto" hyperparameters, read events while it trains, pause at a
checkpoint and resume from it under the same id, list checkpoints; and cancel another job."""
from __future__ import annotations

import pytest

from tests.conftest import SAMPLE_FILE
from tests.jobs.conftest import wait_for

openai = pytest.importorskip("openai")

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Our own hyperparameters (an extension of the OpenAI body) that keep the tiny model quick; the
# OpenAI ones stay "auto", i.e. the balanced preset's.
TINY = {"max_seq_len": 1024, "lora_r": 4, "lora_alpha": 8}


def test_train_pause_resume_and_cancel_through_the_openai_client(job_stack, oai, tiny_model_path):
    from finetuning.models import FineTuningJob
    from gpu_worker.presets import PRESETS
    from training import states
    from training.models import TrainingJob

    job_stack.start_worker()
    upload = oai.files.create(file=("brightrun-sample.json", SAMPLE_FILE.read_bytes()), purpose="fine-tune")
    job = oai.fine_tuning.jobs.create(
        model=str(tiny_model_path), training_file=upload.id, suffix="voice", metadata={"case": "e2e"},
        hyperparameters={"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto", **TINY},
        extra_body={"test_hooks": {"sleep_per_step_s": 1.0}},  # time to pause between checkpoints
    )
    balanced = PRESETS["balanced"].hyperparameters
    assert job.hyperparameters.n_epochs == int(balanced.num_epochs)
    assert job.hyperparameters.batch_size == balanced.micro_batch_size * balanced.gradient_accumulation_steps

    # Another job, cancelled at once: its pod (if it got one) is terminated.
    other = oai.fine_tuning.jobs.create(model=str(tiny_model_path), training_file=upload.id, suffix="other",
                                        hyperparameters={"n_epochs": 1, **TINY})
    assert oai.fine_tuning.jobs.cancel(other.id).status == "cancelled"

    # Events while it trains: metrics with the step and the training loss, newest first.
    def metrics_while_running():
        events = oai.fine_tuning.jobs.list_events(job.id, limit=50).data
        current = oai.fine_tuning.jobs.retrieve(job.id)  # after the events: it has their progress
        metrics = [e for e in events if e.type == "metrics"]
        return (current.status == "running" and metrics) and (current, events, metrics)

    current, events, metrics = wait_for(metrics_while_running, 120, interval_s=0.2, message="metrics while running")
    assert metrics[0].data["step"] >= 1 and isinstance(metrics[0].data["train_loss"], float)
    assert metrics[0].message.startswith(f"Step {metrics[0].data['step']}/")
    assert [e.created_at for e in events] == sorted((e.created_at for e in events), reverse=True)
    assert current.current_step >= 1 and current.fine_tuned_model is None

    # Pause once a checkpoint exists; the run stops at the next step and keeps a checkpoint.
    wait_for(lambda: oai.fine_tuning.jobs.checkpoints.list(job.id).data, 60, interval_s=0.2,
             message="a first checkpoint")
    paused = oai.fine_tuning.jobs.pause(job.id)
    assert paused.status == "cancelled" and paused.paused is True and paused.id == job.id
    first_run = TrainingJob.objects.get(pk=paused.training_job_id)

    def stopped():
        first_run.refresh_from_db()
        return first_run.is_terminal

    wait_for(stopped, 60, message="the paused run to stop")
    assert first_run.status == states.COMPLETED and first_run.result.get("stopped_early"), first_run.error_message
    assert oai.fine_tuning.jobs.retrieve(job.id).paused is True
    assert first_run.current_step < first_run.total_steps  # it really stopped early
    assert oai.fine_tuning.jobs.pause(job.id).paused is True  # again: harmless

    resumed = oai.fine_tuning.jobs.resume(job.id)
    assert resumed.id == job.id and resumed.status in ("queued", "running")
    assert oai.fine_tuning.jobs.resume(job.id).training_job_id == resumed.training_job_id  # a retry starts nothing
    second_run = TrainingJob.objects.get(pk=resumed.training_job_id)
    assert second_run.parent_id == first_run.pk and second_run.resume_from

    def finished():
        current = oai.fine_tuning.jobs.retrieve(job.id)
        return current.status in ("succeeded", "failed", "cancelled") and current

    done = wait_for(finished, 180, interval_s=0.5, message="the resumed job to finish")
    assert done.status == "succeeded", (done.error, job_stack.log())
    ft = FineTuningJob.objects.get(pk=job.id)
    assert done.fine_tuned_model == f"ft:{tiny_model_path.name}:voice:{ft.short_id}"
    assert done.finished_at and done.trained_tokens
    second_run.refresh_from_db()
    first_resumed_step = second_run.metrics.order_by("step").first().step
    assert first_resumed_step > 1  # continued from the checkpoint, not from the start

    # Events over both runs, paged newest first by the client.
    everything = list(oai.fine_tuning.jobs.list_events(job.id, limit=7))
    assert len({e.id for e in everything}) == len(everything)
    messages = [e.message for e in everything]
    assert messages[0].startswith("The job has successfully completed")
    assert messages[-1] == "Created fine-tuning job" and "Resumed from the last checkpoint (run 2)" in messages
    assert any(m.startswith("paused by") for m in messages)
    assert any(m.startswith("The job was paused at a step boundary; its checkpoint at step") for m in messages)
    assert not any(m.startswith("The job has successfully completed") for m in messages[1:])

    # The results file: OpenAI's columns, a row per recorded step of both runs.
    assert len(done.result_files) == 1
    results = oai.files.retrieve(done.result_files[0])
    assert results.purpose == "fine-tune-results"
    lines = oai.files.content(results.id).text.splitlines()
    assert lines[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    steps = [int(line.split(",")[0]) for line in lines[1:]]
    assert steps == sorted(set(steps)) and steps[-1] == done.current_step
    assert all(float(line.split(",")[1]) > 0 for line in lines[1:])

    # Checkpoints of both runs, newest first, named after the fine-tuned model.
    checkpoints = list(oai.fine_tuning.jobs.checkpoints.list(job.id, limit=2))
    assert len(checkpoints) >= 2
    assert [c.step_number for c in checkpoints] == sorted((c.step_number for c in checkpoints), reverse=True)
    newest = checkpoints[0]
    assert newest.object == "fine_tuning.job.checkpoint" and newest.fine_tuning_job_id == job.id
    assert newest.fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-{newest.step_number}"
    assert newest.metrics.step == newest.step_number and newest.metrics.train_loss is not None

    assert oai.fine_tuning.jobs.retrieve(other.id).status == "cancelled"
    assert [j.id for j in oai.fine_tuning.jobs.list(metadata={"case": "e2e"})] == [job.id]
