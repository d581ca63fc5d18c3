"""The state table, the transition function, launch/terminate/resume/reconcile with the
recording fake provider (the edge of the world), retry, stop early, notifications."""
import http.server
import json
import re
import threading
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from tests.jobs.factories import make_dataset, make_running_job, move_locked
from training import states
from training.models import JobEvent, NotificationPreference, TrainingJob
from training.providers import NoCapacityError, ProviderAuthError, get_provider

pytestmark = pytest.mark.django_db


# --------------------------------------------------------------------------- the table

def test_table_is_closed_and_terminal_states_are_final():
    everything = {s for s, _ in states.CHOICES}
    assert set(states.ALLOWED_MOVES) == everything
    for source, targets in states.ALLOWED_MOVES.items():
        assert targets <= everything
        if source in states.TERMINAL_STATES:
            assert not targets
        else:
            assert {states.FAILED, states.CANCELLED} <= targets
    order = [states.QUEUED, states.PROVISIONING, *states.POD_STAGES, states.COMPLETED]
    for i, earlier in enumerate(order):
        for later in order[:i]:
            assert not states.can_move(earlier, later), f"{earlier} -> {later} goes backwards"


def test_job_move_writes_audit_row_and_refuses_moves_not_in_the_table(organization):
    from django.db import transaction

    from training.services.jobs import IllegalMove, job_lock, job_move

    job = make_running_job(organization, status=states.TRAINING)
    with transaction.atomic():
        locked = job_lock(job.pk)
        job_move(locked, states.FINALIZING, reason="pod says so")
        assert locked.status == states.FINALIZING
    row = JobEvent.objects.get(job=job, type="transition")
    assert (row.from_status, row.to_status, row.message) == (states.TRAINING, states.FINALIZING, "pod says so")
    for backwards in (states.TRAINING, states.QUEUED):
        with transaction.atomic(), pytest.raises(IllegalMove, match=f"a finalizing job cannot become {backwards}"):
            job_move(job_lock(job.pk), backwards)
    assert move_locked(job.pk, states.FAILED)
    for target in (states.COMPLETED, states.PROVISIONING, states.CANCELLED):
        with transaction.atomic(), pytest.raises(IllegalMove):
            job_move(job_lock(job.pk), target)
    assert JobEvent.objects.filter(job=job, type="transition").count() == 2
    job.refresh_from_db()
    # The secret outlives the terminal move by the late window only (test_jobs_late_events.py).
    assert job.status == states.FAILED and job.webhook_secret and job.finished_at


def test_job_move_refuses_a_job_read_without_its_row_lock(organization):
    from django.db import transaction

    from training.services.jobs import JobNotLocked, job_move

    job = make_running_job(organization, status=states.TRAINING)
    with transaction.atomic():
        unlocked = TrainingJob.objects.get(pk=job.pk)  # no select_for_update
        with pytest.raises(JobNotLocked, match="without the row lock"):
            job_move(unlocked, states.CANCELLED, reason="no lock")
    with transaction.atomic():
        also_unlocked = TrainingJob.objects.select_for_update().get(pk=job.pk)  # locked, but not marked
        with pytest.raises(JobNotLocked):
            job_move(also_unlocked, states.CANCELLED)
    job.refresh_from_db()
    assert job.status == states.TRAINING and not JobEvent.objects.filter(job=job, type="transition").exists()


@pytest.mark.django_db(transaction=True)
def test_job_move_refuses_a_lock_from_a_transaction_that_ended(organization):
    from django.db import transaction

    from training.services.jobs import JobNotLocked, job_lock, job_move

    job = make_running_job(organization, status=states.TRAINING)
    with pytest.raises(JobNotLocked):  # no transaction, no lock
        job_move(TrainingJob.objects.get(pk=job.pk), states.CANCELLED)
    with transaction.atomic():
        stale = job_lock(job.pk)
    with pytest.raises(JobNotLocked):  # outside any transaction
        job_move(stale, states.CANCELLED)
    with transaction.atomic(), pytest.raises(JobNotLocked):  # the lock ended with its transaction
        job_move(stale, states.CANCELLED)
    with transaction.atomic():
        job_move(job_lock(job.pk), states.CANCELLED, reason="locked now")
    assert TrainingJob.objects.get(pk=job.pk).status == states.CANCELLED


