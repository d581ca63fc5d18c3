"""Fixtures for the provider tests: a fake RunPod API, an isolated HOME for the SDK, a small pod
script for the local provider. No database, no Django settings needed."""
from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.fakes.runpod_server import FakeRunPodServer

# The pod the local provider runs in these tests: not the real worker, a script that shows what it
# got. Controlled by its environment:
#   OUT          directory for env.json, pid, child.pid, sigterm
#   SLEEP        seconds to sleep before exiting (default 30)
#   EXIT_CODE    exit code after the sleep (default 0)
#   IGNORE_TERM  "1": note SIGTERM but keep running (forces SIGKILL)
#   SPAWN_CHILD  "1": start a grandchild that ignores SIGTERM (must die with the group)
POD_SCRIPT = textwrap.dedent('''
    import json, os, signal, subprocess, sys, time
    out = os.environ["OUT"]

    def on_term(signum, frame):
        with open(os.path.join(out, "sigterm"), "a") as f:
            f.write("SIGTERM\\n")
        if os.environ.get("IGNORE_TERM") != "1":
            print("saving checkpoint and exiting", flush=True)
            sys.exit(75)

    signal.signal(signal.SIGTERM, on_term)
    with open(os.path.join(out, "env.json.tmp"), "w") as f:
        json.dump(dict(os.environ), f)
    os.replace(os.path.join(out, "env.json.tmp"), os.path.join(out, "env.json"))
    with open(os.path.join(out, "pid"), "a") as f:
        f.write(f"{os.getpid()}\\n")
    if os.environ.get("SPAWN_CHILD") == "1":
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
        with open(os.path.join(out, "child.pid"), "w") as f:
            f.write(str(child.pid))
    print("hello from the pod", flush=True)
    deadline = time.time() + float(os.environ.get("SLEEP", "30"))
    while time.time() < deadline:
        time.sleep(0.02)
    sys.exit(int(os.environ.get("EXIT_CODE", "0")))
''')


@pytest.fixture
def pod_script(tmp_path: Path) -> Path:
    path = tmp_path / "pod_script.py"
    path.write_text(POD_SCRIPT)
    return path


@pytest.fixture
def local_provider(tmp_path: Path, pod_script: Path):
    from training.providers.local import LocalProvider

    provider = LocalProvider(tmp_path / "pods", [sys.executable, str(pod_script)], terminate_grace_s=1.0)
    yield provider
    # Leave no process behind, whatever the test did.
    for pod in provider.list(""):
        provider.terminate(pod.pod_id)


@pytest.fixture
def pod_out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    return out


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(interval)


def assert_process_gone(pid: int) -> None:
    """No such process. A zombie counts as gone: it has ended and only waits to be reaped, which
    the init of some sandboxes never does for orphans."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return
    assert state in ("Z", "X"), f"process {pid} is still alive (state {state})"


# -- RunPod ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def runpod_sdk(tmp_path_factory):
    """Import the SDK with HOME pointing at an empty directory, so a developer's
    ~/.runpod/config.toml is never read (the SDK reads it at import)."""
    home = tmp_path_factory.mktemp("home")
    saved = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    try:
        import runpod
        import runpod.api.graphql  # noqa: F401
    finally:
        if saved is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = saved
    return runpod


@pytest.fixture
def runpod_server():
    with FakeRunPodServer(api_key="test-key-123") as server:
        yield server


@pytest.fixture
def runpod_provider(runpod_sdk, runpod_server):
    from training.providers.runpod import RunPodProvider

    return RunPodProvider(
        api_key="test-key-123",
        api_base_url=runpod_server.base_url,
        image="brightrun/gpu-worker:test",
        timeout_s=5.0,
        poll_interval_s=0.01,
        terminate_confirm_s=5.0,
    )
