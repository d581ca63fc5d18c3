from django.core.management.base import BaseCommand, CommandError

from billing.errors import PriceRefreshError
from billing.services.catalog import catalog_refresh


class Command(BaseCommand):
    help = "Refresh GPU prices from RunPod's GPU query (needs RUNPOD_API_KEY). --add ID adds a GPU type."

    def add_arguments(self, parser):
        parser.add_argument("--add", action="append", default=[], metavar="GPU_ID",
                            help="also fetch this RunPod GPU type id (added to the catalog)")

    def handle(self, *args, add, **options):
        try:
            result = catalog_refresh(gpu_ids=add)
        except PriceRefreshError as exc:
            raise CommandError(str(exc)) from exc
        if result.skipped:
            self.stdout.write(self.style.WARNING(result.skipped))
            return
        for gpu_id in result.updated:
            self.stdout.write(f"updated {gpu_id}")
        for gpu_id in result.created:
            self.stdout.write(f"added {gpu_id}")
        for gpu_id, error in result.failed.items():
            self.stdout.write(self.style.ERROR(f"failed {gpu_id}: {error}"))
