import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError


class Command(BaseCommand):
    help = ("Score a dataset's validation split with its own reference replies, a constant canned reply and "
            "replies shuffled across items as the 'adapted' model, and print each gate's verdict per control "
            "(reference should pass; canned and shuffled should not). Needs no model and no GPU.")

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="dataset id (manage.py import_dataset prints it)")
        parser.add_argument("--judge", choices=["offline", "llm"], default=None,
                            help="default: VALIDATION_JUDGE (llm uses VALIDATION_LLM_BASE_URL/MODEL/API_KEY)")
        parser.add_argument("--resamples", type=int, default=None, help="bootstrap resamples (default: settings)")
        parser.add_argument("--json", action="store_true", help="print one JSON object per gate and control")

    def handle(self, *args, **opts):
        from training.models import Dataset
        from validation.services import validation_calibrate

        try:
            dataset = Dataset.objects.filter(pk=opts["dataset"]).first()
        except (ValueError, ValidationError):
            dataset = None
        if dataset is None:
            raise CommandError(f"no dataset with id {opts['dataset']!r}; list them with GET /api/v1/datasets/")
        try:
            rows = validation_calibrate(dataset=dataset, judge_kind=opts["judge"], resamples=opts["resamples"])
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        for row in rows:
            if opts["json"]:
                self.stdout.write(json.dumps({k: row[k] for k in ("gate", "control", "verdict", "value", "ci", "n")}))
            else:
                ci = row["ci"]
                figure = "not measured" if row["value"] is None else (
                    f"{row['value']:.1%} [{ci[0]:.1%}, {ci[1]:.1%}]")
                self.stdout.write(f"{row['gate']:<12} {row['control']:<10} {row['verdict']:<13} on-voice {figure} "
                                  f"n={row['n']}")
                for check in row["checks"]:
                    value = "-" if check.get("value") is None else f"{check['value']:.3f}"
                    self.stdout.write(f"    {check['check']:<26} {check['verdict']:<13} {value}")
                for reason in row["reasons"]:
                    self.stdout.write(f"    ! {reason}")