# What each move queues (task, args after the job id, countdown), as docs/jobs.md lists it.
EXPECTED_FOLLOW_UPS = {
    states.COMPLETED: [("training.tasks.job_terminate", [], 1), ("artifacts.tasks.job_artifacts_register", [], 0),
                       ("validation.tasks.job_validate", [], 0), ("training.tasks.job_notify", ["completed"], 0)],
    states.FAILED: [("training.tasks.job_terminate", [], 0), ("training.tasks.job_notify", ["failed"], 0)],
    states.CANCELLED: [("training.tasks.job_terminate", [], 0)],
    states.INTERRUPTED: [("training.tasks.job_resume", [], 0), ("training.tasks.job_notify", ["interrupted"], 0)],
    states.FINALIZING: [],
}


@pytest.mark.parametrize("from_status,to_status", [
    (states.TRAINING, states.COMPLETED), (states.TRAINING, states.FAILED), (states.TRAINING, states.CANCELLED),
    (states.TRAINING, states.INTERRUPTED), (states.TRAINING, states.FINALIZING),
    (states.INTERRUPTED, states.PROVISIONING), (states.QUEUED, states.PROVISIONING),
])
def test_job_move_queues_the_follow_ups_of_the_on_enter_table(organization, settings, from_status, to_status):
    from training.models import OutboxMessage

    settings.POD_COMPLETED_EXIT_WAIT_S = 1
    job = make_running_job(organization, status=from_status)
    assert move_locked(job.pk, to_status, reason="table test")
    queued = [(row.task, row.args, row.countdown_s)
              for row in OutboxMessage.objects.filter(job_id=job.pk).order_by("id")]
    if to_status == states.PROVISIONING:  # only a resume (from interrupted) tells the owner
        expected = [("training.tasks.job_notify", [str(job.pk), "resumed"], 0)] if from_status == states.INTERRUPTED else []
    else:
        expected = [(task, [str(job.pk), *args], countdown) for task, args, countdown in EXPECTED_FOLLOW_UPS[to_status]]
    assert queued == expected
    # The table in states.py says the same, and nothing else queues a task.
    assert [(f.task, [str(job.pk), *f.args]) for f in states.followups(from_status, to_status)] == \
        [(task, args) for task, args, _ in expected]
    assert set(states.ON_ENTER) == {states.COMPLETED, states.FAILED, states.CANCELLED, states.INTERRUPTED}


STATUS_WRITERS = {("training/services/jobs.py", "job_move")}  # the one job transition
# Modules with another model's state machine, whose `.status` is not a job's: validation runs.
OTHER_STATE_MACHINES = ("validation/services",)
_SQL_SETS_STATUS = re.compile(r"\bUPDATE\s+\S+\s+SET\b[^;]*\bstatus\b", re.I | re.S)


def _status_writes(source: str, rel: str) -> list[str]:
    """Every place in `source` that writes a status: `<anything>.status = / op=`, `status=` in an
    update/create call or a TrainingJob(...), setattr(x, "status", ...), SQL text that sets one."""
    import ast

    found = []

    class Visitor(ast.NodeVisitor):
        func = None

        def visit_FunctionDef(self, node):
            outer, self.func = self.func, node.name
            self.generic_visit(node)
            self.func = outer

        visit_AsyncFunctionDef = visit_FunctionDef

        def flag(self, node, what):
            if (rel, self.func) not in STATUS_WRITERS:
                found.append(f"{rel}:{node.lineno} in {self.func}: {what}")

        def visit_Assign(self, node):
            for target in node.targets:
                for t in ast.walk(target):
                    if isinstance(t, ast.Attribute) and t.attr == "status":
                        self.flag(node, f"{ast.unparse(t)} = ...")
            self.generic_visit(node)

        def visit_AugAssign(self, node):
            if isinstance(node.target, ast.Attribute) and node.target.attr == "status":
                self.flag(node, f"{ast.unparse(node.target)} = ...")
            self.generic_visit(node)

        visit_AnnAssign = visit_AugAssign

        def visit_Call(self, node):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("update", "create", "update_or_create", "get_or_create", "TrainingJob") and \
                    any(k.arg == "status" for k in node.keywords):
                self.flag(node, f"{name}(status=...)")
            if name == "setattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                    and node.args[1].value == "status":
                self.flag(node, "setattr(..., 'status', ...)")
            self.generic_visit(node)

        def visit_Constant(self, node):
            if isinstance(node.value, str) and _SQL_SETS_STATUS.search(node.value):
                self.flag(node, "SQL that sets a status")

    Visitor().visit(ast.parse(source, filename=rel))
    return found


