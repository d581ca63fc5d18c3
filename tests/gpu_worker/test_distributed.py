"""Several ranks on one pod: the pure decisions, and 2 processes on gloo against one process.

The CPU stands in for GPUs: `gpu_count=2` starts two ranks through torch's elastic launcher (the
same code torchrun runs), DDP all-reduces on gloo instead of NCCL.
"""
import pytest
from gw_helpers import events_of, of_type, run_worker
from safetensors.torch import load_file

from gpu_worker import distributed, modeling
from gpu_worker.contracts import EXIT_INTERRUPTED, EXIT_OK, JobSpec

LLAMA3_8B = {"hidden_size": 4096, "num_hidden_layers": 32, "vocab_size": 128256, "intermediate_size": 14336,
             "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": False}
LLAMA3_70B = {"hidden_size": 8192, "num_hidden_layers": 80, "vocab_size": 128256, "intermediate_size": 28672,
              "num_attention_heads": 64, "num_key_value_heads": 8, "tie_word_embeddings": False}


def test_parameter_count_from_config_matches_the_published_sizes():
    assert modeling.params_from_config(LLAMA3_8B) == pytest.approx(8.03, abs=0.01)
    assert modeling.params_from_config(LLAMA3_70B) == pytest.approx(70.55, abs=0.05)
    assert modeling.params_from_config({"hidden_size": 8}) is None


def test_parallel_plan():
    assert distributed.plan_parallel("auto", gpu_count=1, params_b=70) == "none"
    assert distributed.plan_parallel("auto", gpu_count=2, params_b=8.03) == "ddp"
    assert distributed.plan_parallel("auto", gpu_count=4, params_b=70.55) == "fsdp"
    assert distributed.plan_parallel("auto", gpu_count=2, params_b=None) == "ddp"
    assert distributed.plan_parallel("fsdp", gpu_count=2, params_b=8) == "fsdp"
    with pytest.raises(ValueError):
        distributed.plan_parallel("zero3", gpu_count=2, params_b=8)


