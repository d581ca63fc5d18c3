"""Dashboard pages render for members, refuse others, and show what the job has; admin pages
and actions."""
import pytest
from django.test import Client

from accounts.models import Role
from tests.api.conftest import drive
from tests.jobs.factories import make_dataset, make_running_job
from training.models import TrainingJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser_as(make_user):
    def make(username, organization, role=Role.ENGINEER):
        client = Client()
        client.force_login(make_user(username, organization, role))
        return client

    return make


def test_login_required_and_login_page():
    client = Client()
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert "Log in" in client.get("/login/").content.decode()


def test_session_login_flow(organization, make_user):
    make_user("eng", organization)
    client = Client()
    response = client.post("/login/", {"username": "eng", "password": "pw-eng"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert "Jobs" in client.get("/").content.decode()


def test_pages_render(browser_as, organization):
    client = browser_as("eng", organization)
    job = drive(make_running_job(organization, status="provisioning", name="visible-job", client="c9"))
    failed = make_running_job(organization, status="failed", name="broken-job", error_class="oom",
                              error_message="Out of GPU memory at step 3", error_suggestion="lower micro_batch_size to 1",
                              error_fix={"micro_batch_size": 1})
    listing = client.get("/").content.decode()
    assert "visible-job" in listing and "broken-job" in listing and "Compare selected" in listing
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    for text in ("Model loading", "Learning rate", "job-snapshot", "uPlot.iife.min.js", "Checkpoints", "Notes",
                 "Started by", "Stop early", f"/api/v1/jobs/{job.pk}/metrics/export/csv/"):
        assert text in page, text
    broken = client.get(f"/jobs/{failed.pk}/").content.decode()
    assert "Out of GPU memory at step 3" in broken and "lower micro_batch_size to 1" in broken
    assert "Retry with the suggested fix" in broken
    new = client.get("/jobs/new/").content.decode()
    assert "The default: a few hundred" in new or "balanced" in new
    assert "Estimate" in new and "Budget left" in new
    compare = client.get(f"/jobs/compare/?ids={job.pk},{failed.pk}").content.decode()
    assert "compare-data" in compare and "visible-job" in compare and "final loss" in compare
    datasets = client.get("/datasets/").content.decode()
    assert job.dataset.name in datasets
    detail = client.get(f"/datasets/{job.dataset_id}/").content.decode()
    assert "Trainable turns" in detail
    assert client.get("/budgets/").status_code == 200
    assert client.get("/static/dashboard/vendor/uplot/uPlot.iife.min.js").status_code == 200


def test_foreign_job_is_404_and_list_is_scoped(browser_as, organization, other_organization):
    client = browser_as("eng", organization)
    theirs = make_running_job(other_organization, status="training", name="globex-secret")
    assert client.get(f"/jobs/{theirs.pk}/").status_code == 404
    assert client.get(f"/datasets/{theirs.dataset_id}/").status_code == 404
    assert "globex-secret" not in client.get("/").content.decode()
    assert "globex-secret" not in client.get(f"/jobs/compare/?ids={theirs.pk}").content.decode()


def test_viewer_sees_no_job_controls(browser_as, organization):
    client = browser_as("viewer", organization, Role.VIEWER)
    job = make_running_job(organization, status="training")
    assert client.get("/jobs/new/").status_code == 403
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="btn-cancel"' not in page and "New job" not in page


def test_user_without_organization_is_refused(db):
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.create_user("loner"))
    assert client.get("/").status_code == 403


def test_admin_jobs_list_and_actions(organization, make_user):
    from django.contrib.auth import get_user_model

    superuser = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    running = make_running_job(organization, status="training", name="to-cancel")
    done = make_running_job(organization, status="failed", name="to-retry")
    client = Client()
    client.force_login(superuser)
    changelist = client.get("/admin/training/trainingjob/?status__exact=training")
    assert changelist.status_code == 200 and "to-cancel" in changelist.content.decode()
    assert client.get("/admin/training/trainingjob/?q=to-retry").status_code == 200
    assert client.get(f"/admin/training/trainingjob/{running.pk}/change/").status_code == 200
    client.post("/admin/training/trainingjob/", {"action": "cancel_jobs", "_selected_action": [running.pk]})
    running.refresh_from_db()
    assert running.status == "cancelled"
    client.post("/admin/training/trainingjob/", {"action": "retry_jobs", "_selected_action": [done.pk]})
    assert TrainingJob.objects.filter(parent=done).count() == 1
    for url in ("/admin/training/jobevent/", "/admin/training/metricpoint/", "/admin/training/jobtemplate/",
                "/admin/training/notificationpreference/"):
        assert client.get(url).status_code == 200, url


def test_new_job_page_lists_datasets_and_templates(browser_as, organization):
    from training.models import JobTemplate

    client = browser_as("eng", organization)
    dataset = make_dataset(organization)
    JobTemplate.objects.create(organization=organization, name="nightly", preset="conservative")
    page = client.get("/jobs/new/").content.decode()
    assert str(dataset.pk) in page and "nightly" in page


def test_job_page_stage_strip_is_exact_for_final_states_and_values_are_formatted(browser_as, organization):
    client = browser_as("eng", organization)
    failed = make_running_job(organization, status="failed", name="failed-in-training", error_class="oom",
                              error_message="Out of memory", stage="training")
    cancelled = make_running_job(organization, status="cancelled", name="cancelled-job", stage="model_loading")
    done = make_running_job(organization, status="completed", name="stopped-job", stage="evaluating",
                            stop_requested=True)
    TrainingJob.objects.filter(pk=done.pk).update(hyperparameters={"learning_rate": 0.000123456, "lora_r": 16},
                                                  result={"eval": {"val_perplexity": 3.14159265, "extra": {"a": 1}}})
    page = client.get(f"/jobs/{failed.pk}/").content.decode()
    assert 'data-stage="preprocessing" class="done"' in page and 'data-stage="training" class="failed"' in page
    assert 'data-stage="finalizing" class=""' in page
    page = client.get(f"/jobs/{cancelled.pk}/").content.decode()
    assert 'data-stage="model_loading" class="cancelled"' in page and 'data-stage="training" class=""' in page
    page = client.get(f"/jobs/{done.pk}/").content.decode()
    assert 'data-stage="training" class="done stopped"' in page and "stopped early" in page
    assert 'data-stage="evaluating" class="done"' in page
    assert "1.23e-04" in page and "3.142" in page and "3.14159265" not in page and "{'a'" not in page


def _completed_validation_run(job):
    from validation.models import ValidationRun

    win = {"key": "pairwise_win_rate", "title": "Pairwise empathy win rate", "computed": True,
           "value": {"value": 0.6234, "low": 0.51, "high": 0.7321, "n": 48},
           "difference": {"value": 0.2512, "low": 0.05, "high": 0.44}}
    gate = {"gate": "brand_voice", "verdict": "pass", "value": 0.8125, "n": 48, "ci": [0.7011, 0.9012],
            "checks": [{"check": "on_voice_floor", "verdict": "pass", "value": 0.8125, "threshold": 0.5}]}
    return ValidationRun.objects.create(job=job, organization=job.organization, status="completed", verdict="pass",
                                        metrics={"pairwise_win_rate": win},
                                        summary={"verdict": "pass", "gates": [gate]})


def test_completed_job_page_leads_with_the_validation_headline_and_gates(browser_as, organization):
    client = browser_as("eng", organization)
    job = make_running_job(organization, status="completed", name="validated-job", stage="evaluating")
    TrainingJob.objects.filter(pk=job.pk).update(last_loss=1.234567891, tokens_per_s=1534.56789)
    _completed_validation_run(job)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    summary = page.index('id="validation-summary"')
    assert summary < page.index('id="stages"'), "the validation summary comes before the progress card"
    # The headline is the validation app's own sentence: percentage, interval and n, as people read them.
    assert "62.3% [51.0%, 73.2%] of 48 held-out client turns" in page
    assert "Brand voice" in page and "81%" in page and "[70%, 90%]" in page and "on voice floor: pass" in page
    assert ">Pass<" in page and ">Completed<" in page
    # The KPIs are rounded (the raw floats stay only in the JSON snapshot the script reads).
    assert 'id="job-loss">1.2346<' in page and 'id="job-tps">1535<' in page


def test_job_page_without_validation_run_has_no_summary(browser_as, organization):
    client = browser_as("eng", organization)
    job = make_running_job(organization, status="completed", name="unvalidated-job")
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="validation-summary"' not in page and "Validation report" in page


def test_organization_wide_budget_has_a_label_on_the_budgets_and_new_job_pages(browser_as, organization):
    from billing.models import Budget

    Budget.objects.create(organization=organization, client="", limit="250.00")
    client = browser_as("eng", organization)
    budgets = client.get("/budgets/").content.decode()
    assert "<h2>Whole organization · limit $250.00" in budgets
    assert "{'" not in budgets and "[{" not in budgets
    new = client.get("/jobs/new/").content.decode()
    assert "<div>Whole organization: <b>$" in new