def test_only_the_transition_function_assigns_status():
    """Nothing in the application writes a job's status but the transition function, read from
    the AST of every module under the repository root (tests, migrations, the pod and the
    benchmarks aside), whatever the directory pytest runs from."""
    from tests.conftest import REPO_ROOT

    skip = {"tests", "migrations", ".venv", "gpu_worker", "benchmarks", "node_modules", "var", "clients"}
    offenders, scanned = [], 0
    for path in sorted(REPO_ROOT.rglob("*.py")):
        rel = path.relative_to(REPO_ROOT).as_posix()
        if skip & set(rel.split("/")[:-1]) or rel.startswith(OTHER_STATE_MACHINES):
            continue
        scanned += 1
        offenders += _status_writes(path.read_text(), rel)
    assert scanned > 100  # the walk found the application (it is not vacuous from tests/)
    assert offenders == [], "\n".join(offenders)


@pytest.mark.parametrize("code", [
    "locked.status = 'completed'",  # what a search for `job.status = ` missed
    "def f(j):\n    j.status: str = 'failed'",
    "TrainingJob.objects.filter(pk=1).update(status='failed')",
    "TrainingJob.objects.create(status='training')",
    "setattr(job, 'status', 'cancelled')",
    "cursor.execute('UPDATE training_trainingjob SET stage = %s, status = %s')",
])
def test_the_status_guard_catches_each_way_of_writing_a_status(code):
    assert _status_writes(code, "training/services/pods.py")
    assert not _status_writes("job.stage = 'x'; q.filter(status='failed').count()", "training/services/pods.py")


# --------------------------------------------------------------------------- create

def test_create_validates_before_writing(organization, settings):
    from training.services.jobs import JobConfigError, job_create

    dataset = make_dataset(organization)
    with pytest.raises(JobConfigError) as info:
        job_create(organization=organization, dataset=dataset, overrides={"learning_rate": -0.1, "lora_r": 0}, start=False)
    assert "learning_rate must be > 0" in info.value.message and "lora_r must be >= 1" in info.value.message
    with pytest.raises(JobConfigError, match="unknown preset"):
        job_create(organization=organization, dataset=dataset, preset="reckless", start=False)
    assert TrainingJob.objects.count() == 0


def test_preset_seq_len_is_fitted_to_the_model_but_an_override_is_checked(organization, tmp_path):
    from training.services.jobs import JobConfigError, job_create

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 2048}))
    dataset = make_dataset(organization)
    job = job_create(organization=organization, dataset=dataset, base_model=str(model), start=False)
    assert job.hyperparameters["max_seq_len"] == 2048
    with pytest.raises(JobConfigError, match="exceeds the model's context of 2048"):
        job_create(organization=organization, dataset=dataset, base_model=str(model),
                   overrides={"max_seq_len": 4096}, start=False)


def test_dataset_of_another_organization_is_refused(organization, other_organization):
    from training.services.jobs import JobConfigError, job_create

    with pytest.raises(JobConfigError, match="another organization"):
        job_create(organization=organization, dataset=make_dataset(other_organization), start=False)


# --------------------------------------------------------------------------- launch

