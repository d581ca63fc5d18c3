"""Every operation of /api/schema/, called for real (as the owner of a dataset, a finished job with
events, metrics and checkpoints, a template, a budget, an artifact and a validation report), and
every response it gave validated against the schema: its status must be documented, and a JSON
body must match the documented shape (arrays vs pages, the error component, nullable fields).
Also each operation unauthenticated (401) and, where the path names an object, with an id that
does not exist (404). Zero violations."""
from __future__ import annotations

import re
import uuid

import pytest
from openapi_schema_validator import OAS30Validator

from accounts.models import Role
from tests.api.test_api_isolation import _acme_objects

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")
SKIP = {"/api/v1/pod-events/": "signed by a job's webhook secret (tests/jobs/test_jobs_webhooks.py)"}
# Methods that change or remove the objects the other calls use: called last.
LAST = ("delete",)


def _fill(path: str, objects: dict, missing: bool = False) -> str | None:
    head = path.removeprefix("/api/v1/").split("/{", 1)[0]
    values = {}
    for name in re.findall(r"{(\w+)}", path):
        if name == "fmt":
            values[name] = "csv"
        elif name == "token":
            return None  # a signed download token, tested in tests/artifacts
        elif name in ("pk", "id"):
            if head not in objects:
                pytest.fail(f"the conformance test does not know what object {path} names; teach _acme_objects")
            values[name] = (999999 if isinstance(objects[head], int) else uuid.uuid4()) if missing else objects[head]
        else:
            pytest.fail(f"cannot fill {{{name}}} in {path}")
    return re.sub(r"{(\w+)}", lambda m: str(values[m.group(1)]), path)


def _violations(schema: dict, operation: dict, method: str, path: str, response) -> list[str]:
    where = f"{method.upper()} {path} → {response.status_code}"
    documented = operation["responses"].get(str(response.status_code)) or operation["responses"].get("default")
    if documented is None:
        return [f"{where}: status not documented (documented: {sorted(operation['responses'])})"]
    content_type = response.get("Content-Type", "").split(";")[0]
    if content_type != "application/json":
        return []
    media = (documented.get("content") or {}).get("application/json")
    if media is None:
        return [f"{where}: JSON body, but no JSON documented"]
    validator = OAS30Validator({**media["schema"], "components": schema["components"]})
    return [f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in validator.iter_errors(response.json())]


@pytest.mark.slow
def test_every_operation_answers_as_documented(client_as, organization, make_user):
    from rest_framework.test import APIClient

    job, objects = _acme_objects(organization, make_user)
    owner = client_as("conformance-admin", organization, Role.ADMIN)
    schema = owner.get("/api/schema/?format=json").json()
    anonymous = APIClient()
    body = {"dataset": str(job.dataset_id), "job": str(job.pk), "ids": [str(job.pk)], "notes": "checked"}
    calls, violations, statuses = 0, [], set()
    operations = [(path, method, op) for path, ops in schema["paths"].items() for method, op in ops.items()
                  if method in METHODS and path not in SKIP]
    operations.sort(key=lambda o: o[1] in LAST)
    assert len(operations) >= 40, len(operations)
    for path, method, operation in operations:
        url = _fill(path, objects)
        if url is None:
            continue
        query = f"?ids={job.pk}" if path.endswith("/compare/") else ""
        for client, name in ((owner, "owner"), (anonymous, "anonymous")):
            if method == "get":
                response = client.get(url + query)
            else:
                response = getattr(client, method)(url, body if method != "delete" else None, format="json")
            calls += 1
            statuses.add(response.status_code)
            violations += [f"[{name}] {v}" for v in _violations(schema, operation, method, path, response)]
        if "{" in path and method == "get":
            response = owner.get(_fill(path, objects, missing=True))
            calls += 1
            statuses.add(response.status_code)
            violations += [f"[missing] {v}" for v in _violations(schema, operation, method, path, response)]
    print(f"\nschema conformance: {len(operations)} operations, {calls} responses, {len(violations)} violations")
    assert not violations, "\n".join(violations)
    assert {200, 201, 400, 401, 404} <= statuses, statuses
