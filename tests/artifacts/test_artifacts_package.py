"""The deployment package, end to end: a tiny-model job with a really trained adapter, the
one-click API, the zip unpacked in a fresh folder, its checksums verified and its inference.py run
on the CPU with the tiny base model."""
from __future__ import annotations

import hashlib
import importlib.metadata
import io
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from accounts.models import Role
from artifacts.package.builder import PINNED_REQUIREMENTS, curve_summary
from artifacts.services import job_artifacts_register, report_artifact_store
from tests.artifacts.artifacts_support import completed_job

pytestmark = pytest.mark.django_db


@pytest.mark.slow
def test_package_builds_unzips_verifies_and_runs_inference(organization, make_user, api_client, tiny_adapter,
                                                           tmp_path, capsys):
    base, adapter_dir = tiny_adapter
    job = completed_job(organization, adapter_dir=adapter_dir, base_model=str(base), client="Acme Support")
    job_artifacts_register(job_id=job.pk)
    report_artifact_store(job_id=job.pk, report_json={
        "summary": "Judged on 40 held-out conversations.",
        "metrics": [{"name": "empathy (1-5)", "value": 4.1, "ci_low": 3.8, "ci_high": 4.4, "n": 40}]},
        html="<h1>report</h1>")
    api_client.force_authenticate(make_user("eng", organization, role=Role.ENGINEER))

    started = time.perf_counter()
    built = api_client.post(f"/api/v1/jobs/{job.pk}/package/", format="json")
    build_s = time.perf_counter() - started
    assert built.status_code == 201, built.content
    package = built.json()
    assert package["kind"] == "package" and package["name"] == "acme-support-v1.zip"

    link = api_client.get(f"/api/v1/artifacts/{package['id']}/download/").json()["url"]
    api_client.force_authenticate(None)
    data = b"".join(api_client.get(link).streaming_content)
    assert hashlib.sha256(data).hexdigest() == package["sha256"] and len(data) == package["bytes"]

    unpacked = tmp_path / "fresh"
    zipfile.ZipFile(io.BytesIO(data)).extractall(unpacked)
    root = unpacked / "acme-support-v1"
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    for expected in ("adapter/adapter_model.safetensors", "adapter/adapter_config.json", "tokenizer/tokenizer.json",
                     "tokenizer/tokenizer_config.json", "inference.py", "README.md", "MODEL_CARD.md",
                     "requirements.txt", "SHA256SUMS"):
        assert expected in names, names
    assert not any(n.endswith("manifest.json") for n in names)

    # Every file is listed in SHA256SUMS with its real digest (`sha256sum -c` format).
    sums = dict(reversed(line.split("  ", 1)) for line in (root / "SHA256SUMS").read_text().splitlines())
    assert sorted(sums) == [n for n in names if n != "SHA256SUMS"]
    for rel, digest in sums.items():
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest, rel
    assert (root / "adapter/adapter_model.safetensors").read_bytes() == (adapter_dir / "adapter_model.safetensors").read_bytes()

    card = (root / "MODEL_CARD.md").read_text()
    for fragment in (str(base), "## Dataset", "conversations", "## Hyperparameters", "lora_r", "## Training curve",
                     "lowest loss", "## Validation", "812.4", "640.2", "empathy (1-5)", "[3.8, 4.4]",
                     "## Intended use and limitations"):
        assert fragment in card, fragment
    readme = (root / "README.md").read_text()
    assert "--enable-lora" in readme and "--lora-modules acme-support-v1=./adapter" in readme
    assert "--max-lora-rank 8" in readme  # rank 4 rounds up to vLLM's smallest accepted value
    reqs = (root / "requirements.txt").read_text()
    assert "peft==" in reqs and "transformers==" in reqs and "torch==" in reqs

    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "inference.py", "--base-model", str(base), "--device", "cpu", "--max-new-tokens", "12",
         "--temperature", "0", "--prompt", "I feel overwhelmed by my new job."],
        cwd=root, capture_output=True, text=True, timeout=240,
    )
    infer_s = time.perf_counter() - started
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip(), f"no generated text; stderr:\n{run.stderr[-2000:]}"
    with capsys.disabled():
        print(f"\n[package] build via API {build_s:.2f} s, zip {len(data):,} bytes, {len(names)} files; "
              f"inference.py {infer_s:.1f} s -> {run.stdout.strip()[:60]!r}")


def _locked_versions() -> dict[str, str]:
    """constraints.txt (the lock `make venv` installs from), names normalized the way pip does."""
    lock = Path(__file__).resolve().parents[2] / "constraints.txt"
    versions = {}
    for line in lock.read_text().splitlines():
        if line and not line.startswith("#") and "==" in line:
            name, version = line.split("==", 1)
            versions[name.strip().lower().replace("_", "-")] = version.strip()
    return versions


def test_package_pins_the_pod_image_and_the_lock_agree():
    """The deployment package's requirements.txt, the pod image and the lock name one version each."""
    locked = _locked_versions()
    dockerfile = (Path(__file__).resolve().parents[2] / "gpu_worker" / "Dockerfile").read_text()
    for name, version in PINNED_REQUIREMENTS.items():
        assert locked.get(name) == version, f"{name}: lock has {locked.get(name)}, package pins {version}"
        if name != "jinja2":  # not part of the pod image
            assert f"{name}=={version}" in dockerfile, f"gpu_worker/Dockerfile does not pin {name}=={version}"


def test_package_pins_are_the_tested_versions():
    """requirements.txt pins what this environment runs inference.py with."""
    for name, version in PINNED_REQUIREMENTS.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        assert installed.split("+")[0] == version, f"{name}: installed {installed}, pinned {version}"


def test_curve_summary():
    points = [{"step": s, "loss": 4.0 - s * 0.1, "tokens_per_s": 100.0} for s in range(1, 21)]
    summary = curve_summary(points)
    assert summary["steps"] == 20 and summary["min_loss"] == 2.0 and summary["min_loss_step"] == 20
    assert summary["marks"]["0%"] == {"step": 1, "loss": 3.9}
    assert summary["relative_change"] < 0 and len(summary["sparkline"]) == 20
    assert curve_summary([]) == {"steps": 0}


def test_package_needs_a_completed_job(organization, make_user, api_client):
    from tests.jobs.factories import make_running_job

    job = make_running_job(organization, status="training")
    api_client.force_authenticate(make_user("eng2", organization))
    resp = api_client.post(f"/api/v1/jobs/{job.pk}/package/")
    assert resp.status_code == 409
    assert "completed job" in resp.json()["error"]["message"]
