"""The new-job form: one field per hyperparameter, the documented ranges agree with the API's
rules, and the API's messages name their field (the form puts each under its input)."""
import dataclasses
import json

import pytest
from django.test import Client

from dashboard.hyperparameter_fields import hyperparameter_fields
from gpu_worker.contracts import Hyperparameters
from gpu_worker.presets import ConfigError, resolve_hyperparameters
from tests.jobs.factories import make_dataset
from training.models import JobTemplate

pytestmark = pytest.mark.django_db


def _errors(name, value):
    try:
        resolve_hyperparameters("balanced", {name: value})
    except ConfigError as exc:
        return exc.errors
    return []


def test_every_hyperparameter_has_exactly_one_field():
    names = [f["name"] for f in hyperparameter_fields()]
    assert sorted(names) == sorted(f.name for f in dataclasses.fields(Hyperparameters))
    assert len(names) == len(set(names))
    assert all(f["help"] and f["label"] for f in hyperparameter_fields())


@pytest.mark.parametrize("field", [f for f in hyperparameter_fields() if f["min"] is not None], ids=lambda f: f["name"])
def test_documented_range_agrees_with_the_api_rules(field):
    """The range the form prints is not a second rule set: its ends are accepted by the same
    validation the API runs, and a value beyond an end is refused with a message naming the field."""
    integer = field["kind"] == "int"
    low, high = field["min"], field["max"]
    for inside in (low, high) if high is not None else (low,):
        assert _errors(field["name"], int(inside) if integer else float(inside)) == [], (field["name"], inside)
    below = low - 1 if integer else low - max(abs(low), 1e-3) * 1.01
    # learning_rate and max_grad_norm are open at 0: the printed lower end is the smallest usual value.
    if field["name"] not in ("learning_rate", "max_grad_norm", "num_epochs"):
        errors = _errors(field["name"], int(below) if integer else below)
        assert errors and errors[0].startswith(field["name"] + " "), (field["name"], errors)
    if high is not None:
        above = high + 1 if integer else high * 1.5 + 1
        errors = _errors(field["name"], int(above) if integer else above)
        assert errors and errors[0].startswith(field["name"] + " "), (field["name"], errors)


def test_form_renders_fields_with_units_ranges_and_advanced_folded(organization, make_user):
    client = Client()
    client.force_login(make_user("eng", organization))
    make_dataset(organization)
    page = client.get("/jobs/new/").content.decode()
    for f in hyperparameter_fields():
        assert f'<label for="hp-{f["name"]}">{f["label"]}' in page, f["name"]
        assert f'id="hp-{f["name"]}-error"' in page
    basic, advanced = page.split('<details id="hp-advanced">', 1)
    assert 'id="hp-learning_rate"' in basic and 'id="hp-micro_batch_size"' not in basic
    assert 'id="hp-micro_batch_size"' in advanced and 'id="f-overrides"' in advanced
    assert "Range 1 – 1024." in page and "(tokens)" in page
    assert 'id="btn-save-template"' in page


def test_estimate_errors_name_their_field_for_the_inline_messages(organization, make_user):
    """The form's inline messages are the estimate API's validation errors, one sentence per
    problem, each starting with the hyperparameter it is about."""
    client = Client()
    client.force_login(make_user("eng", organization))
    dataset = make_dataset(organization)
    body = {"dataset": str(dataset.pk), "preset": "balanced",
            "overrides": {"learning_rate": 5, "lora_r": 0, "lr_scheduler": "zigzag"}}
    response = client.post("/api/v1/estimates/", json.dumps(body), content_type="application/json")
    assert response.status_code == 400, response.content
    errors = response.json()["error"]["detail"]["errors"]
    assert {e.split(" ", 1)[0] for e in errors} == {"learning_rate", "lora_r", "lr_scheduler"}
    ok = client.post("/api/v1/estimates/", json.dumps({**body, "overrides": {"learning_rate": 1e-4}}),
                     content_type="application/json")
    assert ok.status_code == 200, ok.content


def test_template_saved_from_the_form_fields_is_offered_again(organization, make_user):
    client = Client()
    client.force_login(make_user("eng", organization))
    response = client.post("/api/v1/templates/", json.dumps(
        {"name": "short-run", "preset": "conservative", "overrides": {"num_epochs": 1.0, "lora_r": 4},
         "base_model": "", "gpu_type": "", "cloud_type": "SECURE", "spot": False}), content_type="application/json")
    assert response.status_code == 201, response.content
    assert JobTemplate.objects.get(name="short-run").overrides == {"num_epochs": 1.0, "lora_r": 4}
    page = client.get("/jobs/new/").content.decode()
    assert ">short-run</option>" in page and '"lora_r": 4' in page