def test_micro_batches_are_dealt_round_robin_and_cover_the_step():
    items = list(range(7))
    shares = [distributed.rank_share(items, distributed.Dist(rank=r, world_size=3)) for r in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(sum(shares, [])) == items


def test_spec_refuses_impossible_gpu_counts():
    base = dict(job_id="j", attempt=1, base_model="m", train_uri="file:///t", val_uri=None, output_uri="file:///o")
    with pytest.raises(ValueError, match="gpu_count"):
        JobSpec(**base, gpu_count=0)
    with pytest.raises(ValueError, match="parallel"):
        JobSpec(**base, gpu_count=2, parallel="zero")
    assert JobSpec.from_env_value(JobSpec(**base, gpu_count=4).to_env_value()).gpu_count == 4


def _losses(events):
    return {e["data"]["step"]: e["data"]["loss"] for e in of_type(events, "metrics")}


# No dropout: each rank draws its own masks, so only a dropout-free run can equal one process.
# 6 packed rows, 5 micro-batches per step: step 1 of an epoch deals 3 + 2 micro-batches, step 2
# has one, so rank 1 has none and joins the all-reduce with a zero-weight pass.
HP = {"lora_dropout": 0.0, "num_epochs": 2.0, "gradient_accumulation_steps": 5}


@pytest.mark.slow
def test_two_ranks_equal_one_process_and_resume_exactly(spec_factory, tmp_path):
    one = spec_factory(hp=HP, checkpoint_every=3, output_uri=(tmp_path / "one").as_uri())
    r1 = run_worker(one, tmp_path / "w-one")
    assert r1.returncode == EXIT_OK, r1.stderr[-3000:]
    single = _losses(events_of(tmp_path / "w-one"))

    two = spec_factory(hp=HP, checkpoint_every=3, output_uri=(tmp_path / "two").as_uri(), gpu_count=2)
    r2 = run_worker(two, tmp_path / "w-two")
    assert r2.returncode == EXIT_OK, r2.stderr[-3000:]
    events = events_of(tmp_path / "w-two" / "rank-0")
    assert not (tmp_path / "w-two" / "rank-1" / "events.jsonl").exists()  # events from rank 0 only
    ddp = _losses(events)
    assert sorted(ddp) == sorted(single) == [1, 2, 3, 4]
    for step, loss in single.items():
        assert abs(ddp[step] - loss) <= 1e-5 * max(1.0, abs(loss)), (step, ddp[step], loss)
    a = load_file(str(tmp_path / "one" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "two" / "adapter" / "adapter_model.safetensors"))
    assert max(float((a[n] - b[n]).abs().max()) for n in a) <= 1e-5
    assert events[-1]["type"] == "completed"

    # SIGTERM on both ranks at a step that is not a checkpoint step, then resume on 2 ranks.
    k = 1
    cut = spec_factory(hp=HP, checkpoint_every=3, output_uri=(tmp_path / "cut").as_uri(), gpu_count=2,
                       test_hooks={"sigterm_at_step": k})
    rc = run_worker(cut, tmp_path / "w-cut")
    assert rc.returncode == EXIT_INTERRUPTED, rc.stderr[-3000:]
    cut_events = events_of(tmp_path / "w-cut" / "rank-0")
    assert cut_events[-1]["type"] == "interrupted" and cut_events[-1]["data"]["checkpoint_step"] == k
    ckpt = cut_events[-1]["data"]["checkpoint_uri"]
    # The checkpoint resumed on one process continues the same run (any number of ranks); first,
    # since the 2-rank resume below prunes the checkpoints of its output prefix.
    solo = spec_factory(hp=HP, checkpoint_every=3, output_uri=(tmp_path / "solo").as_uri(), attempt=2,
                        resume_from=ckpt)
    rs = run_worker(solo, tmp_path / "w-solo")
    assert rs.returncode == EXIT_OK, rs.stderr[-3000:]
    solo_losses = _losses(events_of(tmp_path / "w-solo"))
    assert sorted(solo_losses) == [2, 3, 4]
    for step, loss in solo_losses.items():
        assert abs(loss - ddp[step]) <= 1e-5 * max(1.0, abs(loss)), (step, loss, ddp[step])

    resumed = spec_factory(hp=HP, checkpoint_every=3, output_uri=(tmp_path / "cut").as_uri(), gpu_count=2,
                           attempt=2, resume_from=ckpt)
    rr = run_worker(resumed, tmp_path / "w-resume")
    assert rr.returncode == EXIT_OK, rr.stderr[-3000:]
    after = _losses(events_of(tmp_path / "w-resume" / "rank-0"))
    assert sorted(after) == [s for s in sorted(ddp) if s > k]
    for step, loss in after.items():
        assert abs(loss - ddp[step]) <= 1e-5 * max(1.0, abs(loss)), (step, loss, ddp[step])


@pytest.mark.slow
def test_sigterm_to_the_launcher_reaches_every_rank_and_saves_a_checkpoint(spec_factory, tmp_path):
    """A spot interruption: RunPod signals the pod's first process, which is the launcher."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from gw_brightrun import REPO

    spec = spec_factory(hp=HP, checkpoint_every=100, output_uri=(tmp_path / "out").as_uri(), gpu_count=2,
                        test_hooks={"sleep_per_step_s": 1.5})
    env = dict(os.environ, BRIGHTRUN_JOB_SPEC=spec.to_env_value(), BRIGHTRUN_LOG_LEVEL="WARNING",
               BRIGHTRUN_ALLOW_TEST_HOOKS="1", PYTHONPATH=str(REPO))
    work = tmp_path / "w"
    proc = subprocess.Popen([sys.executable, "-m", "gpu_worker", "run", "--work-dir", str(work)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    events_file = work / "rank-0" / "events.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if events_file.exists() and '"type":"metrics"' in events_file.read_text():
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, err[-3000:]
    events = events_of(work / "rank-0")
    last = events[-1]
    assert last["type"] == "interrupted" and last["data"]["reason"] == "sigterm", last
    step = last["data"]["checkpoint_step"]
    assert step >= 1 and step == max(_losses(events))  # a checkpoint at the step where it stopped
    assert (tmp_path / "out" / "checkpoints" / f"step-{step}" / "COMPLETE").is_file()


@pytest.mark.slow
def test_gpu_benchmark_dry_run_prints_its_plan_and_runs_the_toy_size():
    import json
    import subprocess
    import sys

    from gw_brightrun import REPO

    out = subprocess.run([sys.executable, "benchmarks/gpu/qlora_throughput.py", "--dry-run", "--loss", "all",
                          "--steps", "1", "--warmup", "1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "arch=8b loss=plain gpus=1 parallel=none" in out.stdout
    assert "arch=70b (4 of 80 layers) loss=chunked" in out.stdout
    results = json.loads("[" + out.stdout[out.stdout.index("{"):].replace("}\n{", "},\n{") + "]")
    assert [r["loss"] for r in results] == ["plain", "chunked"]
    assert all(r["tokens_per_s"] > 0 for r in results)
