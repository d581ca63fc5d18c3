"""Start every process of the control plane for the embedded default (or any settings) and stop
them all on Ctrl-C: embedded Redis (when REDIS_URL is unset), daphne, a Celery worker and Celery beat.

Each child runs in its own process group; on SIGINT/SIGTERM every group gets SIGTERM, then
SIGKILL after a grace period, so no process is left behind.

Serving: daphne runs the ASGI application in one process, and Django runs every sync view of that
process on one thread, one request after another. With `WEB_WORKERS` > 1 (`--web-workers`) this
command opens the listening socket itself and starts that many daphne processes on it
(`daphne -e systemd:domain=INET:index=0`, socket activation): the kernel hands each new connection to one of them, and websockets
keep working in every process because they meet through the Redis channel layer. The container
runs the same thing (`manage.py runall --only web`, see docker-compose.yml and docs/performance.md).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from config import embedded
from config.celery_routes import pod_control_queue
from config.settings.secret_key import is_loopback, refusal

GRACE_S = 10.0
# A child that exits this many times within the window is given up on (and everything stops).
RESTART_LIMIT = 5
RESTART_WINDOW_S = 60.0


LISTEN_FD = "{listen_fd}"  # replaced by the shared listening socket's descriptor when started
# daphne adopts an inherited socket through Twisted's systemd endpoint (sd_listen_fds: descriptor
# 3, LISTEN_FDS=1, LISTEN_FDNAMES, LISTEN_PID = its own pid). This trampoline puts the shared socket there and
# execs daphne in the same process, so the pid matches.
SOCKET_ACTIVATION = (
    "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); os.set_inheritable(3, True); "
    "os.environ.update(LISTEN_FDS='1', LISTEN_FDNAMES='web', LISTEN_PID=str(os.getpid())); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)
PROCESSES = ("web", "worker", "pods", "beat")


class Commands(dict):
    """name -> argv; `listen` = (host, port) when the web processes share a socket opened by the
    supervisor (their argv holds LISTEN_FD)."""

    listen: tuple[str, int] | None = None
    env: dict[str, dict[str, str]]  # name -> extra environment of that process

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.env = {}


def process_commands(host: str, port: int, concurrency: int, web_workers: int | None = None,
                     only: tuple[str, ...] = PROCESSES) -> Commands:
    py = sys.executable
    web_workers = max(1, int(settings.WEB_WORKERS if web_workers is None else web_workers))
    commands = Commands()
    if "web" in only:
        if web_workers == 1:
            commands["web"] = [py, "-m", "config.serve", "-b", host, "-p", str(port), "config.asgi:application"]
        else:
            domain = "INET6" if ":" in host else "INET"
            for n in range(1, web_workers + 1):
                commands[f"web-{n}"] = [py, "-c", SOCKET_ACTIVATION, LISTEN_FD, "-m", "config.serve",
                                        "-e", f"systemd:domain={domain}:index=0", "config.asgi:application"]
            commands.listen = (host, port)
        # A connection pool per served process (see config/settings/serving.py), unless set.
        for name in commands:
            commands.env[name] = {"DATABASE_POOL": os.environ.get("DATABASE_POOL", "1")}
    if "worker" in only:
        commands["worker"] = [py, "-m", "celery", "-A", "config", "worker", "-Q", settings.CELERY_TASK_DEFAULT_QUEUE,
                              "-l", "INFO", "--concurrency", str(concurrency), "-n", f"worker-{os.getpid()}@%h"]
    if "pods" in only:
        # Pod control (launch, stop, terminate) has its own queue and worker: a cancel never waits
        # behind validation or packaging (config/celery_routes.py).
        commands["pods"] = [py, "-m", "celery", "-A", "config", "worker", "-Q",
                            pod_control_queue(settings.CELERY_TASK_DEFAULT_QUEUE), "-l", "INFO", "--concurrency",
                            str(max(2, concurrency)), "-n", f"pods-{os.getpid()}@%h"]
    if "beat" in only:
        commands["beat"] = [py, "-m", "celery", "-A", "config", "beat", "-l", "INFO",
                            "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"]
    return commands


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(self, commands: dict[str, list[str]], log=print, log_dir=None):
        self.commands = commands
        self.children: dict[str, subprocess.Popen] = {}
        self.log = log
        self.log_dir = log_dir  # None: the children write to this terminal
        self.socket: socket.socket | None = None
        self.restarts: dict[str, list[float]] = {}

    def start(self):
        listen = getattr(self.commands, "listen", None)
        if listen is not None:
            self.socket = listening_socket(*listen)
        for name in self.commands:
            self._spawn(name)

    def _spawn(self, name: str) -> None:
        argv = self.commands[name]
        pass_fds: tuple[int, ...] = ()
        if self.socket is not None and LISTEN_FD in " ".join(argv):
            pass_fds = (self.socket.fileno(),)
            argv = [a.replace(LISTEN_FD, str(pass_fds[0])) for a in argv]
        output = None
        where = ""
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            path = self.log_dir / f"{name}.log"
            output = open(path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
            where = f", log {path}"
        env = {**os.environ, **getattr(self.commands, "env", {}).get(name, {})}
        self.children[name] = subprocess.Popen(argv, start_new_session=True, stdout=output, env=env,
                                               stderr=subprocess.STDOUT if output else None, pass_fds=pass_fds)
        if output is not None:
            output.close()  # the child has its own copy
        self.log(f"started {name} (pid {self.children[name].pid}{where})")

    def restart_exited(self) -> str | None:
        """Start again every child that exited (a crashed web process, killed by the kernel for
        memory, for instance); the others keep serving, and a web process gets the same shared
        socket. A child that exits RESTART_LIMIT times within RESTART_WINDOW_S is not restarted:
        its name is returned and the caller stops everything (it cannot run)."""
        for name, proc in list(self.children.items()):
            if proc.poll() is None:
                continue
            now = time.monotonic()
            recent = [t for t in self.restarts.get(name, []) if now - t < RESTART_WINDOW_S]
            if len(recent) >= RESTART_LIMIT:
                return name
            self.restarts[name] = [*recent, now]
            self.log(f"{name} (pid {proc.pid}) exited with code {proc.returncode}; restarting it")
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its group
            except (ProcessLookupError, PermissionError):
                pass
            self._spawn(name)
        return None

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
        if self.socket is not None:
            self.socket.close()
            self.socket = None


class Command(BaseCommand):
    help = "Run daphne, a Celery worker and Celery beat (and the embedded Redis) until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--concurrency", type=int, default=2)
        parser.add_argument("--web-workers", type=int, default=None,
                            help="daphne processes sharing the port (default: the WEB_WORKERS setting)")
        parser.add_argument("--only", default=",".join(PROCESSES),
                            help="comma-separated subset of web,worker,pods,beat (a container runs one each)")
        parser.add_argument("--no-migrate", action="store_true")

    def handle(self, *args, **opts):
        if "web" in opts["only"] and not settings.SECRET_KEY_CONFIGURED and not is_loopback(opts["host"]):
            raise CommandError(refusal(opts["host"]))
        started_redis = embedded.ensure_running()
        if started_redis:
            self.stdout.write(f"embedded Redis on {settings.EMBEDDED_REDIS_SOCKET}")
        if not opts["no_migrate"]:
            call_command("migrate", verbosity=0)
        only = tuple(p.strip() for p in opts["only"].split(",") if p.strip())
        unknown = set(only) - set(PROCESSES)
        if unknown or not only:
            raise CommandError(f"--only takes a comma-separated subset of {','.join(PROCESSES)}")
        commands = process_commands(opts["host"], opts["port"], opts["concurrency"], opts["web_workers"], only)
        supervisor = Supervisor(commands, self.stdout.write)
        stopping = False

        def on_signal(signum, _frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        supervisor.start()
        if "web" in only:
            self.stdout.write(f"dashboard and API on http://{opts['host']}:{opts['port']}/  (Ctrl-C stops everything)")
        try:
            while not stopping:
                failing = supervisor.restart_exited()
                if failing:
                    self.stderr.write(f"{failing} exited {RESTART_LIMIT} times within {RESTART_WINDOW_S:.0f} s "
                                      f"(last code {supervisor.children[failing].returncode}); stopping")
                    break
                time.sleep(0.3)
        finally:
            self.stdout.write("stopping...")
            supervisor.stop()
            if started_redis:
                embedded.stop()
            self.stdout.write("all processes stopped")
