"""lm-evaluation-harness on the CPU: the project's shipped task (20 general-knowledge questions in a
local JSONL) run on the tiny model, base (adapter disabled) and adapted, with acc, acc_norm, their
standard errors and n. Nothing is downloaded (HF_DATASETS_OFFLINE=1)."""
import os

import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest.importorskip("lm_eval")
pytest.importorskip("peft")


def test_the_shipped_task_runs_on_the_tiny_model_base_and_adapted(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gpu_worker.evaluation import lm_harness
    from gpu_worker.tiny_model import make_tiny_model
    from tests.conftest import SAMPLE_FILE

    path = make_tiny_model(SAMPLE_FILE, tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    out = lm_harness.base_and_adapted(model, tokenizer, ["brightrun_general_mc"], seed=0,
                                      disabled=model.disable_adapter)
    row = out["tasks"]["brightrun_general_mc"]
    assert row["n"] == 20
    for side in ("base", "adapted"):
        for key in ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr"):
            assert 0.0 <= row[side][key] <= 1.0, (side, key, row)
        assert row[side]["acc"] * 20 == pytest.approx(round(row[side]["acc"] * 20))
    # A fresh LoRA adapter starts at zero (B = 0): the adapted model is the base model.
    assert row["adapted"] == row["base"]
    assert lm_harness.base_and_adapted(model, tokenizer, [], seed=0)["not_computed"].startswith("no lm-eval")
