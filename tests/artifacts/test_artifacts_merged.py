"""Merged model export on the tiny model: the stored merged weights give the same logits as the
base model with the adapter applied."""
from __future__ import annotations

import pytest

from artifacts.errors import MergeNotPossible
from artifacts.services import job_artifacts_register, job_merged_export
from artifacts.storage import get_storage
from tests.artifacts.artifacts_support import completed_job

pytestmark = pytest.mark.django_db


@pytest.mark.slow
def test_merged_outputs_equal_adapter_outputs(organization, tiny_adapter, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, adapter_dir = tiny_adapter
    job = completed_job(organization, adapter_dir=adapter_dir, base_model=str(base))
    job_artifacts_register(job_id=job.pk)
    merged = job_merged_export(job_id=job.pk)
    assert merged.kind == "merged" and any(f["path"] == "model.safetensors" for f in merged.files)
    assert any(f["path"] == "tokenizer.json" for f in merged.files)

    storage = get_storage()
    local = tmp_path / "merged"
    for f in merged.files:
        storage.get_file(f"{merged.key}/{f['path']}", local / f["path"])
    tokenizer = AutoTokenizer.from_pretrained(local)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "I can't sleep before exams."}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                                            adapter_dir).eval()(input_ids=ids).logits
        folded = AutoModelForCausalLM.from_pretrained(local, dtype=torch.float32).eval()(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()(input_ids=ids).logits
    assert torch.allclose(adapted, folded, atol=1e-4), (adapted - folded).abs().max()
    assert (adapted - plain).abs().max() > 1e-3  # the adapter does change the outputs


def test_merge_refuses_models_over_the_limit(organization, tiny_adapter, settings):
    base, adapter_dir = tiny_adapter
    settings.ARTIFACT_MERGE_MAX_BYTES = 1024
    job = completed_job(organization, adapter_dir=adapter_dir, base_model=str(base))
    job_artifacts_register(job_id=job.pk)
    with pytest.raises(MergeNotPossible, match="vLLM"):
        job_merged_export(job_id=job.pk)
