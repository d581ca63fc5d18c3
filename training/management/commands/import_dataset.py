import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.services import organization_get_or_create, system_user
from training.errors import DatasetImportError
from training.services.datasets import dataset_import


class Command(BaseCommand):
    help = "Import a Bright Run training file (brightrun-lora-v4) or chat JSONL as a dataset."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--name")
        parser.add_argument("--val-fraction", type=float, default=None,
                            help="share of conversations held out for validation (default 0.1)")
        parser.add_argument("--seed", type=int, default=None, help="split seed (default 13)")
        parser.add_argument("--org", default="default", help="organization slug (created if missing)")
        parser.add_argument("--tokenizer", default=None, help="tokenizer directory for exact token counts")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **opts):
        path = Path(opts["path"])
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        organization = organization_get_or_create(slug=opts["org"])
        try:
            with path.open("rb") as fh:
                result = dataset_import(
                    organization=organization,
                    source=fh,
                    filename=path.name,
                    name=opts["name"],
                    val_fraction=opts["val_fraction"],
                    seed=opts["seed"],
                    created_by=system_user(),
                    size_hint=path.stat().st_size,
                    tokenizer_path=opts["tokenizer"],
                )
        except DatasetImportError as exc:
            raise CommandError(f"{path}: {exc.message}") from exc
        ds = result.dataset
        stats = ds.stats
        if opts["json"]:
            payload = {
                "dataset_id": str(ds.pk),
                "created": result.created,
                "name": ds.name,
                "format": ds.source_format,
                "conversations": ds.conversation_count,
                "pairs": ds.pair_count,
                "trainable_turns": ds.trainable_turns,
                "skipped": stats["skipped"],
                "train_conversations": ds.train_conversations,
                "val_conversations": ds.val_conversations,
                "tokens": stats["tokens"],
                "distributions": stats["distributions"],
                "warnings": stats["warnings"],
                "message": result.message,
            }
            self.stdout.write(json.dumps(payload))
            return
        self.stdout.write(self.style.SUCCESS(f"{'Imported' if result.created else 'Already imported'}: {ds.name} ({ds.pk})"))
        if not result.created:
            self.stdout.write(result.message)
        tokens = stats["tokens"]
        lines = [
            f"  format               {ds.source_format}",
            f"  conversations        {ds.conversation_count} ({ds.train_conversations} train / {ds.val_conversations} validation)",
            f"  training pairs       {ds.pair_count}",
            f"  trainable turns      {ds.trainable_turns}",
        ]
        for reason, count in stats["skipped"].items():
            lines.append(f"  skipped              {count}  ({reason})")
        lines += [
            f"  tokens per epoch     {tokens['per_epoch']:,} ({tokens['method']}; {tokens['trainable']:,} trainable)",
            f"  pair-by-pair would   {tokens['pair_by_pair_per_epoch']:,} ({tokens['pair_by_pair_ratio']}x)",
            f"  turns/conversation   {stats['turns_per_conversation']['min']}-{stats['turns_per_conversation']['max']}",
        ]
        for key in ("persona", "emotional_arc", "topic"):
            dist = stats["distributions"].get(key) or {}
            if dist:
                lines.append(f"  {key:<20} " + ", ".join(f"{k} {v}" for k, v in dist.items()))
        for warning in stats["warnings"]:
            lines.append(self.style.WARNING(f"  warning: {warning}"))
        self.stdout.write("\n".join(lines))
