"""Item 6 of issue 10: schemathesis (its CLI, pinned in the test extra) against /api/schema/ on a
live server, as an authenticated admin (token) whose organization owns a dataset, a finished job
with events, metrics and checkpoints, a running job, a template, a budget and an artifact.
Check: not_a_server_error over every operation."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest

from accounts.models import Role
from tests.reliability.figures import record, size

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EXAMPLES = size(2, 50)
PHASES = size(["--phases", "examples,fuzzing"], [])


def _schemathesis() -> str | None:
    found = Path(sys.executable).parent / "schemathesis"
    return str(found) if found.exists() else shutil.which("schemathesis")


@pytest.mark.skipif(_schemathesis() is None, reason="schemathesis is not installed (pip install schemathesis)")
def test_schemathesis_finds_no_server_error(live_server, organization, make_user, isolated_queue, tmp_path, settings):
    from rest_framework.authtoken.models import Token

    from artifacts.models import ModelArtifact
    from billing.services.budgets import budget_create
    from tests.api.conftest import drive
    from tests.jobs.factories import make_running_job
    from training.models import JobTemplate

    admin = make_user("fuzz-admin", organization, Role.ADMIN)
    token = Token.objects.create(user=admin).key
    finished = drive(make_running_job(organization, status="provisioning", created_by=admin, name="fuzz-finished"))
    drive(make_running_job(organization, status="provisioning", created_by=admin, name="fuzz-running"), until=8)
    JobTemplate.objects.create(organization=organization, name="fuzz-template", created_by=admin)
    budget_create(organization=organization, limit="1000")
    ModelArtifact.objects.create(organization=organization, job=finished, kind="metrics", name="m.csv",
                                 key=f"jobs/{organization.pk}/{finished.pk}/metrics.csv", uri="file:///x")
    settings.ALLOW_TEST_HOOKS = False
    junit = tmp_path / "junit.xml"
    t0 = time.monotonic()
    proc = subprocess.run(
        [_schemathesis(), "run", f"{live_server.url}/api/schema/", "--url", live_server.url,
         "-H", f"Authorization: Token {token}", "--checks", "not_a_server_error", "-n", str(EXAMPLES),
         *PHASES, "--seed", "20261128", "--workers", "1", "--continue-on-failure", "--report", "junit",
         "--report-junit-path", str(junit), "--request-timeout", "30", "--no-color"],
        capture_output=True, text=True, timeout=1800)
    elapsed = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    operations = failures = 0
    failed = []
    if junit.exists():
        for case in ElementTree.parse(junit).getroot().iter("testcase"):
            operations += 1
            if case.find("failure") is not None or case.find("error") is not None:
                failures += 1
                failed.append(case.get("name"))
    label = "6 API fuzzing"
    record(label, "schemathesis operations tested", operations, size=f"{EXAMPLES} examples/op")
    record(label, "operations with a server error (5xx)", failures, target="0")
    record(label, "wall time", f"{elapsed:.0f} s")
    assert operations > 20, out[-4000:]
    assert failures == 0, f"{failed}\n{out[-6000:]}"
