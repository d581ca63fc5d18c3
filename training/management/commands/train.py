"""manage.py train: start a job from a dataset and a preset, optionally wait with a live progress line."""
from __future__ import annotations

import json
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from accounts.services import organization_get_or_create, system_user
from training import states
from core.errors import DomainError
from training.models import Dataset, TrainingJob
from training.services.jobs import job_create


def _parse_value(raw: str):
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _fmt_eta(seconds) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def progress_line(job: TrainingJob, cost: str = "") -> str:
    width = 24
    filled = int(job.progress * width)
    bar = "#" * filled + "-" * (width - filled)
    loss = f"{job.last_loss:.4f}" if job.last_loss is not None else "-"
    parts = [f"[{bar}] {job.progress * 100:5.1f}%", f"{job.status:<13}", f"step {job.current_step}/{job.total_steps or '?'}",
             f"loss {loss}", f"ETA {_fmt_eta(job.eta_s)}"]
    if cost:
        parts.append(f"cost {cost}")
    return "  ".join(parts)


def job_cost_text(job: TrainingJob) -> str:
    try:
        from billing.selectors import job_cost_display  # the billing app, when it offers it
    except ImportError:
        return ""
    return job_cost_display(job)


class Command(BaseCommand):
    help = "Start a training job; with --wait, show live progress until it ends (non-zero exit if it failed)."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="dataset id")
        parser.add_argument("--preset", default="balanced", choices=["conservative", "balanced", "aggressive"])
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                            help="override a hyperparameter (repeatable), e.g. --set num_epochs=1")
        parser.add_argument("--base-model", default=None)
        parser.add_argument("--provider", choices=["local", "runpod"], default=None)
        parser.add_argument("--gpu-type", default=None)
        parser.add_argument("--spot", action="store_true")
        parser.add_argument("--org", default="default")
        parser.add_argument("--wait", action="store_true")
        parser.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")

    def handle(self, *args, **opts):
        organization = organization_get_or_create(slug=opts["org"])
        dataset = Dataset.objects.filter(pk=opts["dataset"], organization=organization).first()
        if dataset is None:
            raise CommandError(f"no dataset {opts['dataset']} in organization {organization.slug}; "
                               "import one with manage.py import_dataset")
        overrides = {}
        for item in opts["set"]:
            key, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--set {item!r}: expected KEY=VALUE")
            overrides[key.strip()] = _parse_value(value.strip())
        try:
            job = job_create(organization=organization, dataset=dataset, created_by=system_user(), preset=opts["preset"],
                             overrides=overrides, base_model=opts["base_model"], provider=opts["provider"],
                             gpu_type=opts["gpu_type"], spot=opts["spot"])
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"job {job.pk} queued ({job.preset}, {job.hyperparameters['num_epochs']} epochs, "
                          f"provider {job.provider})")
        if not opts["wait"]:
            return
        self.wait(job, opts["timeout"])

    def wait(self, job: TrainingJob, timeout: float | None, on_poll=None) -> TrainingJob:
        started = time.monotonic()
        interactive = sys.stdout.isatty()
        last = ""
        while True:
            job.refresh_from_db()
            if on_poll:
                on_poll(job)
            line = progress_line(job, job_cost_text(job))
            if line != last:
                self.stdout.write(("\r" + line) if interactive else line, ending="" if interactive else "\n")
                self.stdout.flush()
                last = line
            if job.is_terminal:
                break
            if timeout is not None and time.monotonic() - started > timeout:
                raise CommandError(f"job {job.pk} still {job.status} after {timeout:.0f} s")
            time.sleep(0.5)
        if interactive:
            self.stdout.write("")
        if job.status == states.COMPLETED:
            self.stdout.write(self.style.SUCCESS(f"completed: adapter at {job.adapter_uri}"))
            return job
        message = f"job {job.pk} {job.status}"
        if job.error_message:
            message += f": {job.error_message}"
        if job.error_suggestion:
            message += f" — {job.error_suggestion}"
        raise CommandError(message)