def _queued(organization, **kw):
    from training.services.jobs import job_create

    return job_create(organization=organization, dataset=make_dataset(organization), provider="fake", start=False, **kw)


def test_launch_records_the_name_first_and_adopts_on_retry(organization, fake):
    from training.services.pods import job_launch

    job = _queued(organization)
    first = job_launch(job_id=job.pk)
    job.refresh_from_db()
    assert first.action == "launched" and job.status == states.PROVISIONING and job.attempt == 1
    assert job.pod_name == f"brightrun-{job.pk}-1" and job.pod_id == first.pod_id
    # A crash before the pod id was saved: the retry adopts the pod, it does not start another.
    TrainingJob.objects.filter(pk=job.pk).update(pod_id="")
    again = job_launch(job_id=job.pk)
    assert again.action == "adopted" and again.pod_id == first.pod_id
    assert fake.methods_called().count("launch") == 1
    assert job_launch(job_id=job.pk).action == "skipped"


def test_launch_of_a_cancelled_job_terminates_its_pod(organization, fake, monkeypatch,
                                                     django_capture_on_commit_callbacks):
    from training.services import pods
    from training.services.jobs import job_cancel

    job = _queued(organization)
    real_launch = fake.launch

    def launch_then_cancel(request):
        info = real_launch(request)
        job_cancel(job_id=job.pk)  # the user cancels while the provider call is in flight
        return info

    monkeypatch.setattr(fake, "launch", launch_then_cancel)
    sent = []
    monkeypatch.setattr("training.tasks.pod_terminate.delay", lambda *a: sent.append(a))
    monkeypatch.setattr("training.tasks.job_terminate.apply_async", lambda *a, **k: None)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = pods.job_launch(job_id=job.pk)
    assert outcome.action == "superseded" and sent == [("fake", outcome.pod_id)]


def test_transient_launch_errors_retry_then_fail_clearly(organization, fake, settings):
    from training import tasks

    settings.LAUNCH_MAX_RETRIES = 0
    job = _queued(organization)
    fake.fail_next("launch", NoCapacityError("There are no longer any instances available with the requested "
                                             "specifications", suggestion="try another GPU type or the community cloud"))
    tasks.job_launch.apply(args=(str(job.pk),))
    job.refresh_from_db()
    assert job.status == states.FAILED and job.error_class == "no_capacity"
    assert "no longer any instances" in job.error_message and "another GPU type" in job.error_suggestion


def test_auth_error_is_not_retried(organization, fake, settings):
    from training import tasks

    settings.LAUNCH_MAX_RETRIES = 5
    job = _queued(organization)
    fake.fail_next("launch", ProviderAuthError("RunPod refused the API key", suggestion="check RUNPOD_API_KEY"))
    tasks.job_launch.apply(args=(str(job.pk),))
    job.refresh_from_db()
    assert job.status == states.FAILED and job.error_class == "provider_auth"


# --------------------------------------------------------------------------- resume

