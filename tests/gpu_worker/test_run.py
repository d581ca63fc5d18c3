"""A full run of `gpu_worker` on the tiny model over part of the real data file."""

import pytest
from gw_helpers import SECRET, Receiver, json_load, of_type

from gpu_worker import signing
from gpu_worker.contracts import EXIT_OK, STAGES
from gpu_worker.events import read_events
from gpu_worker.runner import run_job


@pytest.mark.slow
def test_full_run_reports_every_stage_and_improves_validation_perplexity(spec_factory, tmp_path, tiny_model_dir):
    rx = Receiver()
    try:
        spec = spec_factory(callback_url=rx.url + "/api/v1/pod-events/", checkpoint_every=3)
        rc = run_job(spec, tmp_path / "work")
    finally:
        rx.close()
    assert rc == EXIT_OK
    events = read_events(tmp_path / "work" / "events.jsonl")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["data"]["stage"] for e in of_type(events, "stage_changed")] == list(STAGES)
    assert events[-1]["type"] == "completed"

    # Every event reached the receiver once, in order (metrics perhaps batched when the queue backed
    # up), signed with the job's secret.
    assert [e["seq"] for e in rx.emitted()] == [e["seq"] for e in events]
    assert len(rx.requests) <= len(events)
    for r in rx.requests:
        signing.verify(SECRET, r["headers"], r["body"])

    metrics = [e["data"] for e in of_type(events, "metrics")]
    total = metrics[0]["total_steps"]
    assert [m["step"] for m in metrics] == list(range(1, total + 1))
    for m in metrics:
        assert {"loss", "learning_rate", "grad_norm", "tokens_per_s", "eta_s", "epoch"} <= set(m)

    # Checkpoints every 3 steps and at each epoch end; the last two kept.
    saved = [e["data"] for e in of_type(events, "checkpoint_saved")]
    per_epoch = total // 2
    expected = sorted({s for s in range(1, total + 1) if s % 3 == 0 or s % per_epoch == 0})
    assert [c["step"] for c in saved] == expected
    out = tmp_path / "out"
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept == sorted(f"step-{s}" for s in expected[-2:])
    assert all((out / "checkpoints" / k / "COMPLETE").exists() for k in kept)

    done = events[-1]["data"]
    ev = done["eval"]
    assert ev["tokens"] > 0 and ev["adapted_perplexity"] < ev["base_perplexity"]
    assert done["artifacts"]["adapter_uri"] == (out / "adapter").as_uri()
    assert done["train_tokens"] > 0 and done["tokens_per_s"] > 0 and done["final_metrics"]["step"] == total
    assert json_load(out / "eval.json") == ev
    assert len(json_load(out / "metrics.json")["steps"]) == total

    # The adapter is a valid PEFT adapter: it loads back and gives the same perplexity.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = out / "adapter"
    assert (adapter / "adapter_model.safetensors").exists() and (adapter / "adapter_config.json").exists()
    config = json_load(adapter / "adapter_config.json")
    assert set(config["target_modules"]) == set(spec.hyperparameters.target_modules)
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    assert tokenizer.chat_template
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter)
    from gpu_worker.data import PackedDataset, read_jsonl, tokenize_all
    from gpu_worker.evaluate import perplexity

    convs, _ = tokenize_all(tokenizer, read_jsonl(spec.val_uri[len("file://"):]), 2048)
    batches = PackedDataset.build(convs, max_seq_len=2048, micro_batch_size=1, gradient_accumulation_steps=1,
                                  shuffle_seed=0).all_micro_batches()
    with torch.no_grad():
        ppl, _ = perplexity(model, batches)
    assert abs(ppl - ev["adapted_perplexity"]) / ev["adapted_perplexity"] < 1e-4
