"""Item 8 of issue 10 (beyond tests/config/test_deploy_settings.py, which runs check --deploy):
secrets come only from the environment, and no secret reaches the logs or a repr."""
from __future__ import annotations

import logging
import re

import pytest

from tests.conftest import REPO_ROOT
from tests.reliability.figures import record

SECRET_NAME = re.compile(r"(SECRET|PASSWORD|TOKEN|API_KEY|ACCESS_KEY|PRIVATE)", re.I)
# Literal defaults allowed for secret-looking names, and why.
ALLOWED = {
    "ARTIFACT_TOKEN_SALT": "a salt (namespace), not a secret: the key is SECRET_KEY",
}
# Shapes of real credentials anywhere in the control plane's code.
CREDENTIAL_SHAPES = re.compile(r"(AKIA[0-9A-Z]{16}|sk-[A-Za-z0-9]{20,}|hf_[A-Za-z0-9]{30,}|xox[bap]-[A-Za-z0-9-]{10,}|"
                               r"-----BEGIN [A-Z ]*PRIVATE KEY-----|rpa_[A-Za-z0-9]{20,})")


def test_secrets_only_from_the_environment():
    settings_dir = REPO_ROOT / "config" / "settings"
    literals = []
    for path in sorted(settings_dir.glob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = re.match(r"\s*([A-Z_][A-Z0-9_]*)\s*=\s*(.+)", line)
            if not m or not SECRET_NAME.search(m[1]) or m[1] in ALLOWED:
                continue
            value = m[2]
            # env_str("NAME") / env_str("NAME", "") are fine; a non-empty literal default is not.
            default = re.match(r'env_\w+\(\s*"[A-Z0-9_]+"\s*,\s*"([^"]+)"', value)
            if (default and default[1]) or re.match(r'\s*["\'][^"\']{6,}["\']', value):
                literals.append(f"{path.name}:{n}: {line.strip()}")
    shaped = []
    for app in ("config", "accounts", "training", "billing", "artifacts", "finetuning", "validation", "dashboard",
                "gpu_worker", "templates"):
        for path in (REPO_ROOT / app).rglob("*"):
            if path.is_file() and path.suffix in (".py", ".html", ".json", ".txt", ".md", ".yml", ".toml", ".js"):
                for hit in CREDENTIAL_SHAPES.findall(path.read_text(errors="replace")):
                    shaped.append(f"{path.relative_to(REPO_ROOT)}: {hit[:12]}…")
    record("8 deploy/secrets", "secret-named settings with a literal default (allowed: the salt)",
           len(literals), target="0")
    record("8 deploy/secrets", "credential-shaped strings in the code (AWS, OpenAI, HF, Slack, RunPod, PEM)",
           len(shaped), target="0")
    assert not literals, literals
    assert not shaped, shaped


KNOWN = {
    "runpod": "rpa_RUNPODSECRET0123456789abcdef",
    "hf": "hf_HFSECRET0123456789abcdefghijklmnopq",
    "s3": "S3SECRETKEY0123456789abcdefghij",
    "email": "EMAILPASSWORD-0123456789",
}


@pytest.mark.slow
@pytest.mark.django_db
def test_no_secret_in_logs_or_repr(organization, make_user, settings, caplog, isolated_queue, monkeypatch):
    from django.test import Client

    from finetuning.models import ApiKey
    from finetuning.services import api_key_issue
    from gpu_worker.contracts import PodEvent
    from tests.jobs.factories import make_dataset, pod_event, signed_post
    from training.models import TrainingJob
    from training.providers import clear_provider_cache, get_provider
    from training.providers.runpod import RunPodProvider
    from training.services.jobs import job_create, job_spec_build
    from training.services.pods import _pod_request, job_launch, pods_reconcile

    settings.RUNPOD_API_KEY = KNOWN["runpod"]
    settings.HF_TOKEN = KNOWN["hf"]
    settings.S3_SECRET_ACCESS_KEY = KNOWN["s3"]
    settings.EMAIL_HOST_PASSWORD = KNOWN["email"]
    settings.GPU_PROVIDER = "fake"
    clear_provider_cache()
    caplog.set_level(logging.DEBUG)
    secrets_seen: dict[str, str] = dict(KNOWN)

    # A job's path: create, launch (spec with the HF token and the webhook secret), pod events
    # (valid, forged, with a wrong secret), reconcile, a failure with a traceback.
    dataset = make_dataset(organization)
    job = job_create(organization=organization, dataset=dataset, provider="fake", base_model="tiny", start=False,
                     gpu_type="NVIDIA GeForce RTX 4090")
    job_launch(job_id=job.pk)
    job.refresh_from_db()
    secrets_seen["webhook"] = job.webhook_secret
    client = Client()
    signed_post(client, pod_event(job, 1, "stage_changed", data={"stage": "preprocessing"}), job.webhook_secret)
    signed_post(client, pod_event(job, 2, "log"), "wrong-secret")
    signed_post(client, pod_event(job, 3, "log"), job.webhook_secret, timestamp=0)
    pods_reconcile()
    # The OpenAI-compatible API with a real key, and with a wrong one.
    user = make_user("keyholder", organization)
    api_key, raw = api_key_issue(user=user, name="ci")
    secrets_seen["api_key"] = raw
    Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/v1/fine_tuning/jobs")
    Client(HTTP_AUTHORIZATION=f"Bearer {raw}x").get("/v1/fine_tuning/jobs")
    # A RunPod call that fails (nothing listens there): its error is logged by whoever catches it.
    runpod = RunPodProvider(api_key=KNOWN["runpod"], api_base_url="http://127.0.0.1:9", timeout_s=1)
    try:
        runpod.list("brightrun-")
    except Exception as exc:  # noqa: BLE001 - the message is what we check
        logging.getLogger("test").error("runpod failed: %s", exc)

    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    in_logs = sorted(name for name, value in secrets_seen.items() if value and value in logged)

    job = TrainingJob.objects.get(pk=job.pk)
    spec = job_spec_build(job)
    texts = {
        "JobSpec": repr(spec) + str(spec),
        "PodRequest": repr(_pod_request(job)),
        "PodEvent": repr(PodEvent.from_dict(pod_event(job, 9, "log").to_dict())),
        "TrainingJob": repr(job) + str(job),
        "ApiKey": repr(api_key) + str(api_key) + repr(ApiKey.objects.get(pk=api_key.pk)),
        "RunPodProvider": repr(runpod) + str(runpod) + repr(get_provider("fake")),
    }
    in_repr = sorted(f"{where}: {name}" for where, text in texts.items() for name, value in secrets_seen.items()
                     if value and (value in text or (name == "webhook" and spec.to_env_value() in text)))
    record("8 deploy/secrets", f"known secrets ({', '.join(sorted(secrets_seen))}) in {len(caplog.records)} "
           "log records of a job path", len(in_logs), target="0")
    record("8 deploy/secrets", f"secrets in repr/str of {', '.join(texts)}", len(in_repr), target="0")
    assert not in_logs, in_logs
    assert not in_repr, in_repr
