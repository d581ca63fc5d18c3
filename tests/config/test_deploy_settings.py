"""Production settings pass `manage.py check --deploy` with no warning; secrets come only from
the environment and never show in a repr."""
import os
import secrets
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def _run(env_extra, *argv):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "manage.py", *argv], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
def test_check_deploy_is_clean_in_production(tmp_path):
    proc = _run({"DEPLOYMENT": "production", "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
                 "DJANGO_ALLOWED_HOSTS": "brightrun.example.com", "BRIGHTRUN_VAR_DIR": str(tmp_path)},
                "check", "--deploy", "--fail-level", "WARNING")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no issues" in proc.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    proc = _run({"DEPLOYMENT": "production", "BRIGHTRUN_VAR_DIR": str(tmp_path)}, "check")
    assert proc.returncode != 0 and "DJANGO_SECRET_KEY must be set" in proc.stderr


def test_secrets_stay_out_of_repr():
    from gpu_worker.contracts import JobSpec
    from training.providers.base import PodRequest

    spec = JobSpec(job_id="j", attempt=1, base_model="m", train_uri="file:///t", val_uri=None, output_uri="file:///o",
                   webhook_secret="s3cr3t-webhook", hf_token="hf_s3cr3t")
    request = PodRequest(name="p", gpu_type_id="g", env={"BRIGHTRUN_JOB_SPEC": spec.to_env_value()})
    for text in (repr(spec), repr(request), str(spec)):
        assert "s3cr3t" not in text and spec.to_env_value() not in text
