"""The main job on the embedded default, end to end with what exists today.

It never pretends: each step says what it did. Today: import the shipped sample dataset, build
the tiny model from it, start the control plane's processes (embedded Redis, daphne, a Celery
worker, Celery beat), train through them on the local provider (webhooks into the database),
wait for the automatic validation report (base vs adapted, every metric with its interval),
print where the adapter and the report are, and stop everything.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from config import embedded
from training.management.commands.runall import Supervisor, process_commands
from training.management.commands.train import Command as TrainCommand

SAMPLE = Path(settings.BASE_DIR) / "training" / "sample_data" / "brightrun-sample.json"
# The tiny CPU model's evaluating stage, kept small (a real model on a GPU uses the defaults).
DEMO_POD_EVAL = {"POD_EVAL_MAX_REPLIES": "6", "POD_EVAL_MAX_NEW_TOKENS": "32", "POD_EVAL_MAX_EMOTION_ITEMS": "16"}
# Small enough to finish in about a minute on two CPU cores, large enough to show a loss curve.
DEMO_OVERRIDES = {"num_epochs": 2, "max_seq_len": 1024, "micro_batch_size": 2, "gradient_accumulation_steps": 1,
                  "lora_r": 8, "lora_alpha": 16, "learning_rate": 1e-3}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Command(BaseCommand):
    help = "Run the main job on the embedded default (see README, Quickstart)."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", default=str(SAMPLE), help="training file (default: the shipped sample)")
        parser.add_argument("--no-train", action="store_true", help="only import the dataset")
        parser.add_argument("--timeout", type=float, default=900)

    def step(self, text):
        self.stdout.write(self.style.MIGRATE_HEADING(f"==> {text}"))

    def handle(self, *args, **opts):
        t0 = time.perf_counter()
        self.step("Database: applying migrations")
        call_command("migrate", verbosity=0)
        db = settings.DATABASES["default"]
        self.stdout.write(f"    {db['ENGINE'].rsplit('.', 1)[-1]}: {db['NAME']}")

        self.step(f"Dataset: importing {opts['dataset']}")
        from accounts.services import organization_get_or_create, system_user
        from training.models import Dataset

        # Half the conversations held out, so the validation gates have their minimum evidence
        # (20 replies from 5 conversations; docs/validation.md).
        call_command("import_dataset", opts["dataset"], "--val-fraction", "0.5", stdout=self.stdout)
        dataset = Dataset.objects.filter(organization=organization_get_or_create()).order_by("-created_at").first()
        if opts["no_train"]:
            self.step(f"Done in {time.perf_counter() - t0:.1f} s (training skipped)")
            return

        model_dir = Path(settings.DEFAULT_BASE_MODEL)
        self.step(f"Base model: tiny Llama built from the sample at {model_dir}")
        if (model_dir / "config.json").exists():
            self.stdout.write("    already built")
        else:
            try:
                from gpu_worker.tiny_model import make_tiny_model
            except ImportError as exc:
                raise CommandError("training needs the `train` extra (pip install -e '.[train]'); "
                                   f"`make demo` installs it ({exc})") from exc
            started = time.perf_counter()
            make_tiny_model(SAMPLE, model_dir)
            self.stdout.write(f"    built in {time.perf_counter() - started:.1f} s (nothing downloaded)")

        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        self.step(f"Control plane: embedded Redis, daphne on {base_url}, Celery worker, Celery beat")
        started_redis = embedded.ensure_running()
        os.environ["PUBLIC_BASE_URL"] = base_url  # the worker builds the pod's callback URL from it
        settings.PUBLIC_BASE_URL = base_url
        for key, value in DEMO_POD_EVAL.items():  # read by the worker when it builds the pod's spec
            os.environ.setdefault(key, value)
        supervisor = Supervisor(process_commands("127.0.0.1", port, 2), lambda m: self.stdout.write(f"    {m}"),
                                log_dir=Path(settings.VAR_DIR) / "log")
        supervisor.start()
        try:
            self._wait_for_http(base_url, supervisor)
            self.step("Training through the worker, the pod webhooks and the database (local provider)")
            from training.services.jobs import job_create

            start = time.perf_counter()
            job = job_create(organization=dataset.organization, dataset=dataset, created_by=system_user(),
                             preset="balanced", overrides=DEMO_OVERRIDES, base_model=str(model_dir), provider="local",
                             name="demo")
            self.stdout.write(f"    job {job.pk}: preset balanced with {DEMO_OVERRIDES}")
            first_metric = None
            waiter = TrainCommand(stdout=self.stdout, stderr=self.stderr)

            def on_poll(j):
                nonlocal first_metric
                if first_metric is None and j.current_step > 0:
                    first_metric = time.perf_counter() - start

            job = waiter.wait(job, opts["timeout"], on_poll=on_poll)
            self.stdout.write(f"    start to first metric: {first_metric:.1f} s; start to completed: "
                              f"{time.perf_counter() - start:.1f} s" if first_metric else "")
            evaluation = (job.result or {}).get("eval") or {}
            if evaluation:
                self.stdout.write(f"    validation perplexity (assistant tokens, held-out conversations): base "
                                  f"{evaluation.get('base_perplexity'):.2f} -> adapted {evaluation.get('adapted_perplexity'):.2f}")
            self.stdout.write(f"    adapter: {job.adapter_uri}")
            self.step("Validation report (run automatically by the worker after training)")
            self._print_report(job, opts["timeout"])
        finally:
            self.step("Stopping the control plane")
            supervisor.stop()
            if started_redis:
                embedded.stop()
        self.step(f"Done in {time.perf_counter() - t0:.1f} s")

    def _print_report(self, job, timeout_s: float) -> None:
        from artifacts.models import ModelArtifact
        from validation import report
        from validation.models import RunStatus, ValidationRun

        deadline = time.monotonic() + timeout_s
        run = None
        while time.monotonic() < deadline:
            run = ValidationRun.objects.filter(job=job).order_by("-created_at").first()
            if run is not None and run.status in (RunStatus.COMPLETED, RunStatus.FAILED):
                break
            time.sleep(0.5)
        else:
            self.stdout.write(f"    no finished validation run after {timeout_s:.0f} s (status: "
                              f"{run.status if run else 'not started'}); see var/log/worker.log")
            return
        if run.status == RunStatus.FAILED:
            self.stdout.write(f"    the validation run failed: {'; '.join(run.errors) or 'see var/log/worker.log'}")
            return
        document = report.report_document(run)
        self.stdout.write(f"    Headline: {document.get('headline')}")
        self.stdout.write(f"    Verdict: {document['verdict'].get('label')}")
        for g in document.get("gates") or []:
            self.stdout.write(f"    gate {g['name']:<28} {g['verdict_label']:<14} {g['value_text']} {g['ci_text']} "
                              f"n={g['n']}" + (f"  ({g['reasons_text']})" if g["reasons_text"] else ""))
        for g in document.get("controls") or []:
            self.stdout.write(f"    control {g['who']:<10} {g['name']:<17} {g['verdict_label']:<14} {g['value_text']} "
                              f"{g['ci_text']} n={g['n']}")
        self.stdout.write(f"    {document['summary']}")
        width = max((len(row["name"]) for row in document["metrics"]), default=0)
        for row in document["metrics"]:
            if row["computed"]:
                self.stdout.write(f"    {row['name']:<{width}}  {row['value_text']:>10} {row['ci_text']:<24} "
                                  f"n={row['n']:<4} {row['status']}")
            else:
                self.stdout.write(f"    {row['name']:<{width}}  not computed: {row['reason']}")
        self.stdout.write("    (a tiny random-weight model: these numbers exercise the pipeline, they say nothing "
                          "about quality)")
        for artifact in ModelArtifact.objects.filter(job=job, kind="report").order_by("name"):
            self.stdout.write(f"    report: {artifact.uri}")

    def _wait_for_http(self, base_url: str, supervisor: Supervisor, timeout_s: float = 60) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            exited = supervisor.first_exited()
            if exited:
                raise CommandError(f"{exited} exited during start-up")
            try:
                with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.3)
        raise CommandError(f"the web server did not answer on {base_url}/healthz within {timeout_s:.0f} s")
