"""Cross-organization matrix: every API endpoint and every method, as an admin of another
organization, never answers 2xx about this organization's data.

The endpoints come from the URL resolver, not a hand list: a new endpoint is covered the day it
lands, and one whose URL names an object kind this test cannot make fails until it is taught
(OBJECTS below).
"""
from __future__ import annotations

import json
import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.models import Role
from tests.api.conftest import drive
from tests.jobs.factories import make_running_job

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")
SECRET = "acme-secret"
# Routes that are not about an organization's data, and why.
NOT_ORG_DATA = {
    "api/v1/pod-events/": "signed by the job's per-attempt secret, not a user (tests/jobs/test_jobs_webhooks.py)",
}


def api_routes() -> list[tuple[str, URLPattern]]:
    out = []

    def walk(patterns, prefix):
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, route)
            elif route.startswith("api/"):
                out.append((route, p))

    walk(get_resolver().url_patterns, "")
    return out


def _acme_objects(organization, make_user):
    """One of each kind of object, owned by `organization`, every name containing SECRET."""
    from training.models import Dataset, JobTemplate

    owner = make_user("acme-owner", organization, Role.ADMIN)
    job = drive(make_running_job(organization, status="provisioning", name=f"{SECRET}-job", client=f"{SECRET}-client",
                                 created_by=owner))
    Dataset.objects.filter(pk=job.dataset_id).update(name=f"{SECRET}-dataset")
    template = JobTemplate.objects.create(organization=organization, name=f"{SECRET}-template", created_by=owner)
    objects = {"jobs": job.pk, "billing/jobs": job.pk, "datasets": job.dataset_id, "templates": template.pk}
    from billing.services.budgets import budget_create

    objects["budgets"] = budget_create(organization=organization, limit="1000", client=f"{SECRET}-client").pk
    from artifacts.models import ModelArtifact

    objects["artifacts"] = ModelArtifact.objects.create(
        organization=organization, job=job, client=job.client, kind="metrics", name=f"{SECRET}-metrics.csv",
        key=f"jobs/{organization.pk}/{job.pk}/metrics.csv", uri="file:///x").pk
    from validation.models import ValidationRun

    # A finished validation run, so GET jobs/<pk>/validation/ has a report to (not) show.
    ValidationRun.objects.create(job=job, organization=organization, status="completed", verdict="incomplete",
                                 summary={"verdict": "incomplete"}, examples=[{"client_message": f"{SECRET}-example"}])
    return job, objects


# kwarg values that are not objects
PLAIN_KWARGS = {"fmt": "csv", "token": "not-a-token"}


def _url(route: str, objects: dict) -> str:
    head = route.split("<", 1)[0].removeprefix("api/v1/").strip("/")
    names = re.findall(r"<(?:\w+:)?(\w+)>", route)
    values = {}
    for name in names:
        if name in PLAIN_KWARGS:
            values[name] = PLAIN_KWARGS[name]
        elif name == "pk":
            if head not in objects:
                pytest.fail(f"the isolation matrix does not know what object {route} names; add it to _acme_objects")
            values[name] = objects[head]
        else:
            pytest.fail(f"the isolation matrix cannot fill <{name}> in {route}; add it to PLAIN_KWARGS or OBJECTS")
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), route)


def _body(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")


@pytest.mark.slow
def test_no_2xx_for_another_organization(client_as, organization, other_organization, make_user):
    job, objects = _acme_objects(organization, make_user)
    before = {"status": job.status, "notes": job.notes}
    intruder = client_as("globex-admin", other_organization, Role.ADMIN)
    references = {"dataset": str(job.dataset_id), "job": str(job.pk), "template": objects["templates"],
                  "ids": [str(job.pk)], "notes": "pwned", "name": "pwned", "apply_fix": False}
    query = f"?job={job.pk}&ids={job.pk}&dataset={job.dataset_id}"
    leaks, checked = [], 0
    routes = api_routes()
    assert len(routes) >= 20, [r for r, _ in routes]
    for route, _pattern in routes:
        if route in NOT_ORG_DATA:
            continue
        url = _url(route, objects)
        names_object = "<" in route
        for method in METHODS:
            if method == "get":
                response = intruder.get(url + query)
            else:
                response = getattr(intruder, method)(url, references, format="json")
            checked += 1
            ok = 200 <= response.status_code < 300
            if names_object and ok:
                leaks.append(f"{method.upper()} {route} → {response.status_code}")
            elif ok:
                body = _body(response)
                if SECRET in body or str(job.pk) in body or str(job.dataset_id) in body:
                    leaks.append(f"{method.upper()} {route} → {response.status_code} shows {SECRET} data")
    assert not leaks, "another organization's user got through:\n" + "\n".join(leaks)
    job.refresh_from_db()
    assert {"status": job.status, "notes": job.notes} == before
    from training.models import JobTemplate

    assert JobTemplate.objects.filter(pk=objects["templates"]).exists()
    print(f"\nisolation matrix: {len(routes)} routes, {checked} requests, 0 leaks")


def test_matrix_finds_every_training_route():
    """The resolver walk sees the routes this app defines (guards the walk itself)."""
    routes = {r for r, _ in api_routes()}
    for expected in ("api/v1/jobs/<uuid:pk>/cancel/", "api/v1/jobs/<uuid:pk>/metrics/series/",
                     "api/v1/templates/<int:pk>/", "api/v1/datasets/<uuid:pk>/", "api/v1/ws-tickets/"):
        assert expected in routes


@pytest.mark.slow
def test_same_org_reaches_the_same_urls(client_as, organization, make_user):
    """The control: the matrix's URLs work for the owner's organization (so a 404 above means
    isolation, not a malformed URL)."""
    job, objects = _acme_objects(organization, make_user)
    member = client_as("acme-eng", organization, Role.ENGINEER)
    for route, _ in api_routes():
        if "<" not in route or route in NOT_ORG_DATA or "token" in route:
            continue
        response = member.get(_url(route, objects))
        assert response.status_code in (200, 405), (route, response.status_code, json.dumps(response.json())[:300]
                                                    if response.get("Content-Type", "").startswith("application/json")
                                                    else "")
