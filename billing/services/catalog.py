"""The GPU price catalog: the rate a pod costs, and refreshing prices from RunPod."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.errors import EstimateError, PriceRefreshError
from billing.models import GpuType
from billing.money import rate_text, to_decimal
from billing.tables import seed_gpu

logger = logging.getLogger(__name__)

ZERO_RATE = Decimal("0")


def local_rate() -> Decimal:
    """$/h of a local pod (LOCAL_POD_RATE_PER_HOUR; 0: free)."""
    return to_decimal(getattr(settings, "LOCAL_POD_RATE_PER_HOUR", 0) or 0)


def free_providers() -> set[str]:
    """Providers that rent nothing (the local subprocess runs on this machine), unless local pods
    are priced (LOCAL_POD_RATE_PER_HOUR)."""
    free = set(getattr(settings, "BILLING_FREE_PROVIDERS", ["local"]))
    if local_rate() > 0:
        free.discard("local")
    return free


def gpu_type_get(gpu_id: str) -> GpuType | None:
    """The catalog row; if the table has no such row, an unsaved row from the documented seed."""
    row = GpuType.objects.filter(gpu_id=gpu_id).first()
    if row is not None:
        return row
    seed = seed_gpu(gpu_id)
    if seed is None:
        return None
    return GpuType(**{k: (to_decimal(v) if k.endswith("price") or k == "relative_speed" else v) for k, v in seed.items()})


@dataclass(frozen=True)
class Rate:
    per_hour: Decimal
    notes: tuple[str, ...] = field(default_factory=tuple)


def gpu_rate(*, gpu: GpuType | None, gpu_id: str, cloud_type: str, spot: bool, bid_per_gpu=None,
             provider: str = "runpod") -> Rate:
    """$/h of one pod. Spot pods pay their bid when one is set, else the catalog's spot price.
    A price the catalog lacks falls back to the secure on-demand price, the highest, and says so."""
    if provider in free_providers():
        return Rate(ZERO_RATE, (f"provider {provider!r} runs on this machine: no GPU is rented ($0/h)",))
    if provider == "local":
        rate = local_rate()
        return Rate(rate, (f"local pod priced at {rate_text(rate)} (LOCAL_POD_RATE_PER_HOUR)",))
    if gpu is None:
        raise EstimateError(
            f"GPU type {gpu_id!r} has no price in the catalog",
            detail={"gpu_type": gpu_id},
            code="unknown_gpu_price",
        )
    cloud = (cloud_type or "SECURE").upper()
    notes: list[str] = []
    if spot and bid_per_gpu:
        rate = to_decimal(bid_per_gpu)
        notes.append(f"spot pod at its bid of {rate_text(rate)}")
        return Rate(rate, tuple(notes))
    if spot:
        primary = gpu.community_spot_price if cloud == "COMMUNITY" else gpu.secure_spot_price
        other = gpu.secure_spot_price if cloud == "COMMUNITY" else gpu.community_spot_price
        if primary is not None:
            return Rate(to_decimal(primary), (f"{gpu.display_name} {cloud.lower()} spot {rate_text(primary)}",))
        if other is not None:
            fallback_cloud = "secure" if cloud == "COMMUNITY" else "community"
            notes.append(f"no {cloud.lower()} spot price for {gpu.display_name}; using the {fallback_cloud} "
                         f"spot price {rate_text(other)}")
            return Rate(to_decimal(other), tuple(notes))
        notes.append(f"no spot price for {gpu.display_name}; using the on-demand price (an upper bound)")
    primary = gpu.community_price if cloud == "COMMUNITY" else gpu.secure_price
    if primary is not None:
        notes.append(f"{gpu.display_name} {cloud.lower()} on-demand {rate_text(primary)}")
        return Rate(to_decimal(primary), tuple(notes))
    for label, price in (("secure", gpu.secure_price), ("community", gpu.community_price)):
        if price is not None:
            notes.append(f"no {cloud.lower()} price for {gpu.display_name}; using the {label} price {rate_text(price)}")
            return Rate(to_decimal(price), tuple(notes))
    raise EstimateError(f"GPU type {gpu.display_name} has no price in the catalog; set one in the admin "
                        "(Billing → GPU types) or run `manage.py billing_catalog_refresh`",
                        detail={"gpu_type": gpu_id}, code="unknown_gpu_price")


@dataclass(frozen=True)
class RefreshResult:
    updated: list[str]
    created: list[str]
    failed: dict[str, str]
    skipped: str = ""


def _price(value) -> Decimal | None:
    if value is None or value == "":
        return None
    price = to_decimal(value)
    return price if price > 0 else None


def catalog_refresh(*, gpu_ids: list[str] | None = None, provider=None) -> RefreshResult:
    """Read RunPod's prices for every GPU type in the catalog (and `gpu_ids`, added if new)
    through the runpod SDK's GPU query. Without RUNPOD_API_KEY nothing happens (skipped says why).
    A price RunPod reports as 0 or null (not offered there) is left blank."""
    if provider is None:
        if not settings.RUNPOD_API_KEY:
            return RefreshResult([], [], {}, skipped="RUNPOD_API_KEY is not set; prices stay as they are")
        from training.providers import get_provider  # noqa: PLC0415

        provider = get_provider("runpod")
    from training.providers import ProviderError  # noqa: PLC0415

    ids = list(GpuType.objects.values_list("gpu_id", flat=True))
    ids += [g for g in (gpu_ids or []) if g not in ids]
    updated, created, failed = [], [], {}
    for gpu_id in ids:
        try:
            info = provider.gpu_type(gpu_id)
        except ProviderError as exc:
            failed[gpu_id] = str(exc)
            logger.warning("price refresh of %s failed: %s", gpu_id, exc)
            continue
        was_created = _store_prices(gpu_id, info)
        (created if was_created else updated).append(gpu_id)
    if failed and not (updated or created):
        raise PriceRefreshError(f"RunPod's GPU price query failed for every GPU type: {next(iter(failed.values()))}",
                                detail={"failed": failed})
    return RefreshResult(updated, created, failed)


def _store_prices(gpu_id: str, info: dict) -> bool:
    """Write RunPod's prices of one GPU type into the catalog; True when the row is new."""
    values = {
        "display_name": info.get("displayName") or gpu_id,
        "memory_gb": int(info.get("memoryInGb") or 0),
        "secure_price": _price(info.get("securePrice")),
        "community_price": _price(info.get("communityPrice")),
        "secure_spot_price": _price(info.get("secureSpotPrice")),
        "community_spot_price": _price(info.get("communitySpotPrice")),
        "source": GpuType.SOURCE_RUNPOD,
        "prices_updated_at": timezone.now(),
    }
    with transaction.atomic():
        row, was_created = GpuType.objects.select_for_update().get_or_create(gpu_id=gpu_id, defaults=values)
        if not was_created:
            for key, value in values.items():
                setattr(row, key, value)
            row.save()
    return was_created


