"""Shared pieces of the control-plane benchmarks: the dedicated benchmark database, Django set-up
against it, the served processes (started the way `manage.py runall` starts them), tables."""
from __future__ import annotations

import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "brightrun_bench")
# The channel layer and tickets of the benchmark live in their own Redis database.
BENCH_REDIS_DB = os.environ.get("BENCH_REDIS_DB", "7")


def base_database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url or not url.startswith("postgres"):
        raise SystemExit("the control-plane benchmarks need PostgreSQL: set DATABASE_URL (make bench does)")
    return url


def bench_database_url(name: str = BENCH_DB) -> str:
    parts = urlsplit(base_database_url())
    return urlunsplit(parts._replace(path="/" + name))


def bench_redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        raise SystemExit("the control-plane benchmarks need Redis: set REDIS_URL (make bench does)")
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + BENCH_REDIS_DB))


def _admin_conn():
    import psycopg

    parts = urlsplit(base_database_url())
    return psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True)


def database_recreate(name: str = BENCH_DB) -> None:
    """Drop and create the benchmark database, then migrate it (subprocess: a clean Django)."""
    with _admin_conn() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = bench_env(name)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)


def database_drop(name: str = BENCH_DB) -> None:
    with _admin_conn() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_env(name: str = BENCH_DB, **extra) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": bench_database_url(name), "REDIS_URL": bench_redis_url(),
           "PYTHONUNBUFFERED": "1", "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.pop("CHANNEL_LAYER_URL", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def django_setup(name: str = BENCH_DB) -> None:
    """Point this process at the benchmark database and start Django."""
    os.environ.update(bench_env(name))
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """`manage.py runall --only web` (the serving processes exactly as deployed) on a free port."""

    def __init__(self, log: Path, name: str = BENCH_DB, extra_args: list[str] | None = None, **env):
        self.port = free_port()
        self.log = log
        self.argv = [sys.executable, "manage.py", "runall", "--only", "web", "--no-migrate", "--port", str(self.port),
                     *(extra_args or [])]
        self.env = bench_env(name, **env)
        self.proc: subprocess.Popen | None = None

    @property
    def command(self) -> str:
        return " ".join(shlex.quote(a) for a in self.argv[1:])

    def __enter__(self):
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        import urllib.request

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        else:
            raise RuntimeError("the server did not answer /healthz in 60 s")
        time.sleep(1.0)  # let every worker process finish starting
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def median(values):
    return statistics.median(values) if values else float("nan")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def table(title: str, header: list[str], rows: list[list], command: str | None = None) -> str:
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [f"\n## {title}", ""]
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if n and i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if command:
        lines.append(f"\ncommand: {command}")
    lines.append(f"load average (1/5/15 min) at the end: {load_average()} on {os.cpu_count()} cores")
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
