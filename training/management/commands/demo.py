"""The main job on the embedded default, end to end with what exists today.

It never pretends: each step says what it did. Today: import the shipped sample dataset and
print its statistics.
"""
from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

SAMPLE = Path(settings.BASE_DIR) / "training" / "sample_data" / "brightrun-sample.json"


class Command(BaseCommand):
    help = "Run the main job on the embedded default (see README, Quickstart)."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", default=str(SAMPLE), help="training file to use (default: the shipped sample)")

    def step(self, text):
        self.stdout.write(self.style.MIGRATE_HEADING(f"==> {text}"))

    def handle(self, *args, **opts):
        t0 = time.perf_counter()
        self.step("Database: applying migrations")
        call_command("migrate", verbosity=0)
        self.stdout.write(f"    {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}: "
                          f"{settings.DATABASES['default']['NAME']}")
        self.step(f"Dataset: importing {opts['dataset']}")
        call_command("import_dataset", opts["dataset"], stdout=self.stdout)
        self.step(f"Done in {time.perf_counter() - t0:.1f} s")
