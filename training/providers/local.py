"""Pods as processes on this machine, for development, the demo and end-to-end tests.

Each pod is one process group started in its own session, so it outlives the Celery worker that
launched it, as a real pod outlives the API call that created it. Everything the other processes
(beat, other workers, the test) need is on disk under `<pods_dir>/<pod_id>/`:

    pod.json       name, gpu type, spot, created (written before the process starts)
    wrapper.json   pid, process group and start time of the wrapper (written by the wrapper)
    exit.json      exit code, written by the wrapper when the command ends
    terminated.json  who stopped the pod: {"by": "user"} (terminate) or {"by": "cloud"} (interrupt)
    stdout.log, stderr.log

The pod id is the pod name. Linux `/proc` is used to tell a live process from a zombie or a
reused pid; elsewhere it falls back to `kill(pid, 0)`.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .base import (
    POD_EXITED,
    POD_RUNNING,
    POD_TERMINATED,
    GpuProvider,
    PodInfo,
    PodRequest,
    ProviderError,
    check_pod_name,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
WRAPPER = Path(__file__).with_name("_pod_wrapper.py")
DEFAULT_COMMAND = (sys.executable, "-m", "gpu_worker", "run")

# How long a launch waits for the wrapper to report its pid before calling the launch failed.
WRAPPER_START_TIMEOUT_S = 15.0
_POLL_S = 0.05

# Wrappers this process started, kept so that they are reaped (no zombies in a long-lived worker).
_children: list[subprocess.Popen] = []


def _reap_children() -> None:
    for child in list(_children):
        if child.poll() is not None:
            _children.remove(child)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError:
        return None  # half-written files are never seen (os.replace), but be forgiving


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start ticks) from /proc, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[2]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


_HAVE_PROC = os.path.isdir("/proc/self")


def _process_alive(pid: int, start_ticks: int | None) -> bool:
    """True when `pid` runs and is the same process we started (not a zombie, not a reused pid)."""
    if not _HAVE_PROC:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    stat = _proc_stat(pid)
    if stat is None:
        return False
    state, _pgrp, ticks = stat
    if start_ticks is not None and ticks != start_ticks:
        return False
    return state not in ("Z", "X")


def _group_alive(pgid: int) -> list[int]:
    """Live (non-zombie) members of process group `pgid`."""
    if not _HAVE_PROC:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat and stat[1] == pgid and stat[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


class LocalProvider(GpuProvider):
    """Runs each pod's command as a local process group with the pod's environment.

    `command` is the argv of the pod (default `python -m gpu_worker run`); `extra_env` is added to
    every pod's environment (under the request's own env). Nothing else from this process's
    environment reaches the pod except PATH, HOME and LANG: secrets stay out.
    """

    name = "local"

    def __init__(
        self,
        pods_dir: str | os.PathLike,
        command: list[str] | tuple[str, ...] | None = None,
        extra_env: dict[str, str] | None = None,
        *,
        terminate_grace_s: float = 10.0,
        kill_wait_s: float = 10.0,
        rate_per_hour: float = 0.0,
    ):
        self.pods_dir = Path(pods_dir)
        # $/h a local pod is reported to cost (LOCAL_POD_RATE_PER_HOUR): 0 is free; a price
        # makes caps, alerts and reports testable end to end on one machine.
        self.rate_per_hour = float(rate_per_hour or 0.0)
        self.command = list(command or DEFAULT_COMMAND)
        self.extra_env = dict(extra_env or {})
        self.terminate_grace_s = terminate_grace_s
        self.kill_wait_s = kill_wait_s

    # -- paths and locks -------------------------------------------------------------------

    def _dir(self, pod_id: str) -> Path:
        return self.pods_dir / check_pod_name(pod_id)

    @contextlib.contextmanager
    def _locked(self, pod_id: str):
        """Serialise launch/terminate/interrupt of one pod across processes.

        flock is released by the kernel when its holder dies, so a worker killed mid-launch
        never leaves the pod locked.
        """
        lock_dir = self.pods_dir / ".locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f"{check_pod_name(pod_id)}.lock", "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def pod_env(self, request: PodRequest, pod_id: str) -> dict[str, str]:
        """Exactly the environment the pod's command sees."""
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": os.environ.get("HOME", str(REPO_ROOT)),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PYTHONPATH": str(REPO_ROOT),
        }
        env.update(self.extra_env)
        env.update(request.env)
        env["RUNPOD_POD_ID"] = pod_id  # as RunPod sets it inside a pod
        return env

    # -- GpuProvider -------------------------------------------------------------------------

    def launch(self, request: PodRequest) -> PodInfo:
        """Start the pod, or return the existing one of the same name (idempotent).

        A pod that was terminated is replaced by a new one with the same name, as on RunPod where
        a terminated pod no longer exists.
        """
        _reap_children()
        pod_id = check_pod_name(request.name)
        state_dir = self._dir(pod_id)
        with self._locked(pod_id):
            meta = _read_json(state_dir / "pod.json")
            if meta is not None:
                existing = self._info(pod_id)
                if existing is not None and existing.state != POD_TERMINATED:
                    if _read_json(state_dir / "wrapper.json") is not None:
                        return existing
                    # pod.json without wrapper.json: the launcher died before or just after
                    # starting the wrapper. Give a wrapper that was started time to report.
                    if self._wait_for_wrapper(state_dir, timeout_s=WRAPPER_START_TIMEOUT_S):
                        return self._info(pod_id) or existing
                shutil.rmtree(state_dir, ignore_errors=True)
            return self._start(request, pod_id, state_dir)

    def _start(self, request: PodRequest, pod_id: str, state_dir: Path) -> PodInfo:
        state_dir.mkdir(parents=True, exist_ok=True)
        created = time.time()
        _write_json(
            state_dir / "pod.json",
            {
                "pod_id": pod_id,
                "name": request.name,
                "gpu_type_id": request.gpu_type_id,
                "cloud_type": request.cloud_type,
                "spot": request.spot,
                "bid_per_gpu": request.bid_per_gpu,
                "command": self.command,
                "created": created,
            },
        )
        with open(state_dir / "stdout.log", "ab") as out, open(state_dir / "stderr.log", "ab") as err:
            try:
                child = subprocess.Popen(
                    [sys.executable, "-I", "-S", str(WRAPPER), str(state_dir), *self.command],
                    env=self.pod_env(request, pod_id),
                    cwd=state_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,  # own session and process group: outlives us
                    close_fds=True,
                )
            except OSError as exc:
                shutil.rmtree(state_dir, ignore_errors=True)
                raise ProviderError(
                    f"could not start the local pod {pod_id}: {exc}",
                    suggestion=f"check that {sys.executable} exists and {self.pods_dir} is writable",
                ) from exc
        _children.append(child)
        if not self._wait_for_wrapper(state_dir, timeout_s=WRAPPER_START_TIMEOUT_S, child=child):
            raise ProviderError(
                f"the local pod {pod_id} did not start (see {state_dir / 'stderr.log'})",
                suggestion="check LOCAL_WORKER_COMMAND and the pod's stderr.log",
            )
        return self._info(pod_id) or PodInfo(pod_id=pod_id, name=request.name, state=POD_RUNNING)

    @staticmethod
    def _wait_for_wrapper(state_dir: Path, *, timeout_s: float, child: subprocess.Popen | None = None) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (state_dir / "wrapper.json").exists():
                return True
            if child is not None and child.poll() is not None:
                return (state_dir / "wrapper.json").exists()
            time.sleep(_POLL_S)
        return False

    def status(self, pod_id: str) -> PodInfo | None:
        _reap_children()
        return self._info(pod_id)

    def _info(self, pod_id: str) -> PodInfo | None:
        state_dir = self._dir(pod_id)
        meta = _read_json(state_dir / "pod.json")
        if meta is None:
            return None
        wrapper = _read_json(state_dir / "wrapper.json")
        exit_info = _read_json(state_dir / "exit.json")
        stopped = _read_json(state_dir / "terminated.json")
        exit_code = exit_info.get("exit_code") if exit_info else None
        interrupted = bool(stopped and stopped.get("by") == "cloud")
        if self._alive(wrapper):
            state = POD_RUNNING
        elif stopped:
            state = POD_TERMINATED
        elif wrapper is None and exit_info is None:
            # Launch in progress (or the launcher died before the wrapper started).
            state = POD_RUNNING if time.time() - meta.get("created", 0) < WRAPPER_START_TIMEOUT_S else POD_EXITED
        else:
            state = POD_EXITED
        detail = ""
        if stopped:
            detail = "interrupted by the cloud" if interrupted else "terminated"
        elif exit_info is not None:
            detail = f"exited with code {exit_code}"
        elif state == POD_EXITED:
            detail = "ended without recording an exit code (killed)"
        return PodInfo(
            pod_id=pod_id,
            name=meta["name"],
            state=state,
            gpu_type_id=meta.get("gpu_type_id", ""),
            cost_per_hr=self.rate_per_hour,
            spot=bool(meta.get("spot")),
            exit_code=exit_code,
            started_at=meta.get("created"),
            interrupted=interrupted,
            detail=detail,
        )

    @staticmethod
    def _alive(wrapper: dict | None) -> bool:
        if not wrapper:
            return False
        if _process_alive(wrapper["pid"], wrapper.get("start_ticks")):
            return True
        # The wrapper is gone; children it left in the group (data loaders...) still count.
        return bool(_group_alive(wrapper["pgid"]))

    def terminate(self, pod_id: str) -> bool:
        """SIGTERM to the pod's process group, SIGKILL after the grace period; True once gone.

        The state directory (with the logs) is kept and marked terminated; `list` skips it.
        """
        return self._stop(pod_id, by="user")

    def stop(self, pod_id: str, *, grace_s: float) -> bool:
        """A user's stop (pause, stop early): as terminate, with `grace_s` for the worker to finish
        its step and write its checkpoint before the SIGKILL."""
        return self._stop(pod_id, by="user", grace_s=grace_s)

    def interrupt(self, pod_id: str, *, wait: bool = True) -> bool:
        """Test hook: act out a spot eviction. The pod gets SIGTERM (the worker saves a checkpoint
        and exits 75), then is marked terminated by the cloud (`PodInfo.interrupted`).

        With wait=False only the signal is sent; the pod ends on its own time.
        """
        if not wait:
            state_dir = self._dir(pod_id)
            wrapper = _read_json(state_dir / "wrapper.json")
            if wrapper is None:
                return False
            _write_json(state_dir / "terminated.json", {"by": "cloud", "at": time.time()})
            self._signal_group(wrapper["pgid"], signal.SIGTERM)
            return True
        return self._stop(pod_id, by="cloud")

    def _stop(self, pod_id: str, *, by: str, grace_s: float | None = None) -> bool:
        _reap_children()
        state_dir = self._dir(pod_id)
        with self._locked(pod_id):
            if _read_json(state_dir / "pod.json") is None:
                return True
            if _read_json(state_dir / "terminated.json") is None:
                # Written before the signal, so a pod that exits on SIGTERM is never seen as
                # merely "exited"; and before reading wrapper.json, so a wrapper that starts
                # after this point sees the mark and never runs the command.
                _write_json(state_dir / "terminated.json", {"by": by, "at": time.time()})
            wrapper = _read_json(state_dir / "wrapper.json")
            if wrapper is None:
                return True
            pgid = wrapper["pgid"]
            if not self._alive(wrapper):
                return True
            self._signal_group(pgid, signal.SIGTERM)
            if self._wait_gone(wrapper, self.terminate_grace_s if grace_s is None else grace_s):
                return True
            self._signal_group(pgid, signal.SIGKILL)
            return self._wait_gone(wrapper, self.kill_wait_s)

    @staticmethod
    def _signal_group(pgid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signum)

    def _wait_gone(self, wrapper: dict, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            _reap_children()
            if not self._alive(wrapper):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)

    def list(self, name_prefix: str) -> list[PodInfo]:
        _reap_children()
        pods = []
        if not self.pods_dir.is_dir():
            return pods
        for entry in sorted(os.scandir(self.pods_dir), key=lambda e: e.name):
            if not entry.is_dir() or entry.name.startswith(".") or not entry.name.startswith(name_prefix):
                continue
            info = self._info(entry.name)
            if info is not None and info.state != POD_TERMINATED:
                pods.append(info)
        return pods

    def find_by_name(self, name: str) -> PodInfo | None:
        info = self.status(name)
        return info if info is not None and info.state != POD_TERMINATED else None

    # -- helpers for tests and the admin -----------------------------------------------------

    def log_paths(self, pod_id: str) -> tuple[Path, Path]:
        state_dir = self._dir(pod_id)
        return state_dir / "stdout.log", state_dir / "stderr.log"

    def remove(self, pod_id: str) -> None:
        """Terminate the pod if needed and delete its state directory and logs."""
        self.terminate(pod_id)
        shutil.rmtree(self._dir(pod_id), ignore_errors=True)
