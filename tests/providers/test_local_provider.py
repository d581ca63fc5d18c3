"""The local provider: real processes, state on disk, signals to the whole process group."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gpu_worker.contracts import SPEC_ENV_VAR, JobSpec
from training.providers.base import POD_EXITED, POD_RUNNING, POD_TERMINATED, PodRequest, ProviderError
from training.providers.local import REPO_ROOT, LocalProvider

from .conftest import assert_process_gone, wait_for


def request(name: str, out: Path, **env: str) -> PodRequest:
    return PodRequest(name=name, gpu_type_id="LOCAL CPU", env={"OUT": str(out), **env})


def read_pid(path: Path) -> int:
    return int(wait_for(lambda: path.exists() and path.read_text().strip()).splitlines()[0])


def test_pod_gets_exactly_the_pod_environment(local_provider, pod_out, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "parent-secret")
    monkeypatch.setenv("RUNPOD_API_KEY", "parent-runpod-key")
    spec = JobSpec(job_id="j1", attempt=1, base_model='tiny "model"\nwith newline', train_uri="file:///t",
                   val_uri=None, output_uri="file:///o", webhook_secret="s3cr3t")
    local_provider.extra_env = {"BRIGHTRUN_ALLOW_TEST_HOOKS": "1"}

    pod = local_provider.launch(request("brightrun-env-1", pod_out, SLEEP="0", **{SPEC_ENV_VAR: spec.to_env_value()}))

    assert pod.pod_id == "brightrun-env-1" and pod.name == "brightrun-env-1"
    done = wait_for(lambda: (s := local_provider.status(pod.pod_id)) and s.state == POD_EXITED and s)
    assert done.exit_code == 0
    env = json.loads((pod_out / "env.json").read_text())
    assert JobSpec.from_env_value(env[SPEC_ENV_VAR]) == spec
    assert env["RUNPOD_POD_ID"] == "brightrun-env-1"
    assert env["PYTHONPATH"] == str(REPO_ROOT)
    assert env["BRIGHTRUN_ALLOW_TEST_HOOKS"] == "1"
    assert "AWS_SECRET_ACCESS_KEY" not in env and "RUNPOD_API_KEY" not in env
    # Python adds LC_CTYPE on some systems; nothing else may appear.
    assert set(env) - {"LC_CTYPE"} == {
        "PATH", "HOME", "LANG", "PYTHONPATH", "OUT", "SLEEP", SPEC_ENV_VAR, "RUNPOD_POD_ID",
        "BRIGHTRUN_ALLOW_TEST_HOOKS",
    }
    stdout_log, _ = local_provider.log_paths(pod.pod_id)
    assert "hello from the pod" in stdout_log.read_text()


def test_status_is_running_then_exited_with_the_exit_code(local_provider, pod_out):
    pod = local_provider.launch(request("brightrun-exit-3", pod_out, SLEEP="0.7", EXIT_CODE="3"))

    assert local_provider.status(pod.pod_id).state == POD_RUNNING
    done = wait_for(lambda: (s := local_provider.status(pod.pod_id)) and s.state == POD_EXITED and s)
    assert done.exit_code == 3 and not done.interrupted
    assert local_provider.status("brightrun-never-launched") is None


def test_terminate_kills_the_whole_process_group(local_provider, pod_out):
    local_provider.terminate_grace_s = 0.5
    pod = local_provider.launch(request("brightrun-kill-1", pod_out, IGNORE_TERM="1", SPAWN_CHILD="1"))
    pid = read_pid(pod_out / "pid")
    child_pid = read_pid(pod_out / "child.pid")

    assert local_provider.terminate(pod.pod_id) is True

    assert (pod_out / "sigterm").exists()  # SIGTERM came first, SIGKILL after the grace period
    assert_process_gone(pid)
    assert_process_gone(child_pid)
    status = local_provider.status(pod.pod_id)
    assert status.state == POD_TERMINATED and not status.interrupted
    assert local_provider.list("brightrun-") == []
    assert local_provider.terminate(pod.pod_id) is True  # idempotent
    assert local_provider.terminate("brightrun-unknown") is True


def test_terminate_lets_the_pod_exit_on_sigterm(local_provider, pod_out):
    pod = local_provider.launch(request("brightrun-term-1", pod_out))
    pid = read_pid(pod_out / "pid")

    assert local_provider.terminate(pod.pod_id) is True

    assert_process_gone(pid)
    status = local_provider.status(pod.pod_id)
    assert status.state == POD_TERMINATED and status.exit_code == 75


def test_interrupt_acts_out_a_spot_eviction(local_provider, pod_out):
    pod = local_provider.launch(request("brightrun-spot-1", pod_out))
    pid = read_pid(pod_out / "pid")

    local_provider.interrupt(pod.pod_id)

    assert (pod_out / "sigterm").read_text() == "SIGTERM\n"  # the pod's handler saw it
    assert_process_gone(pid)
    status = local_provider.status(pod.pod_id)
    assert (status.state, status.exit_code, status.interrupted) == (POD_TERMINATED, 75, True)
    assert "saving checkpoint" in local_provider.log_paths(pod.pod_id)[0].read_text()


def test_list_by_prefix_reads_state_from_disk(local_provider, tmp_path, pod_script):
    for name in ("brightrun-aaa-1", "brightrun-bbb-1", "other-ccc-1"):
        out = tmp_path / name
        out.mkdir()
        local_provider.launch(request(name, out))

    fresh = LocalProvider(local_provider.pods_dir, [sys.executable, str(pod_script)], terminate_grace_s=1.0)
    assert [p.name for p in fresh.list("brightrun-")] == ["brightrun-aaa-1", "brightrun-bbb-1"]
    assert all(p.state == POD_RUNNING for p in fresh.list("brightrun-"))

    fresh.terminate("brightrun-aaa-1")
    assert [p.name for p in local_provider.list("brightrun-")] == ["brightrun-bbb-1"]
    assert fresh.find_by_name("brightrun-aaa-1") is None
    assert fresh.find_by_name("brightrun-bbb-1").state == POD_RUNNING


def test_launch_is_idempotent_across_threads_and_instances(local_provider, pod_out, pod_script):
    other = LocalProvider(local_provider.pods_dir, [sys.executable, str(pod_script)])
    req = request("brightrun-once-1", pod_out)
    results = []
    threads = [threading.Thread(target=lambda p=p: results.append(p.launch(req)))
               for p in (local_provider, other, local_provider, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert {r.pod_id for r in results} == {"brightrun-once-1"}
    read_pid(pod_out / "pid")
    assert len((pod_out / "pid").read_text().split()) == 1  # one process started
    assert local_provider.launch(req).state == POD_RUNNING
    assert len((pod_out / "pid").read_text().split()) == 1


def test_launch_after_terminate_starts_a_new_pod(local_provider, pod_out):
    req = request("brightrun-again-1", pod_out)
    local_provider.launch(req)
    read_pid(pod_out / "pid")
    local_provider.terminate(req.name)

    assert local_provider.launch(req).state == POD_RUNNING
    wait_for(lambda: len((pod_out / "pid").read_text().split()) == 2)


def test_pod_outlives_the_process_that_launched_it(local_provider, pod_out, tmp_path, pod_script):
    # A Celery worker launches the pod and dies at once; the exit code is still recorded.
    code = (
        "import sys, os\n"
        "from training.providers.local import LocalProvider\n"
        "from training.providers.base import PodRequest\n"
        f"p = LocalProvider({str(local_provider.pods_dir)!r}, [sys.executable, {str(pod_script)!r}])\n"
        f"p.launch(PodRequest(name='brightrun-orphan-1', gpu_type_id='x', env={{'OUT': {str(pod_out)!r}, "
        "'SLEEP': '0.8', 'EXIT_CODE': '4'}))\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=30)

    assert local_provider.status("brightrun-orphan-1").state == POD_RUNNING
    done = wait_for(lambda: (s := local_provider.status("brightrun-orphan-1")) and s.state == POD_EXITED and s)
    assert done.exit_code == 4


def test_a_command_that_cannot_start_exits_127(tmp_path):
    provider = LocalProvider(tmp_path / "pods", [str(tmp_path / "no-such-program")])
    pod = provider.launch(PodRequest(name="brightrun-bad-1", gpu_type_id="x", env={}))
    done = wait_for(lambda: (s := provider.status(pod.pod_id)) and s.state == POD_EXITED and s)
    assert done.exit_code == 127
    assert "cannot start" in provider.log_paths(pod.pod_id)[1].read_text()


@pytest.mark.parametrize("name", ["../escape", "", "a/b", "-leading-dash", "x" * 200])
def test_unsafe_pod_names_are_refused(local_provider, name):
    with pytest.raises(ProviderError) as info:
        local_provider.launch(PodRequest(name=name, gpu_type_id="x", env={}))
    assert "letters, digits" in info.value.suggestion
    assert not any(Path(local_provider.pods_dir).glob("*escape*"))


def test_status_of_a_killed_wrapper_reports_exited_without_code(local_provider, pod_out):
    pod = local_provider.launch(request("brightrun-crash-1", pod_out))
    read_pid(pod_out / "pid")
    wrapper = json.loads((local_provider.pods_dir / pod.pod_id / "wrapper.json").read_text())
    os.killpg(wrapper["pgid"], 9)  # the machine lost the process, no one recorded anything

    done = wait_for(lambda: (s := local_provider.status(pod.pod_id)) and s.state == POD_EXITED and s)
    assert done.exit_code is None and "killed" in done.detail
