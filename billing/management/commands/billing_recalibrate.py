from django.core.management.base import BaseCommand

from billing.models import ThroughputCalibration
from billing.services.calibration import calibration_rebuild


class Command(BaseCommand):
    help = "Recompute the estimator's throughput calibration from every recorded sample."

    def handle(self, *args, **options):
        keys = calibration_rebuild()
        self.stdout.write(f"recalibrated {keys} key(s)")
        for row in ThroughputCalibration.objects.order_by("gpu_type", "size_class"):
            self.stdout.write(f"  {row}")
