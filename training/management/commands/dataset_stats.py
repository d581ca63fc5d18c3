from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from training.models import Dataset, StatsStatus
from training.services.datasets import dataset_stats_compute


class Command(BaseCommand):
    help = ("Compute a dataset's statistics now (exact token counts with the tokenizer of TOKENIZER_PATH or the "
            "default base model), as the background task dataset_stats_compute does after an import.")

    def add_arguments(self, parser):
        parser.add_argument("dataset_id", nargs="?", help="one dataset")
        parser.add_argument("--all", action="store_true",
                            help="every dataset whose statistics are not ready, or imported before conversation "
                                 "hashes (their DatasetConversation rows and val_fingerprint are filled in)")
        parser.add_argument("--tokenizer", default=None, help="tokenizer directory (default: TOKENIZER_PATH)")

    def handle(self, *args, **opts):
        if bool(opts["dataset_id"]) == bool(opts["all"]):
            raise CommandError("give one dataset id or --all")
        if opts["all"]:
            ids = list(Dataset.objects.filter(~Q(stats_status=StatsStatus.READY) | Q(val_fingerprint=""))
                       .values_list("pk", flat=True))
        else:
            if not Dataset.objects.filter(pk=opts["dataset_id"]).exists():
                raise CommandError(f"no dataset {opts['dataset_id']}")
            ids = [opts["dataset_id"]]
        for pk in ids:
            ds = dataset_stats_compute(dataset_id=pk, tokenizer_path=opts["tokenizer"])
            tokens = ds.stats.get("tokens", {})
            self.stdout.write(f"{ds.pk} {ds.stats_status}: {tokens.get('per_epoch')} tokens per epoch "
                              f"({tokens.get('method')})")
        if not ids:
            self.stdout.write("nothing to do: every dataset's statistics are ready")