@dataclass(frozen=True)
class SpotBid:
    bid: Decimal | None          # what the pod will bid ($/h per GPU); None: no spot price known
    minimum: Decimal | None      # RunPod's lowestPrice.minimumBidPrice, when read
    source: str                  # "runpod" (read now) | "catalog"
    note: str = ""


def spot_bid_for(*, gpu_id: str, cloud_type: str, provider: str, refresh: bool = True) -> SpotBid:
    """The default bid of a spot pod: the current spot price of the GPU type on its cloud, read
    from RunPod's gpuTypes (and stored in the catalog) when a key is set and `refresh`, else the
    catalog's. `minimum` is RunPod's minimum bid when it was read."""
    cloud = (cloud_type or "SECURE").upper()
    minimum = None
    source = "catalog"
    if refresh and provider == "runpod" and getattr(settings, "RUNPOD_API_KEY", None):
        from training.providers import ProviderError, get_provider  # noqa: PLC0415

        try:
            info = get_provider("runpod").gpu_type(gpu_id)
        except ProviderError as exc:
            logger.warning("spot price of %s not refreshed (%s); using the catalog's", gpu_id, exc)
        else:
            if info:
                _store_prices(gpu_id, info)
                minimum = _price((info.get("lowestPrice") or {}).get("minimumBidPrice"))
                source = "runpod"
    gpu = gpu_type_get(gpu_id)
    price = None
    if gpu is not None:
        price = gpu.community_spot_price if cloud == "COMMUNITY" else gpu.secure_spot_price
    bid = to_decimal(price) if price is not None else None
    if bid is not None and minimum is not None and bid < minimum:
        bid = minimum
    note = (f"spot bid {rate_text(bid)} per GPU: the {cloud.lower()} spot price of {gpu.display_name} "
            f"({'read from RunPod now' if source == 'runpod' else 'catalog'})") if bid is not None else ""
    return SpotBid(bid=bid, minimum=minimum, source=source, note=note)
