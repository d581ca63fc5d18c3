from __future__ import annotations

from decimal import Decimal

import pytest

from billing.errors import EstimateError
from billing.models import GpuType
from billing.services.catalog import catalog_refresh, gpu_rate, gpu_type_get
from tests.fakes.runpod_server import FakeRunPodServer


@pytest.fixture
def h100(db):
    return GpuType.objects.get(gpu_id="NVIDIA H100 80GB HBM3")


def test_the_migration_seeds_documented_prices(db):
    assert GpuType.objects.filter(source="seed").count() >= 12
    h100 = GpuType.objects.get(gpu_id="NVIDIA H100 80GB HBM3")
    assert h100.secure_price == Decimal("4.7600") and h100.memory_gb == 80


def test_rates_for_each_cloud_and_spot(h100):
    rate = lambda **kw: gpu_rate(gpu=h100, gpu_id=h100.gpu_id, **kw).per_hour  # noqa: E731
    assert rate(cloud_type="SECURE", spot=False) == Decimal("4.76")
    assert rate(cloud_type="SECURE", spot=True) == Decimal("2.69")
    assert rate(cloud_type="SECURE", spot=True, bid_per_gpu=Decimal("2.10")) == Decimal("2.10")
    community = gpu_rate(gpu=h100, gpu_id=h100.gpu_id, cloud_type="COMMUNITY", spot=False)
    assert community.per_hour == Decimal("4.76") and "using the secure price" in community.notes[0]
    assert rate(cloud_type="SECURE", spot=False, provider="local") == 0
    with pytest.raises(EstimateError):
        gpu_rate(gpu=None, gpu_id="NVIDIA Imaginary", cloud_type="SECURE", spot=False)


def test_a_seeded_gpu_is_known_even_if_its_row_was_deleted(db):
    GpuType.objects.filter(gpu_id="NVIDIA L40S").delete()
    row = gpu_type_get("NVIDIA L40S")
    assert row is not None and row.pk is None and row.secure_price == Decimal("1.40")


def test_refresh_without_a_key_changes_nothing(db, settings):
    settings.RUNPOD_API_KEY = None
    assert "RUNPOD_API_KEY" in catalog_refresh().skipped


def test_refresh_reads_runpods_price_query_through_the_sdk(db, settings, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # the SDK reads ~/.runpod/config.toml
    from training.providers import clear_provider_cache

    GpuType.objects.exclude(gpu_id__in=["NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"]).delete()
    with FakeRunPodServer(api_key="price-key") as server:
        settings.GPU_PROVIDER = "runpod"
        settings.RUNPOD_API_KEY = "price-key"
        settings.RUNPOD_API_BASE_URL = server.base_url
        clear_provider_cache()
        server.gpu_types["NVIDIA A100-SXM4-80GB"] = {
            "displayName": "A100 SXM", "memoryInGb": 80, "securePrice": 1.89, "communityPrice": 1.39,
            "secureSpotPrice": 0.99, "communitySpotPrice": 0.0, "minimumBidPrice": 0.9}
        # The first GPU asked (A100 SXM, by display name) meets a 500: recorded, the others go on.
        server.fail_next("http_500", operation="gpuTypes")
        first = catalog_refresh(gpu_ids=["NVIDIA RTX A6000"])
        second = catalog_refresh()
        clear_provider_cache()
        keys = {r.api_key for r in server.requests}
    assert list(first.failed) == ["NVIDIA A100-SXM4-80GB"] and "HTTP 500" in first.failed["NVIDIA A100-SXM4-80GB"]
    assert first.updated == ["NVIDIA H100 80GB HBM3"] and first.created == ["NVIDIA RTX A6000"]
    h100 = GpuType.objects.get(gpu_id="NVIDIA H100 80GB HBM3")
    assert h100.secure_price == Decimal("2.99") and h100.secure_spot_price == Decimal("1.75")
    assert h100.source == "runpod" and h100.prices_updated_at is not None
    assert GpuType.objects.get(gpu_id="NVIDIA RTX A6000").community_price == Decimal("0.49")
    assert not second.failed and "NVIDIA A100-SXM4-80GB" in second.updated
    a100 = GpuType.objects.get(gpu_id="NVIDIA A100-SXM4-80GB")
    assert a100.secure_price == Decimal("1.89") and a100.community_spot_price is None  # 0 = not offered
    assert keys == {"price-key"}
