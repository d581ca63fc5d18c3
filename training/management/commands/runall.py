"""Start every process of the control plane for the embedded default (or any settings) and stop
them all on Ctrl-C: embedded Redis (when REDIS_URL is unset), daphne, a Celery worker and Celery beat.

Each child runs in its own process group; on SIGINT/SIGTERM every group gets SIGTERM, then
SIGKILL after a grace period, so no process is left behind.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from config import embedded

GRACE_S = 10.0


def process_commands(host: str, port: int, concurrency: int) -> dict[str, list[str]]:
    py = sys.executable
    return {
        "web": [py, "-m", "daphne", "-b", host, "-p", str(port), "config.asgi:application"],
        "worker": [py, "-m", "celery", "-A", "config", "worker", "-l", "INFO", "--concurrency", str(concurrency),
                   "-n", f"worker-{os.getpid()}@%h"],
        "beat": [py, "-m", "celery", "-A", "config", "beat", "-l", "INFO",
                 "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"],
    }


class Supervisor:
    def __init__(self, commands: dict[str, list[str]], log=print, log_dir=None):
        self.commands = commands
        self.children: dict[str, subprocess.Popen] = {}
        self.log = log
        self.log_dir = log_dir  # None: the children write to this terminal

    def start(self):
        for name, argv in self.commands.items():
            output = None
            where = ""
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                path = self.log_dir / f"{name}.log"
                output = open(path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
                where = f", log {path}"
            self.children[name] = subprocess.Popen(argv, start_new_session=True, stdout=output,
                                                   stderr=subprocess.STDOUT if output else None)
            self.log(f"started {name} (pid {self.children[name].pid}{where})")

    def first_exited(self) -> str | None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                return name
        return None

    def stop(self):
        for proc in self.children.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + GRACE_S
        for name, proc in self.children.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(f"{name} did not stop in {GRACE_S:.0f} s; killing it")
            # Kill whatever is left of the group (Celery's pool children, for instance).
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


class Command(BaseCommand):
    help = "Run daphne, a Celery worker and Celery beat (and the embedded Redis) until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--concurrency", type=int, default=2)
        parser.add_argument("--no-migrate", action="store_true")

    def handle(self, *args, **opts):
        started_redis = embedded.ensure_running()
        if started_redis:
            self.stdout.write(f"embedded Redis on {settings.EMBEDDED_REDIS_SOCKET}")
        if not opts["no_migrate"]:
            call_command("migrate", verbosity=0)
        supervisor = Supervisor(process_commands(opts["host"], opts["port"], opts["concurrency"]), self.stdout.write)
        stopping = False

        def on_signal(signum, _frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        supervisor.start()
        self.stdout.write(f"dashboard and API on http://{opts['host']}:{opts['port']}/  (Ctrl-C stops everything)")
        try:
            while not stopping:
                exited = supervisor.first_exited()
                if exited:
                    self.stderr.write(f"{exited} exited with code {supervisor.children[exited].returncode}; stopping")
                    break
                time.sleep(0.3)
        finally:
            self.stdout.write("stopping...")
            supervisor.stop()
            if started_redis:
                embedded.stop()
            self.stdout.write("all processes stopped")
