"""The recording fake, the fallback helper, and choosing a provider from settings."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from training.providers import clear_provider_cache, get_provider, pod_name
from training.providers.base import (
    POD_RUNNING,
    POD_TERMINATED,
    NoCapacityError,
    PodRequest,
    ProviderError,
    ProviderUnavailableError,
)
from training.providers.fake import FakeProvider
from training.providers.local import LocalProvider
from training.providers.runpod import RunPodProvider


def req(name="brightrun-j-1", **kw) -> PodRequest:
    return PodRequest(name=name, gpu_type_id=kw.pop("gpu_type_id", "NVIDIA A40"), env={}, **kw)


def test_fake_records_calls_and_launches_once_per_name():
    fake = FakeProvider()
    pod = fake.launch(req())
    assert fake.launch(req()).pod_id == pod.pod_id
    assert fake.status(pod.pod_id).state == POD_RUNNING
    assert [p.name for p in fake.list("brightrun-")] == ["brightrun-j-1"]
    assert fake.terminate(pod.pod_id) is True
    assert fake.status(pod.pod_id) is None
    assert fake.methods_called() == ["launch", "launch", "status", "list", "terminate", "status"]
    assert fake.requests[pod.pod_id].gpu_type_id == "NVIDIA A40"


def test_fake_failures_and_interruption():
    fake = FakeProvider()
    fake.fail_next("launch", ProviderUnavailableError("RunPod is down", suggestion="wait"), times=2)
    for _ in range(2):
        with pytest.raises(ProviderUnavailableError):
            fake.launch(req())
    pod = fake.launch(req())
    fake.interrupt(pod.pod_id)
    status = fake.status(pod.pod_id)
    assert (status.state, status.interrupted, status.exit_code) == (POD_TERMINATED, True, 75)
    assert fake.find_by_name("brightrun-j-1") is not None  # still there until terminated


def test_launch_with_fallback_stops_at_the_first_success_and_on_other_errors():
    fake = FakeProvider()
    fake.fail_next("launch", NoCapacityError("no A40", suggestion="try another"))
    pod, used = fake.launch_with_fallback(req(), [{"gpu_type_id": "NVIDIA RTX A6000"}, {"cloud_type": "COMMUNITY"}])
    assert used.gpu_type_id == "NVIDIA RTX A6000" and pod.gpu_type_id == "NVIDIA RTX A6000"

    fake.fail_next("launch", ProviderError("bad image", suggestion="fix it"))
    with pytest.raises(ProviderError, match="bad image"):
        fake.launch_with_fallback(req("brightrun-k-1"), [{"gpu_type_id": "NVIDIA RTX A6000"}])
    assert len(fake.methods_called()) == 3


def settings(**values) -> SimpleNamespace:
    return SimpleNamespace(**values)


def test_get_provider_builds_each_kind_from_settings(tmp_path):
    clear_provider_cache()
    local = get_provider(settings=settings(GPU_PROVIDER="local", LOCAL_PODS_DIR=str(tmp_path)))
    assert isinstance(local, LocalProvider) and local.pods_dir == tmp_path
    assert local.command == [sys.executable, "-m", "gpu_worker", "run"]

    runpod = get_provider(settings=settings(GPU_PROVIDER="runpod", RUNPOD_API_KEY="secret-key-xyz",
                                            RUNPOD_API_BASE_URL="http://127.0.0.1:1/", RUNPOD_IMAGE="img"))
    assert isinstance(runpod, RunPodProvider)
    assert (runpod.api_key, runpod.api_base_url, runpod.image) == ("secret-key-xyz", "http://127.0.0.1:1", "img")
    assert "secret-key-xyz" not in repr(runpod)

    assert isinstance(get_provider(settings=settings(GPU_PROVIDER="fake")), FakeProvider)
    # `name` wins over the setting (manage.py train --provider local).
    assert isinstance(get_provider("fake", settings=settings(GPU_PROVIDER="runpod")), FakeProvider)


def test_get_provider_caches_per_configuration(tmp_path):
    clear_provider_cache()
    one = settings(GPU_PROVIDER="local", LOCAL_PODS_DIR=str(tmp_path / "a"), LOCAL_WORKER_COMMAND=["x"])
    assert get_provider(settings=one) is get_provider(settings=one)
    other = settings(GPU_PROVIDER="local", LOCAL_PODS_DIR=str(tmp_path / "b"), LOCAL_WORKER_COMMAND=["x"])
    assert get_provider(settings=other) is not get_provider(settings=one)
    fake = get_provider(settings=settings(GPU_PROVIDER="fake"))
    fake.launch(req())
    assert get_provider(settings=settings(GPU_PROVIDER="fake")).methods_called() == ["launch"]


def test_get_provider_refuses_unknown_names():
    with pytest.raises(ProviderError) as info:
        get_provider(settings=settings(GPU_PROVIDER="aws"))
    assert "local, runpod, fake" in info.value.suggestion


def test_pod_names():
    assert pod_name("abc", 2, settings=settings()) == "brightrun-abc-2"
    assert pod_name("abc", 1, settings=settings(POD_NAME_PREFIX="staging")) == "staging-abc-1"


def test_get_provider_reads_django_settings(tmp_path):
    from django.conf import settings as django_settings

    if not django_settings.configured:
        pytest.skip("Django settings are not configured (run without -p no:django)")
    from django.test import override_settings

    clear_provider_cache()
    with override_settings(GPU_PROVIDER="local", LOCAL_PODS_DIR=str(tmp_path), LOCAL_WORKER_COMMAND=["w"]):
        provider = get_provider()
        assert isinstance(provider, LocalProvider) and provider.command == ["w"]
    with override_settings(GPU_PROVIDER="fake"):
        assert isinstance(get_provider(), FakeProvider)