def test_resume_records_lost_steps_and_falls_back_to_on_demand(organization, fake, settings):
    from training.models import Checkpoint
    from training.services.pod_events import interruption_record
    from training.services.pods import job_launch, job_resume
    from django.db import transaction

    settings.SPOT_FALLBACK_AFTER = 1
    job = _queued(organization, spot=True, bid_per_gpu="0.5")
    job_launch(job_id=job.pk)
    Checkpoint.objects.create(job=job, step=10, uri="file:///ckpt/step-10")
    TrainingJob.objects.filter(pk=job.pk).update(status=states.TRAINING, current_step=17)
    from training.services.jobs import job_lock

    with transaction.atomic():
        interruption_record(job_lock(job.pk), checkpoint_uri=None, step=17, reason="spot eviction")
    assert job_resume(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == states.PROVISIONING and job.attempt == 2 and job.resume_from == "file:///ckpt/step-10"
    assert job.lost_steps == 7 and job.spot is False
    event = JobEvent.objects.get(job=job, type="resume")
    assert event.data["lost_steps"] == 7 and "on-demand" in event.message
    assert fake.requests[job.pod_id].spot is False


def test_too_many_interruptions_fail_the_job(organization, fake, settings):
    from training.services.pods import job_resume

    settings.JOB_MAX_ATTEMPTS = 2
    job = make_running_job(organization, status=states.INTERRUPTED, attempt=2, provider="fake")
    assert not job_resume(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == states.FAILED and job.error_class == "too_many_interruptions"


# --------------------------------------------------------------------------- reconcile

def test_reconcile_terminates_orphans_and_handles_lost_pods(organization, fake, settings):
    from training.providers.base import PodRequest, POD_EXITED
    from training.services.pods import job_launch, pods_reconcile

    settings.POD_ORPHAN_GRACE_S = 0
    settings.POD_EXIT_SETTLE_S = 0
    orphan = fake.launch(PodRequest(name="brightrun-00000000-0000-0000-0000-000000000000-1", gpu_type_id="x", env={}))
    vanished, crashed, healthy = (_queued(organization) for _ in range(3))
    for job in (vanished, crashed, healthy):
        job_launch(job_id=job.pk)
    TrainingJob.objects.filter(pk__in=[vanished.pk, crashed.pk, healthy.pk]).update(
        status=states.TRAINING, last_event_at=timezone.now())
    vanished.refresh_from_db()
    crashed.refresh_from_db()
    fake.vanish(vanished.pod_id)
    fake.set_state(crashed.pod_id, POD_EXITED, exit_code=1)

    report = pods_reconcile()
    assert report.orphans_terminated == [orphan.name]
    assert str(vanished.pk) in report.jobs_interrupted
    assert str(crashed.pk) in report.jobs_failed
    for job, expected in ((vanished, states.PROVISIONING), (crashed, states.FAILED), (healthy, states.TRAINING)):
        job.refresh_from_db()
        # The vanished job was interrupted, and (tasks run eagerly? no: queued) waits in `interrupted`.
        assert job.status in ({states.INTERRUPTED, states.PROVISIONING} if expected == states.PROVISIONING else {expected})
    crashed.refresh_from_db()
    assert "exited with code 1" in crashed.error_message
    live = {p.name for p in fake.list("brightrun-")}
    assert orphan.name not in live and healthy.pod_name in live


def test_reconcile_stops_a_silent_pod(organization, fake, settings):
    from training.services.pods import job_launch, pods_reconcile

    settings.POD_SILENCE_TIMEOUT_S = 60
    job = _queued(organization)
    job_launch(job_id=job.pk)
    TrainingJob.objects.filter(pk=job.pk).update(status=states.TRAINING,
                                                 last_event_at=timezone.now() - timedelta(seconds=120))
    report = pods_reconcile()
    job.refresh_from_db()
    assert report.jobs_interrupted == [str(job.pk)] and job.status == states.INTERRUPTED
    assert "no event from the pod" in JobEvent.objects.filter(job=job, to_status=states.INTERRUPTED).get().message
    assert "terminate" in fake.methods_called()


def test_reconcile_relaunches_a_stalled_launch(organization, fake, settings, monkeypatch):
    from training.services.pods import pods_reconcile

    settings.LAUNCH_STALL_S = 0
    job = _queued(organization)
    TrainingJob.objects.filter(pk=job.pk).update(status=states.PROVISIONING, attempt=1, pod_name=f"brightrun-{job.pk}-1",
                                                 stage_times={states.PROVISIONING: timezone.now().isoformat()})
    sent = []
    monkeypatch.setattr("training.tasks.job_launch.delay", lambda job_id: sent.append(job_id))
    report = pods_reconcile()
    assert report.jobs_relaunched == [str(job.pk)] and sent == [str(job.pk)]


# --------------------------------------------------------------------------- stop, retry, notes

def test_stop_early_completes_from_the_last_checkpoint(organization, client, make_user, settings):
    from tests.jobs.factories import pod_event, signed_post
    from training.models import Checkpoint
    from training.notifications import notify_job
    from training.services.jobs import job_stop_early

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    user = make_user("eng", organization)
    user.email = "eng@example.com"
    user.save()
    job = make_running_job(organization, status=states.TRAINING, created_by=user)
    Checkpoint.objects.create(job=job, step=4, uri="file:///ckpt/step-4")
    secret = job.webhook_secret
    job_stop_early(job_id=job.pk, reason="paused by eng (OpenAI API)")
    # The pod, sent SIGTERM, checkpoints at step 5 and reports `interrupted`.
    ev = pod_event(job, 50, "interrupted", step=5, data={"checkpoint_uri": "file:///ckpt/step-5", "checkpoint_step": 5})
    assert signed_post(client, ev, secret).status_code == 200
    job.refresh_from_db()
    assert job.status == states.COMPLETED and job.result["stopped_early"] is True
    assert job.adapter_uri == "file:///ckpt/step-5/adapter" and job.result["checkpoint_step"] == 5
    # Its notification says it stopped, why, and what was kept; not "completed".
    assert notify_job(job_id=job.pk, kind="completed")["email"] == 1
    assert mail.outbox[-1].subject.endswith(": stopped early")
    assert "Reason: paused by eng (OpenAI API); adapter kept from step 5." in mail.outbox[-1].body


def test_budget_stop_ends_cancelled_and_keeps_the_checkpoint(organization, client):
    from tests.jobs.factories import pod_event, signed_post
    from training.services.jobs import job_stop_for_budget

    job = make_running_job(organization, status=states.TRAINING)
    secret = job.webhook_secret
    job_stop_for_budget(job_id=job.pk, reason="monthly budget of $100.00 reached")
    ev = pod_event(job, 9, "interrupted", step=7, data={"checkpoint_uri": "file:///ckpt/step-7", "checkpoint_step": 7})
    signed_post(client, ev, secret)
    job.refresh_from_db()
    assert job.status == states.CANCELLED and job.error_class == "budget_cap"
    assert job.checkpoints.get().step == 7


def test_retry_links_and_applies_the_fix(organization):
    from training.services.jobs import JobStateError, job_retry

    job = make_running_job(organization, status=states.FAILED, error_class="cuda_oom",
                           error_fix={"micro_batch_size": 1, "gradient_accumulation_steps": 8})
    TrainingJob.objects.filter(pk=job.pk).update(hyperparameters={"num_epochs": 1}, base_model="x", preset="balanced")
    retry = job_retry(job_id=job.pk, apply_fix=True)
    assert retry.parent_id == job.pk and retry.status == states.QUEUED
    assert retry.hyperparameters["micro_batch_size"] == 1 and retry.hyperparameters["gradient_accumulation_steps"] == 8
    running = make_running_job(organization, status=states.TRAINING)
    with pytest.raises(JobStateError, match="still training"):
        job_retry(job_id=running.pk)


# --------------------------------------------------------------------------- notifications

class _SlackCatcher(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_notifications_by_email_and_slack_follow_preferences(organization, make_user, settings):
    from training.notifications import notify_job

    server = http.server.HTTPServer(("127.0.0.1", 0), _SlackCatcher)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings.SLACK_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hook"
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
        user = make_user("eng", organization)
        user.email = "eng@example.com"
        user.save()
        job = make_running_job(organization, status=states.FAILED, created_by=user, error_class="nan_loss",
                               error_message="loss became NaN at step 40", error_suggestion="lower learning_rate to 1e-4")
        assert notify_job(job_id=job.pk, kind="failed") == {"email": 1, "slack": 1}
        assert "NaN" in mail.outbox[0].body and "lower learning_rate" in mail.outbox[0].body
        assert "nan_loss" in _SlackCatcher.received[-1]["text"]
        assert notify_job(job_id=job.pk, kind="resumed") == {"email": 0, "slack": 0}  # off by default
        NotificationPreference.objects.create(user=user, email=False, slack=True, on_failed=True)
        assert notify_job(job_id=job.pk, kind="failed") == {"email": 0, "slack": 1}
    finally:
        server.shutdown()
