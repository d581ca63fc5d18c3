"""Jobs API: create (with a template), list filters, ordering and pagination, detail, notes,
cancel, stop, retry, events, checkpoints, artifacts, compare; roles; query counts."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Role
from tests.api.conftest import drive
from tests.jobs.factories import make_dataset, make_running_job
from training import states
from training.models import JobTemplate, TrainingJob

pytestmark = pytest.mark.django_db


def test_create_list_detail(client_as, organization):
    eng = client_as("eng", organization)
    dataset = make_dataset(organization)
    created = eng.post("/api/v1/jobs/", {"dataset": str(dataset.pk), "preset": "conservative",
                                         "overrides": {"num_epochs": 1}, "client": "c1", "name": "first"}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["status"] == "queued" and body["preset"] == "conservative" and body["created_by"] == "eng"
    assert body["hyperparameters"]["num_epochs"] == 1 and body["client"] == "c1"
    listed = eng.get("/api/v1/jobs/").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == body["id"]
    assert eng.get(f"/api/v1/jobs/{body['id']}/").json()["name"] == "first"


def test_create_from_template_explicit_fields_win(client_as, organization):
    eng = client_as("eng", organization)
    dataset = make_dataset(organization)
    template = eng.post("/api/v1/templates/", {"name": "short", "preset": "aggressive", "overrides": {"num_epochs": 1},
                                               "spot": True, "description": "quick look"}, format="json")
    assert template.status_code == 201, template.json()
    job = eng.post("/api/v1/jobs/", {"dataset": str(dataset.pk), "template": template.json()["id"], "spot": False},
                   format="json").json()
    assert job["preset"] == "aggressive" and job["hyperparameters"]["num_epochs"] == 1
    assert job["spot"] is False  # given explicitly, so it beats the template


def test_invalid_config_and_foreign_dataset(client_as, organization, other_organization):
    eng = client_as("eng", organization)
    dataset = make_dataset(organization)
    bad = eng.post("/api/v1/jobs/", {"dataset": str(dataset.pk), "overrides": {"learning_rate": -1}}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_job_config"
    foreign = make_dataset(other_organization)
    missing = eng.post("/api/v1/jobs/", {"dataset": str(foreign.pk)}, format="json")
    assert missing.status_code == 404 and set(missing.json()["error"]) == {"code", "message", "detail"}
    assert TrainingJob.objects.count() == 0


def test_filters_ordering_pagination(client_as, organization, make_user):
    eng = client_as("eng", organization)
    bob = make_user("bob", organization)
    a = make_running_job(organization, status="training", name="alpha", client="c1", created_by=eng.user)
    b = make_running_job(organization, status="failed", name="beta", client="c2", created_by=bob)
    TrainingJob.objects.filter(pk=b.pk).update(preset="aggressive")
    c = make_running_job(organization, status="completed", name="gamma", client="c1", created_by=bob)
    TrainingJob.objects.filter(pk=a.pk).update(current_step=5, total_steps=10)

    def ids(query):
        response = eng.get("/api/v1/jobs/" + query)
        assert response.status_code == 200, response.json()
        return [r["id"] for r in response.json()["results"]]

    assert set(ids("?status=training,failed")) == {str(a.pk), str(b.pk)}
    assert ids("?client=c2") == [str(b.pk)]
    assert ids("?preset=aggressive") == [str(b.pk)]
    assert set(ids("?created_by=bob")) == {str(b.pk), str(c.pk)}
    assert set(ids(f"?created_by={eng.user.pk}")) == {str(a.pk)}
    assert ids(f"?dataset={a.dataset_id}&search=gam") == [str(c.pk)]
    assert ids("?ordering=name") == [str(a.pk), str(b.pk), str(c.pk)]
    assert ids("?ordering=-progress")[0] == str(c.pk) and ids("?ordering=-progress")[1] == str(a.pk)
    assert len(ids("?created_after=2000-01-01&created_before=2999-01-01")) == 3
    assert ids("?created_before=2000-01-01") == []
    page = eng.get("/api/v1/jobs/?page_size=2&ordering=name").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    bad = eng.get("/api/v1/jobs/?status=flying")
    assert bad.status_code == 400 and "flying" in bad.json()["error"]["message"]
    assert eng.get("/api/v1/jobs/?ordering=password").status_code == 400


def test_list_query_count_does_not_grow(client_as, organization, django_assert_num_queries):
    eng = client_as("eng", organization)
    make_running_job(organization, name="one", created_by=eng.user)
    with CaptureQueriesContext(connection) as one:
        assert eng.get("/api/v1/jobs/").json()["count"] == 1
    for i in range(12):
        make_running_job(organization, name=f"job {i}", created_by=eng.user, client=f"c{i}")
    with django_assert_num_queries(len(one)):
        assert eng.get("/api/v1/jobs/").json()["count"] == 13
    print(f"\njobs list: {len(one)} queries for 1 job and for 13")


def test_notes_cancel_stop_retry(client_as, organization):
    eng = client_as("eng", organization)
    job = make_running_job(organization, status="training")
    assert eng.patch(f"/api/v1/jobs/{job.pk}/", {"notes": "lr looks high"}, format="json").json()["notes"] == "lr looks high"
    stopped = eng.post(f"/api/v1/jobs/{job.pk}/stop/")
    assert stopped.status_code == 202 and stopped.json()["stop_requested"] is True
    cancelled = eng.post(f"/api/v1/jobs/{job.pk}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = eng.post(f"/api/v1/jobs/{job.pk}/cancel/")
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_job_state"
    retried = eng.post(f"/api/v1/jobs/{job.pk}/retry/", {}, format="json")
    assert retried.status_code == 201, retried.json()
    assert retried.json()["parent"] == str(job.pk) and retried.json()["status"] == "queued"
    no_fix = eng.post(f"/api/v1/jobs/{job.pk}/retry/", {"apply_fix": True}, format="json")
    assert no_fix.status_code == 409 and "no suggested fix" in no_fix.json()["error"]["message"]


def test_events_checkpoints_from_pod_events(client_as, organization, finished_job):
    eng = client_as("eng", organization)
    events = eng.get(f"/api/v1/jobs/{finished_job.pk}/events/").json()
    types = [e["type"] for e in events["results"]]
    assert "stage_changed" in types and "completed" in types and "transition" in types
    checkpoints = eng.get(f"/api/v1/jobs/{finished_job.pk}/checkpoints/").json()
    assert [c["step"] for c in checkpoints] == [2, 4, 6]
    detail = eng.get(f"/api/v1/jobs/{finished_job.pk}/").json()
    assert detail["status"] == "completed" and detail["progress"] == 1.0 and detail["adapter_uri"] == "file:///adapter"


def test_compare(client_as, organization, finished_job):
    eng = client_as("eng", organization)
    other = drive(make_running_job(organization, status="provisioning", name="second"), steps=4)
    body = eng.get(f"/api/v1/jobs/compare/?ids={finished_job.pk},{other.pk}").json()
    assert [j["name"] for j in body["jobs"]] == ["acme-finished-job", "second"]
    assert len(body["jobs"][0]["loss"]) == 6 and body["jobs"][0]["evaluation"]["adapted_perplexity"] == 7.0
    assert body["jobs"][0]["duration_s"] is not None


@pytest.mark.parametrize("role", [Role.VIEWER, Role.BUDGET_MANAGER])
def test_readers_cannot_run_jobs(client_as, organization, role):
    reader = client_as("reader", organization, role)
    dataset = make_dataset(organization)
    job = make_running_job(organization, status="training")
    assert reader.get("/api/v1/jobs/").status_code == 200
    assert reader.get(f"/api/v1/jobs/{job.pk}/metrics/series/").status_code == 200
    for method, url, body in [
        ("post", "/api/v1/jobs/", {"dataset": str(dataset.pk)}),
        ("post", f"/api/v1/jobs/{job.pk}/cancel/", {}),
        ("post", f"/api/v1/jobs/{job.pk}/stop/", {}),
        ("post", f"/api/v1/jobs/{job.pk}/retry/", {}),
        ("patch", f"/api/v1/jobs/{job.pk}/", {"notes": "x"}),
        ("post", "/api/v1/templates/", {"name": "t"}),
    ]:
        response = getattr(reader, method)(url, body, format="json")
        assert response.status_code == 403, (method, url, response.status_code)
        assert "engineers and admins" in response.json()["error"]["message"]
    job.refresh_from_db()
    assert job.status == states.TRAINING and not job.notes


def test_admin_role_runs_jobs(client_as, organization):
    admin = client_as("boss", organization, Role.ADMIN)
    job = make_running_job(organization, status="training")
    assert admin.post(f"/api/v1/jobs/{job.pk}/cancel/").status_code == 200


def test_unauthenticated_and_orgless(api_client, organization):
    from django.contrib.auth import get_user_model

    assert api_client.get("/api/v1/jobs/").status_code == 401
    api_client.force_authenticate(get_user_model().objects.create_user("loner", password="x"))
    response = api_client.get("/api/v1/jobs/")
    assert response.status_code == 403 and "no organization" in response.json()["error"]["message"]


def test_template_crud(client_as, organization):
    eng = client_as("eng", organization)
    created = eng.post("/api/v1/templates/", {"name": "lr-low", "overrides": {"learning_rate": 5e-5}}, format="json")
    assert created.status_code == 201
    tid = created.json()["id"]
    dup = eng.post("/api/v1/templates/", {"name": "lr-low"}, format="json")
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "template_name_taken"
    invalid = eng.post("/api/v1/templates/", {"name": "broken", "overrides": {"lora_r": 0}}, format="json")
    assert invalid.status_code == 400 and invalid.json()["error"]["code"] == "invalid_job_config"
    patched = eng.patch(f"/api/v1/templates/{tid}/", {"preset": "aggressive"}, format="json")
    assert patched.status_code == 200 and patched.json()["preset"] == "aggressive"
    assert eng.get("/api/v1/templates/").json()["count"] == 1
    assert eng.delete(f"/api/v1/templates/{tid}/").status_code == 204
    assert not JobTemplate.objects.exists()


def test_multi_gpu_job_reaches_the_pod_request_and_the_spec(client_as, organization):
    from training.services.jobs import job_spec_build
    from training.services.pods import _pod_request

    eng = client_as("eng", organization)
    dataset = make_dataset(organization)
    for bad in (0, 9, "two", 1.5):
        refused = eng.post("/api/v1/jobs/", {"dataset": str(dataset.pk), "gpu_count": bad}, format="json")
        assert refused.status_code == 400, (bad, refused.json())
        assert "gpu_count" in str(refused.json()), refused.json()
    assert TrainingJob.objects.count() == 0
    created = eng.post("/api/v1/jobs/", {"dataset": str(dataset.pk), "gpu_count": 4}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["gpu_count"] == 4
    job = TrainingJob.objects.get(pk=created.json()["id"])
    assert job_spec_build(job).gpu_count == 4
    assert _pod_request(job).gpu_count == 4  # RunPod's gpuCount
    retried = eng.post(f"/api/v1/jobs/{job.pk}/cancel/")
    assert retried.status_code == 200
    again = eng.post(f"/api/v1/jobs/{job.pk}/retry/", {}, format="json")
    assert again.status_code in (200, 201), again.json()
    assert TrainingJob.objects.get(pk=again.json()["id"]).gpu_count == 4
