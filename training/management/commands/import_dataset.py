import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.services import organization_get_or_create, system_user
from training.errors import DatasetImportError
from training.models import StatsStatus
from training.services.datasets import dataset_import, dataset_stats_compute


class Command(BaseCommand):
    help = ("Import Bright Run training files (brightrun-lora-v4 JSON, the app's training.jsonl, single-conversation "
            "files) or chat JSONL as one dataset; several paths make one dataset, conversations deduplicated.")

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="path")
        parser.add_argument("--on-error", choices=["fail", "skip"], default="fail",
                            help="skip: leave out conversations that cannot be read and list them (default: fail)")
        parser.add_argument("--name")
        parser.add_argument("--val-fraction", type=float, default=None,
                            help="share of conversations held out for validation (default 0.1)")
        parser.add_argument("--seed", type=int, default=None, help="split seed (default 13)")
        parser.add_argument("--org", default="default", help="organization slug (created if missing)")
        parser.add_argument("--tokenizer", default=None, help="tokenizer directory for exact token counts")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **opts):
        paths = [Path(p) for p in opts["paths"]]
        for path in paths:
            if not path.is_file():
                raise CommandError(f"{path}: no such file")
        organization = organization_get_or_create(slug=opts["org"])
        try:
            result = dataset_import(
                organization=organization,
                files=[(path.name, path.read_bytes(), path.stat().st_size) for path in paths],
                name=opts["name"],
                val_fraction=opts["val_fraction"],
                seed=opts["seed"],
                created_by=system_user(),
                tokenizer_path=opts["tokenizer"],
                on_error=opts["on_error"],
            )
        except DatasetImportError as exc:
            raise CommandError(f"{paths[0] if len(paths) == 1 else 'import'}: {exc.message}") from exc
        ds = result.dataset
        if result.created and ds.stats_status == StatsStatus.PENDING:
            # At a terminal the exact counts are worth the wait; the API leaves them to the task.
            ds = dataset_stats_compute(dataset_id=ds.pk, tokenizer_path=opts["tokenizer"])
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
                "imperfect": stats.get("imperfect", {}),
                "skipped_conversations": stats.get("skipped_conversations", []),
                "duplicates_removed": stats.get("duplicates_removed", 0),
                "emotion_labels": stats.get("emotion_labels", {}).get("labels", []),
                "shared_with": stats.get("shared_with", []),
                "stats_status": ds.stats_status,
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
        for case, count in (stats.get("imperfect") or {}).items():
            lines.append(f"  imperfect            {count}  ({case.replace('_', ' ')})")
        if stats.get("duplicates_removed"):
            lines.append(f"  duplicates           {stats['duplicates_removed']} (imported once)")
        for skip in stats.get("skipped_conversations") or []:
            where = f"{skip['file']}: " if skip.get("file") else ""
            lines.append(self.style.WARNING(f"  left out             {where}{skip['reason']}"))
        for shared in stats.get("shared_with") or []:
            lines.append(f"  shares               {shared['conversations']} conversations with {shared['name']} "
                         f"({shared['dataset_id']})")
        for warning in stats["warnings"]:
            lines.append(self.style.WARNING(f"  warning: {warning}"))
        self.stdout.write("\n".join(lines))
