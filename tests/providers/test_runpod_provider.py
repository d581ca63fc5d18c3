"""The RunPod provider: the real runpod SDK (1.12) against the fake GraphQL server."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest

from gpu_worker.contracts import SPEC_ENV_VAR, JobSpec
from tests.fakes.runpod_server import NO_CAPACITY_MESSAGE, FakeRunPodServer
from training.providers.base import (
    POD_EXITED,
    POD_RUNNING,
    POD_STARTING,
    POD_TERMINATED,
    NoCapacityError,
    PodRequest,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailableError,
)
from training.providers.local import REPO_ROOT
from training.providers.runpod import RunPodProvider

GPU = "NVIDIA GeForce RTX 4090"


def make_spec(**overrides) -> JobSpec:
    values = dict(job_id="0d7c7a52-5a7c-4d3c-9c43-1b2f3c4d5e6f", attempt=1, base_model="meta-llama/Llama-3.1-8B",
                  train_uri="s3://bucket/train.jsonl", val_uri=None, output_uri="s3://bucket/out/",
                  webhook_secret="whsec", test_hooks={"note": 'a "quoted" value\nand a second line \\ too'})
    values.update(overrides)
    return JobSpec(**values)


def pod_request(name: str = "brightrun-0d7c-1", **overrides) -> PodRequest:
    values = dict(name=name, gpu_type_id=GPU, env={SPEC_ENV_VAR: make_spec().to_env_value()})
    values.update(overrides)
    return PodRequest(**values)


def test_create_on_demand_pod(runpod_provider, runpod_server):
    pod = runpod_provider.launch(pod_request())

    assert pod.state in (POD_STARTING, POD_RUNNING) and pod.name == "brightrun-0d7c-1" and not pod.spot
    # create_pod checks the GPU type before it deploys; we look for a pod of that name first, and
    # read the new pod once for its own price (the create answer has none).
    assert runpod_server.operations() == ["myPods", "gpuTypes", "podFindAndDeployOnDemand", "pod"]
    assert pod.cost_per_hr == pytest.approx(0.69) and pod.started_at is not None
    assert {r.api_key for r in runpod_server.requests} == {"test-key-123"}
    deploy = runpod_server.requests_for("podFindAndDeployOnDemand")[0].input
    assert deploy["gpuTypeId"] == GPU and deploy["cloudType"] == "SECURE" and deploy["gpuCount"] == 1
    assert deploy["imageName"] == "brightrun/gpu-worker:test"
    assert deploy["containerDiskInGb"] == 40

    status = runpod_provider.status(pod.pod_id)
    assert status.state == POD_RUNNING and status.cost_per_hr == pytest.approx(0.69)
    assert status.gpu_type_id == "RTX 4090" and status.started_at is not None


def test_the_base64_spec_survives_quotes_and_newlines(runpod_provider, runpod_server):
    spec = make_spec()
    assert '"' in spec.test_hooks["note"] and "\n" in spec.test_hooks["note"]

    pod = runpod_provider.launch(pod_request(env={SPEC_ENV_VAR: spec.to_env_value(), "OTHER": "plain"}))

    env = runpod_server.pod_env(pod.pod_id)
    assert JobSpec.from_env_value(env[SPEC_ENV_VAR]) == spec
    assert env["OTHER"] == "plain"


def test_raw_json_in_env_is_refused_before_it_breaks_the_request(runpod_provider, runpod_server, runpod_sdk):
    raw = '{"note": "a \\"quote\\""}'
    with pytest.raises(ProviderError) as info:
        runpod_provider.launch(pod_request(env={SPEC_ENV_VAR: raw}))
    assert "base64" in info.value.suggestion
    assert runpod_server.requests == []

    # What would happen without the check: the SDK pastes it into the GraphQL text unescaped.
    with pytest.raises(ProviderError) as sent:
        runpod_provider._call("creating a pod", runpod_sdk.create_pod, name="x", image_name="img",
                              gpu_type_id=GPU, env={"SPEC": raw})
    assert "Syntax Error" in sent.value.message and not sent.value.transient


def test_create_spot_pod_carries_the_bid(runpod_provider, runpod_server):
    pod = runpod_provider.launch(pod_request(spot=True, bid_per_gpu=0.31, cloud_type="COMMUNITY"))

    assert pod.spot
    rent = runpod_server.requests_for("podRentInterruptable")
    assert len(rent) == 1 and not runpod_server.requests_for("podFindAndDeployOnDemand")
    assert rent[0].input["bidPerGpu"] == pytest.approx(0.31)
    assert rent[0].input["cloudType"] == "COMMUNITY" and rent[0].input["gpuTypeId"] == GPU
    assert JobSpec.from_env_value(runpod_server.pod_env(pod.pod_id)[SPEC_ENV_VAR]) == make_spec()
    status = runpod_provider.status(pod.pod_id)
    assert status.spot and status.cost_per_hr == pytest.approx(0.31)


def test_spot_without_a_bid_is_refused(runpod_provider, runpod_server):
    with pytest.raises(ProviderError) as info:
        runpod_provider.launch(pod_request(spot=True, bid_per_gpu=None))
    assert "bid" in info.value.message
    assert "podRentInterruptable" not in runpod_server.operations()


def test_status_maps_runpod_states(runpod_provider, runpod_server):
    runpod_server.boot_s = 60
    starting = runpod_provider.launch(pod_request("brightrun-a-1"))
    assert runpod_provider.status(starting.pod_id).state == POD_STARTING

    spot = runpod_provider.launch(pod_request("brightrun-b-1", spot=True, bid_per_gpu=0.3))
    runpod_server.evict(spot.pod_id)
    evicted = runpod_provider.status(spot.pod_id)
    assert (evicted.state, evicted.interrupted) == (POD_TERMINATED, True)
    # An evicted pod still exists (and costs storage) until we terminate it.
    assert [p.pod_id for p in runpod_provider.list("brightrun-b-")] == [spot.pod_id]

    stopped = runpod_server.add_pod("brightrun-c-1", desired_status="EXITED")
    assert runpod_provider.status(stopped).state == POD_EXITED

    assert runpod_provider.status("doesnotexist01") is None


def test_terminate_polls_until_the_pod_is_gone(runpod_provider, runpod_server):
    runpod_server.terminate_polls = 3
    pod = runpod_provider.launch(pod_request())
    runpod_server.requests.clear()

    assert runpod_provider.terminate(pod.pod_id) is True

    ops = runpod_server.operations()
    assert ops[:2] == ["pod", "podTerminate"]
    assert ops[2:] == ["pod"] * 4  # three answers still show the pod (TERMINATED), the fourth is null
    assert runpod_provider.status(pod.pod_id) is None
    runpod_server.requests.clear()
    assert runpod_provider.terminate(pod.pod_id) is True  # idempotent: one look, nothing to do
    assert runpod_server.operations() == ["pod"]


def test_terminate_reports_false_when_runpod_keeps_the_pod(runpod_provider, runpod_server):
    runpod_server.terminate_polls = 10_000
    runpod_provider.terminate_confirm_s = 0.1
    pod = runpod_provider.launch(pod_request())
    assert runpod_provider.terminate(pod.pod_id) is False


def test_list_filters_by_prefix_and_skips_terminated(runpod_provider, runpod_server):
    mine = [runpod_provider.launch(pod_request(f"brightrun-job{i}-1")).pod_id for i in range(3)]
    runpod_server.add_pod("someone-elses-pod")
    runpod_server.terminate_polls = 5
    runpod_provider.terminate_confirm_s = 0  # leave it in its TERMINATED phase
    runpod_provider.terminate(mine[0])

    listed = runpod_provider.list("brightrun-")
    assert sorted(p.pod_id for p in listed) == sorted(mine[1:])
    assert runpod_provider.find_by_name("brightrun-job2-1").pod_id == mine[2]


def test_launch_adopts_an_existing_pod_of_the_same_name(runpod_provider, runpod_server):
    first = runpod_provider.launch(pod_request())
    second = runpod_provider.launch(pod_request())
    assert second.pod_id == first.pod_id
    assert len(runpod_server.requests_for("podFindAndDeployOnDemand")) == 1


def test_launch_with_fallback_tries_the_next_cloud(runpod_provider, runpod_server):
    runpod_server.sold_out.add((GPU, "SECURE"))
    pod, used = runpod_provider.launch_with_fallback(
        pod_request(), [{"cloud_type": "COMMUNITY"}, {"gpu_type_id": "NVIDIA A40"}]
    )
    assert used.cloud_type == "COMMUNITY" and used.gpu_type_id == GPU
    assert runpod_server.pods[pod.pod_id]["_cloud_type"] == "COMMUNITY"

    runpod_server.sold_out.update({GPU, "NVIDIA A40"})
    with pytest.raises(NoCapacityError) as info:
        runpod_provider.launch_with_fallback(pod_request("brightrun-other-1"), [{"gpu_type_id": "NVIDIA A40"}])
    assert GPU in info.value.message and "NVIDIA A40" in info.value.message


def test_gpu_price_query(runpod_provider, runpod_server):
    gpu = runpod_provider.gpu_type("NVIDIA A40", gpu_count=2)
    assert gpu["securePrice"] == pytest.approx(0.44) and gpu["secureSpotPrice"] == pytest.approx(0.24)
    assert gpu["lowestPrice"]["minimumBidPrice"] == pytest.approx(0.2)
    assert "gpuCount: 2" in runpod_server.requests[-1].query


# -- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "fault, options, error_type, in_message, in_suggestion",
    [
        ("no_capacity", {"operation": "podFindAndDeployOnDemand"}, NoCapacityError,
         "no capacity", "another GPU type"),
        ("http_500", {}, ProviderUnavailableError, "HTTP 500 with a non-JSON body", "retried automatically"),
        ("http_500", {"status": 502, "body": "<html>Bad Gateway</html>"}, ProviderUnavailableError,
         "HTTP 502", "status.runpod.io"),
        ("graphql_error", {"status": 500}, ProviderUnavailableError, "Something went wrong", "retried"),
        ("graphql_error", {"message": "Something went wrong. Please try again later or contact support."},
         ProviderUnavailableError, "HTTP 200", "retried"),
        ("http_401", {}, ProviderAuthError, "rejected the API key", "RUNPOD_API_KEY"),
        ("drop", {}, ProviderUnavailableError, "could not connect to RunPod", "RUNPOD_API_BASE_URL"),
        ("graphql_error", {"message": "Image name is invalid", "operation": "podFindAndDeployOnDemand"},
         ProviderError, "Image name is invalid", "image"),
    ],
)
def test_error_answers_map_to_provider_errors(runpod_provider, runpod_server, fault, options, error_type,
                                              in_message, in_suggestion):
    runpod_server.fail_next(fault, **options)
    with pytest.raises(ProviderError) as info:
        runpod_provider.launch(pod_request())
    error = info.value
    assert type(error) is error_type
    assert in_message in error.message
    assert in_suggestion in error.suggestion
    assert error.transient == (error_type in (NoCapacityError, ProviderUnavailableError))
    assert str(error).startswith(error.message) and error.suggestion in str(error)


def test_capacity_error_for_spot(runpod_provider, runpod_server):
    runpod_server.sold_out.add(GPU)
    with pytest.raises(NoCapacityError) as info:
        runpod_provider.launch(pod_request(spot=True, bid_per_gpu=0.3))
    assert NO_CAPACITY_MESSAGE in info.value.message and info.value.error_class == "no_capacity"


def test_timeout_maps_to_unavailable(runpod_provider, runpod_server):
    runpod_provider.timeout_s = 0.3
    runpod_server.fail_next("delay", seconds=1.5, operation="pod")
    with pytest.raises(ProviderUnavailableError) as info:
        runpod_provider.status("abcdefabcdef12")
    assert "did not answer within 0.3 s" in info.value.message


def test_a_slow_answer_within_the_timeout_is_fine(runpod_provider, runpod_server):
    pod = runpod_provider.launch(pod_request())
    runpod_server.fail_next("delay", seconds=0.3, operation="pod")
    assert runpod_provider.status(pod.pod_id).state == POD_RUNNING


def test_wrong_or_missing_key(runpod_sdk, runpod_server):
    wrong = RunPodProvider(api_key="not-the-key", api_base_url=runpod_server.base_url, image="img")
    with pytest.raises(ProviderAuthError) as info:
        wrong.list("brightrun-")
    assert "HTTP 401" in info.value.message and not info.value.transient

    missing = RunPodProvider(api_key="", api_base_url=runpod_server.base_url, image="img")
    with pytest.raises(ProviderAuthError) as info:
        missing.list("brightrun-")
    assert "RUNPOD_API_KEY" in info.value.suggestion
    assert [r.api_key for r in runpod_server.requests] == ["not-the-key"]  # the empty key never went out


def test_unknown_gpu_type(runpod_provider):
    with pytest.raises(ProviderError) as info:
        runpod_provider.launch(pod_request(gpu_type_id="NVIDIA GeForce GTX 9999"))
    assert type(info.value) is ProviderError and "GPU type" in info.value.message
    assert "NVIDIA GeForce RTX 4090" in info.value.suggestion


def test_connection_refused(runpod_sdk):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = RunPodProvider(api_key="k", api_base_url=f"http://127.0.0.1:{port}", image="img", timeout_s=2)
    with pytest.raises(ProviderUnavailableError) as info:
        provider.status("abcdefabcdef12")
    assert f"127.0.0.1:{port}" in info.value.message


def test_missing_image(runpod_sdk, runpod_server):
    provider = RunPodProvider(api_key="test-key-123", api_base_url=runpod_server.base_url)
    with pytest.raises(ProviderError) as info:
        provider.launch(pod_request())
    assert "RUNPOD_IMAGE" in info.value.suggestion


# -- the SDK's globals ----------------------------------------------------------------------------

def test_sdk_globals_are_put_back_after_each_call(runpod_provider, runpod_sdk, monkeypatch):
    monkeypatch.setattr(runpod_sdk, "api_key", "someone-elses-key")
    monkeypatch.setenv("RUNPOD_API_BASE_URL", "https://example.invalid")
    runpod_provider.list("brightrun-")
    runpod_provider.status("abcdefabcdef12")
    assert runpod_sdk.api_key == "someone-elses-key"
    assert os.environ["RUNPOD_API_BASE_URL"] == "https://example.invalid"
    assert runpod_sdk.api.graphql.requests.__name__ == "requests"


def test_two_accounts_in_one_process_never_mix(runpod_sdk):
    with FakeRunPodServer(api_key="key-a") as a, FakeRunPodServer(api_key="key-b") as b:
        pa = RunPodProvider(api_key="key-a", api_base_url=a.base_url, image="img")
        pb = RunPodProvider(api_key="key-b", api_base_url=b.base_url, image="img")
        errors = []

        def work(provider, prefix):
            try:
                for i in range(5):
                    provider.launch(pod_request(f"{prefix}-{i}-1"))
                    provider.list(prefix)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(pa, "brightrun-a")),
                   threading.Thread(target=work, args=(pb, "brightrun-b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        assert errors == []
        assert {r.api_key for r in a.requests} == {"key-a"} and {r.api_key for r in b.requests} == {"key-b"}
        assert len(a.pods) == 5 and len(b.pods) == 5


@pytest.mark.slow
def test_a_personal_runpod_config_is_never_used(tmp_path):
    """The SDK reads ~/.runpod/config.toml when imported; run in a fresh interpreter to see it."""
    home = tmp_path / "home"
    (home / ".runpod").mkdir(parents=True)
    (home / ".runpod" / "config.toml").write_text('[default]\napi_key = "personal-key"\n')
    with FakeRunPodServer(api_key="service-key") as server:
        code = (
            "import runpod\n"
            "assert runpod.api_key == 'personal-key', runpod.api_key\n"
            "from training.providers.runpod import RunPodProvider\n"
            f"p = RunPodProvider(api_key='service-key', api_base_url={server.base_url!r}, image='img')\n"
            "print(len(p.list('brightrun-')))\n"
            "assert runpod.api_key == 'personal-key'\n"
        )
        env = {"HOME": str(home), "PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT)}
        result = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert [r.api_key for r in server.requests] == ["service-key"]


def test_launch_returns_the_pods_own_rate_and_the_fake_bills_like_runpod(runpod_provider, runpod_server):
    """The rate a pod really costs comes back from launch (community on-demand, spot at its bid),
    the pod reports its uptime, and the fake's ledger bills each pod from rent to terminate."""
    clock = {"t": 1_800_000_000.0}
    runpod_server.clock = lambda: clock["t"]
    community = runpod_provider.launch(pod_request("brightrun-c-1", cloud_type="COMMUNITY"))
    spot = runpod_provider.launch(pod_request("brightrun-s-1", spot=True, bid_per_gpu=0.31))
    assert community.cost_per_hr == pytest.approx(0.34) and spot.cost_per_hr == pytest.approx(0.31)
    assert community.started_at == pytest.approx(clock["t"], abs=1)
    clock["t"] += 600
    status = runpod_provider.status(community.pod_id)
    assert status.uptime_s == pytest.approx(600, abs=1)
    runpod_server.evict(spot.pod_id)
    evicted = runpod_provider.status(spot.pod_id)
    assert evicted.state == POD_TERMINATED and evicted.interrupted and evicted.ended_at == pytest.approx(clock["t"], abs=1)
    clock["t"] += 300
    assert runpod_provider.terminate(community.pod_id)
    bill = {line["name"]: line for line in runpod_server.ledger()}
    assert bill["brightrun-c-1"]["seconds"] == 900 and bill["brightrun-s-1"]["seconds"] == 600
    assert runpod_server.ledger_total("brightrun-c-1") == pytest.approx(900 * 0.34 / 3600)
    # A refused create leaves no line on the bill.
    runpod_server.sold_out.add(GPU)
    with pytest.raises(NoCapacityError):
        runpod_provider.launch(pod_request("brightrun-n-1"))
    assert runpod_server.ledger_total("brightrun-n-1") == 0
