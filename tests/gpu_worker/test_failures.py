"""Each failure class is reported as a `failed` event with its classification and fix."""
import errno
import os

import pytest
from gw_helpers import of_type

from gpu_worker.contracts import EXIT_FAILED, EXIT_OK, Hyperparameters
from gpu_worker.events import read_events
from gpu_worker.failures import classify
from gpu_worker.runner import run_job


def _run(spec, tmp_path):
    rc = run_job(spec, tmp_path / "work")
    events = read_events(tmp_path / "work" / "events.jsonl")
    return rc, events


def _failed(spec, tmp_path):
    rc, events = _run(spec, tmp_path)
    assert rc == EXIT_FAILED
    assert events[-1]["type"] == "failed"
    return events[-1]["data"], events


@pytest.mark.slow
def test_cuda_oom_halves_micro_batch_and_doubles_accumulation(spec_factory, tmp_path, allow_hooks):
    spec = spec_factory(hp={"micro_batch_size": 2, "gradient_accumulation_steps": 2},
                        test_hooks={"oom_at_step": 2})
    data, events = _failed(spec, tmp_path)
    assert data["error_class"] == "cuda_oom"
    assert data["fix"] == {"micro_batch_size": 1, "gradient_accumulation_steps": 4}
    assert "at step 2" in data["suggestion"] and data["stage"] == "training"
    assert len(of_type(events, "metrics")) == 1


def test_cuda_oom_at_micro_batch_one_shortens_sequences():
    info = classify(RuntimeError("CUDA out of memory. Tried to allocate 1 GiB"),
                    Hyperparameters(micro_batch_size=1, max_seq_len=4096))
    assert info.error_class == "cuda_oom" and info.fix == {"max_seq_len": 2048}


def test_nan_loss_suggests_a_lower_learning_rate(spec_factory, tmp_path, allow_hooks):
    data, _ = _failed(spec_factory(test_hooks={"nan_at_step": 1}), tmp_path)
    assert data["error_class"] == "nan_loss"
    assert data["fix"] == {"learning_rate": pytest.approx(3e-3 / 4)}
    assert "learning_rate" in data["suggestion"]


@pytest.mark.parametrize("stage", ["preprocessing", "finalizing"])
def test_disk_full(spec_factory, tmp_path, allow_hooks, stage):
    spec = spec_factory(hp={"num_epochs": 0.25}, test_hooks={"disk_full_at_stage": stage})  # one step
    data, events = _failed(spec, tmp_path)
    assert data["error_class"] == "disk_full" and data["stage"] == stage
    assert "disk" in data["suggestion"]


def test_dataset_unreachable(spec_factory, tmp_path):
    data, _ = _failed(spec_factory(train_uri=(tmp_path / "gone.jsonl").as_uri()), tmp_path)
    assert data["error_class"] == "dataset_unreachable" and "train split" in data["message"]
    assert data["stage"] == "preprocessing"


def test_dataset_unreachable_over_http(spec_factory, tmp_path):
    from gw_helpers import free_port

    data, _ = _failed(spec_factory(train_uri=f"http://127.0.0.1:{free_port()}/train.jsonl?sig=x"), tmp_path)
    assert data["error_class"] == "dataset_unreachable" and "sig=x" not in data["message"]


def test_model_not_found(spec_factory, tmp_path):
    data, _ = _failed(spec_factory(base_model=str(tmp_path / "no-model")), tmp_path)
    assert data["error_class"] == "model_not_found"


def test_model_gated_is_recognised():
    from huggingface_hub.errors import GatedRepoError

    # Built without an HTTP response, as the hub client would raise it for a 401 on a gated repo.
    exc = GatedRepoError.__new__(GatedRepoError)
    Exception.__init__(exc, "401 Client Error. Cannot access gated repo for url https://huggingface.co/meta-llama/x")
    info = classify(exc)
    assert info.error_class == "model_gated" and "token" in info.suggestion


def test_invalid_config_before_any_work(spec_factory, tmp_path):
    spec = spec_factory(hp={"learning_rate": -0.1})
    data, events = _failed(spec, tmp_path)
    assert data["error_class"] == "invalid_config"
    assert "learning_rate must be > 0 (got -0.1)" in data["message"]
    assert not of_type(events, "stage_changed")


def test_seq_len_above_model_context(spec_factory, tmp_path):
    data, _ = _failed(spec_factory(hp={"max_seq_len": 16384}), tmp_path)
    assert data["error_class"] == "invalid_config"
    assert "max_seq_len 16384 exceeds the model's context of 8192" in data["message"]


def test_no_cuda_for_4bit(spec_factory, tmp_path):
    data, _ = _failed(spec_factory(quantization="nf4"), tmp_path)
    assert data["error_class"] == "no_cuda_for_4bit" and "quantization" in data["suggestion"]


def test_unknown_error_keeps_type_message_and_traceback(spec_factory, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    data, _ = _failed(spec_factory(train_uri=bad.as_uri()), tmp_path)
    assert data["error_class"] == "unknown"
    assert data["message"].startswith("ValueError: train.jsonl line 1 is not valid JSON")
    assert "Traceback" in data["traceback_tail"] or "read_jsonl" in data["traceback_tail"]


@pytest.mark.slow
def test_max_runtime_stops_with_a_checkpoint(spec_factory, tmp_path, allow_hooks):
    spec = spec_factory(max_runtime_s=1, test_hooks={"sleep_per_step_s": 0.6})
    data, events = _failed(spec, tmp_path)
    assert data["error_class"] == "max_runtime_exceeded"
    assert data["checkpoint_uri"] and data["checkpoint_step"] == data["step"] >= 1
    assert (tmp_path / "out" / "checkpoints" / f"step-{data['step']}" / "COMPLETE").exists()


def test_hooks_ignored_without_the_env_flag(spec_factory, tmp_path, monkeypatch):
    monkeypatch.delenv("BRIGHTRUN_ALLOW_TEST_HOOKS", raising=False)
    spec = spec_factory(hp={"num_epochs": 0.25}, val_uri=None, test_hooks={"disk_full_at_stage": "preprocessing"})
    rc, events = _run(spec, tmp_path)
    assert rc == EXIT_OK and events[-1]["type"] == "completed"
    assert events[-1]["data"]["eval"]["tokens"] == 0  # no validation split: reported, not failed


def test_disk_full_recognised_from_errno():
    assert classify(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))).error_class == "disk_full"


@pytest.mark.slow
def test_unreachable_control_plane_stops_the_pod(spec_factory, tmp_path, allow_hooks):
    from gw_helpers import free_port

    spec = spec_factory(callback_url=f"http://127.0.0.1:{free_port()}/hook", heartbeat_timeout_s=1,
                        test_hooks={"sleep_per_step_s": 0.5})
    data, _ = _failed(spec, tmp_path)
    assert data["error_class"] == "control_plane_unreachable"
    assert data["checkpoint_uri"] and data["checkpoint_step"] >= 1
