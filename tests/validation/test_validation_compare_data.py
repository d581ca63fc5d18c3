"""Comparing two reports is refused (API: 409 validation_data_differs) or clearly flagged (page)
when the jobs were validated on different held-out conversations."""
import pytest
from django.test import Client

from accounts.models import Role
from tests.training.test_dataset_identity import _import, _part
from training.models import TrainingJob

pytestmark = pytest.mark.django_db


def _jobs(organization, real_file):
    a = _import(organization, _part(real_file, 0, 24), "24.json")
    b = _import(organization, real_file.read_bytes(), "72.json")
    return [TrainingJob.objects.create(organization=organization, dataset=ds, name=f"job-{i}", base_model="tiny",
                                       preset="balanced", hyperparameters={}, status="completed")
            for i, ds in enumerate((a, b, a))]


def test_api_refuses_a_comparison_on_different_validation_data(organization, real_file, client_as):
    jobs = _jobs(organization, real_file)
    viewer = client_as("viewer", organization, Role.VIEWER)
    refused = viewer.get(f"/api/v1/reports/compare/?a={jobs[0].pk}&b={jobs[1].pk}")
    assert refused.status_code == 409, refused.content
    error = refused.json()["error"]
    assert error["code"] == "validation_data_differs" and "different validation data" in error["message"]
    names = [d["dataset"] for d in error["detail"]["validation_data"]]
    assert names == ["24.json", "72.json"] or len(set(names)) == 2
    same = viewer.get(f"/api/v1/reports/compare/?a={jobs[0].pk}&b={jobs[2].pk}")
    assert same.status_code == 200 and same.json()["validation_data_differs"] is False
    assert same.json()["reports"][0]["validation_data"]["val_fingerprint"]


def test_page_flags_a_comparison_on_different_validation_data(organization, make_user, real_file):
    jobs = _jobs(organization, real_file)
    client = Client()
    client.force_login(make_user("eng", organization))
    page = client.get(f"/reports/compare/?a={jobs[0].pk}&b={jobs[1].pk}").content.decode()
    assert "data-validation-data-differs" in page and "Not comparable" in page
    same = client.get(f"/reports/compare/?a={jobs[0].pk}&b={jobs[2].pk}").content.decode()
    assert "Not comparable" not in same and "validation data" in same
