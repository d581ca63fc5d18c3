"""Seed the GPU catalog with documented prices (as of 2026-03-10; sources in
billing/fixtures/gpu_catalog_seed.json and docs/billing.md). Frozen here so this migration always
does the same thing; `manage.py billing_catalog_refresh` replaces them with RunPod's live prices."""
from decimal import Decimal

from django.db import migrations

AS_OF = "2026-03-10"
GPU_TYPES = [
    {"gpu_id": "NVIDIA GeForce RTX 3090", "display_name": "RTX 3090", "memory_gb": 24, "secure_price": "0.39", "secure_spot_price": "0.22", "relative_speed": "0.22"},
    {"gpu_id": "NVIDIA GeForce RTX 4090", "display_name": "RTX 4090", "memory_gb": 24, "secure_price": "0.60", "secure_spot_price": "0.34", "relative_speed": "0.40"},
    {"gpu_id": "NVIDIA GeForce RTX 5090", "display_name": "RTX 5090", "memory_gb": 32, "secure_price": "1.22", "secure_spot_price": "0.69", "relative_speed": "0.50"},
    {"gpu_id": "NVIDIA L4", "display_name": "L4", "memory_gb": 24, "secure_price": "0.78", "secure_spot_price": "0.44", "relative_speed": "0.12"},
    {"gpu_id": "NVIDIA L40", "display_name": "L40", "memory_gb": 48, "secure_price": "1.22", "secure_spot_price": "0.69", "relative_speed": "0.38"},
    {"gpu_id": "NVIDIA L40S", "display_name": "L40S", "memory_gb": 48, "secure_price": "1.40", "secure_spot_price": "0.79", "relative_speed": "0.45"},
    {"gpu_id": "NVIDIA A100 80GB PCIe", "display_name": "A100 PCIe", "memory_gb": 80, "secure_price": "2.10", "secure_spot_price": "1.19", "relative_speed": "0.50"},
    {"gpu_id": "NVIDIA A100-SXM4-80GB", "display_name": "A100 SXM", "memory_gb": 80, "secure_price": "2.45", "secure_spot_price": "1.39", "relative_speed": "0.55"},
    {"gpu_id": "NVIDIA H100 PCIe", "display_name": "H100 PCIe", "memory_gb": 80, "secure_price": "3.51", "secure_spot_price": "1.99", "community_price": "2.40", "relative_speed": "0.75"},
    {"gpu_id": "NVIDIA H100 80GB HBM3", "display_name": "H100 SXM", "memory_gb": 80, "secure_price": "4.76", "secure_spot_price": "2.69", "relative_speed": "1.00"},
    {"gpu_id": "NVIDIA H200", "display_name": "H200", "memory_gb": 141, "secure_price": "6.35", "secure_spot_price": "3.59", "relative_speed": "1.15"},
    {"gpu_id": "NVIDIA B200", "display_name": "B200", "memory_gb": 192, "secure_price": "10.57", "secure_spot_price": "5.98", "relative_speed": "1.80"},
]
PRICE_FIELDS = ("secure_price", "community_price", "secure_spot_price", "community_spot_price", "relative_speed")


def seed(apps, schema_editor):
    GpuType = apps.get_model("billing", "GpuType")
    for row in GPU_TYPES:
        values = {k: (Decimal(v) if k in PRICE_FIELDS else v) for k, v in row.items() if k != "gpu_id"}
        GpuType.objects.get_or_create(gpu_id=row["gpu_id"], defaults={**values, "source": "seed"})


def unseed(apps, schema_editor):
    apps.get_model("billing", "GpuType").objects.filter(source="seed", gpu_id__in=[r["gpu_id"] for r in GPU_TYPES]).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(seed, unseed),
    ]
