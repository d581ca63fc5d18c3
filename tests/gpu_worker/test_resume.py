"""SIGTERM, checkpoint, resume: the resumed run matches an uninterrupted one step for step."""
import pytest
from gw_helpers import events_of, of_type, run_worker
from safetensors.torch import load_file

from gpu_worker.contracts import EXIT_INTERRUPTED, EXIT_OK


def _losses(events):
    return {e["data"]["step"]: e["data"]["loss"] for e in of_type(events, "metrics")}


@pytest.mark.slow
def test_sigterm_then_resume_equals_uninterrupted_run(spec_factory, tmp_path):
    # lora_dropout > 0: the resumed run must restore the RNG to draw the same dropout masks.
    hp = {"lora_dropout": 0.1, "num_epochs": 1.5}  # 4 steps per epoch: 6 steps, an epoch end at 4
    full_spec = spec_factory(hp=hp, checkpoint_every=2, output_uri=(tmp_path / "full").as_uri())
    full = run_worker(full_spec, tmp_path / "w-full")
    assert full.returncode == EXIT_OK, full.stderr[-3000:]
    full_events = events_of(tmp_path / "w-full")

    k = 3  # not a checkpoint step: the worker must checkpoint on SIGTERM
    cut_spec = spec_factory(hp=hp, checkpoint_every=2, output_uri=(tmp_path / "cut").as_uri(),
                            test_hooks={"sigterm_at_step": k})
    cut = run_worker(cut_spec, tmp_path / "w-cut")
    assert cut.returncode == EXIT_INTERRUPTED, cut.stderr[-3000:]
    cut_events = events_of(tmp_path / "w-cut")
    last = cut_events[-1]
    assert last["type"] == "interrupted"
    assert last["data"]["checkpoint_step"] == k and last["data"]["reason"] == "sigterm"
    ckpt_uri = last["data"]["checkpoint_uri"]
    assert ckpt_uri == (tmp_path / "cut" / "checkpoints" / f"step-{k}").as_uri()
    assert max(_losses(cut_events)) == k  # stopped at the step boundary, no step after k
    saved = [e["data"]["step"] for e in of_type(cut_events, "checkpoint_saved")]
    assert saved == [2, k] and cut_events.index(of_type(cut_events, "checkpoint_saved")[-1]) < len(cut_events) - 1

    resume_spec = spec_factory(hp=hp, checkpoint_every=2, output_uri=(tmp_path / "cut").as_uri(),
                               attempt=2, resume_from=ckpt_uri)
    resumed = run_worker(resume_spec, tmp_path / "w-resume")
    assert resumed.returncode == EXIT_OK, resumed.stderr[-3000:]
    resumed_events = events_of(tmp_path / "w-resume")

    full_losses, resumed_losses = _losses(full_events), _losses(resumed_events)
    assert sorted(resumed_losses) == [s for s in sorted(full_losses) if s > k]  # no replayed step
    for step, loss in resumed_losses.items():
        assert abs(loss - full_losses[step]) <= 1e-6, (step, loss, full_losses[step])
    assert {s: full_losses[s] for s in range(1, k + 1)} == _losses(cut_events)

    a = load_file(str(tmp_path / "full" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    assert max(float((a[n] - b[n]).abs().max()) for n in a) <= 1e-6
    assert any(float(t.abs().max()) > 0 for n, t in a.items() if "lora_B" in n)  # it did train
    # Perplexity agrees too.
    assert abs(resumed_events[-1]["data"]["eval"]["adapted_perplexity"]
               - full_events[-1]["data"]["eval"]["adapted_perplexity"]) < 1e-4
