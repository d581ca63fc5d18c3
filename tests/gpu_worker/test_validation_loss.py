"""Validation loss during training: when it is measured, what it equals, and early stopping on it."""
import math

import pytest
from gw_helpers import events_of, of_type, run_worker
from safetensors.torch import load_file

from gpu_worker.contracts import EXIT_OK, Hyperparameters
from gpu_worker.presets import hyperparameter_errors


def test_evaluation_and_early_stopping_settings_are_validated():
    errors = hyperparameter_errors(Hyperparameters(eval_every_steps=-1, early_stopping_patience=1.5,
                                                   early_stopping_min_delta=-0.1))
    assert any("eval_every_steps must be >= 0" in e for e in errors)
    assert any("early_stopping_patience must be an integer" in e for e in errors)
    assert any("early_stopping_min_delta must be >= 0" in e for e in errors)
    assert hyperparameter_errors(Hyperparameters(eval_every_steps=10, early_stopping_patience=3)) == []


@pytest.mark.slow
def test_validation_loss_at_each_checkpoint_equals_the_final_perplexity(spec_factory, tmp_path):
    spec = spec_factory(hp={"lora_dropout": 0.0, "num_epochs": 2.0}, checkpoint_every=3)
    result = run_worker(spec, tmp_path / "w")
    assert result.returncode == EXIT_OK, result.stderr[-3000:]
    events = events_of(tmp_path / "w")
    metrics = {e["data"]["step"]: e["data"] for e in of_type(events, "metrics")}
    total = max(metrics)
    steps_per_epoch = total // 2
    evaluated = sorted(s for s, m in metrics.items() if "valid_loss" in m)
    want = sorted({s for s in metrics if s % 3 == 0 or s % steps_per_epoch == 0} | {total})
    assert evaluated == want, (evaluated, want)  # at every checkpoint and at the end, nowhere else
    for s in evaluated:
        m = metrics[s]
        assert m["valid_loss"] > 0 and 0 <= m["valid_mean_token_accuracy"] <= 1 and m["valid_tokens"] > 100
    assert all(0 <= m["train_mean_token_accuracy"] <= 1 for m in metrics.values())
    saved = {e["data"]["step"]: e["data"] for e in of_type(events, "checkpoint_saved")}
    assert all(saved[s]["valid_loss"] == metrics[s]["valid_loss"] for s in saved)
    # The last validation loss is the held-out NLL per token of the final adapter: the evaluating
    # stage measures the same thing independently (conversation by conversation).
    done = events[-1]["data"]
    assert done["final_metrics"]["valid_loss"] == metrics[total]["valid_loss"]
    assert math.log(done["eval"]["adapted_perplexity"]) == pytest.approx(metrics[total]["valid_loss"], abs=1e-4)


@pytest.mark.slow
def test_early_stopping_stops_and_keeps_the_best_adapter(spec_factory, tmp_path):
    # min_delta far above any change: the first evaluation is the best, the next one exhausts
    # a patience of 1, so training stops at step 2 of 4 with step 1's adapter.
    hp = {"lora_dropout": 0.0, "num_epochs": 2.0, "eval_every_steps": 1, "early_stopping_patience": 1,
          "early_stopping_min_delta": 100.0}
    spec = spec_factory(hp=hp, checkpoint_every=100, keep_checkpoints=1)
    result = run_worker(spec, tmp_path / "w")
    assert result.returncode == EXIT_OK, result.stderr[-3000:]
    events = events_of(tmp_path / "w")
    steps = [e["data"]["step"] for e in of_type(events, "metrics")]
    assert steps == [1, 2]
    note = [e for e in of_type(events, "log") if e["data"].get("early_stopping")]
    assert note and "early stopping at step 2" in note[0]["data"]["message"]
    done = events[-1]
    assert done["type"] == "completed"
    es = done["data"]["early_stopping"]
    assert es["best_step"] == 1 and es["restored"] is True and es["step"] == 2
    # The best checkpoint survived pruning (keep_checkpoints=1) and the final adapter is its weights.
    best = load_file(str(tmp_path / "out" / "checkpoints" / "step-1" / "adapter" / "adapter_model.safetensors"))
    final = load_file(str(tmp_path / "out" / "adapter" / "adapter_model.safetensors"))
    last = load_file(str(tmp_path / "out" / "checkpoints" / "step-2" / "adapter" / "adapter_model.safetensors"))
    assert all(float((best[n] - final[n]).abs().max()) == 0 for n in best)
    assert any(float((last[n] - final[n]).abs().max()) > 0 for n in last)  # step 2 did change the weights
