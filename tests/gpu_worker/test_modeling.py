import math

import pytest

from gpu_worker.failures import ModelNotFound, NoCudaFor4bit
from gpu_worker.modeling import LoadPlan, lr_lambda, plan_model_load, resolve_model_source
from gpu_worker.presets import ConfigError


def test_cuda_auto_is_qlora():
    plan = plan_model_load("auto", cuda_available=True, bf16_supported=True, flash_attn=True)
    assert plan == LoadPlan("cuda", True, "bfloat16", "flash_attention_2", True, "paged_adamw_8bit")


def test_cuda_without_flash_attention_uses_sdpa():
    plan = plan_model_load("nf4", cuda_available=True, bf16_supported=True, flash_attn=False)
    assert plan.quantize_4bit and plan.attn_implementation == "sdpa"


def test_cuda_without_bf16_computes_in_fp16():
    plan = plan_model_load("auto", cuda_available=True, bf16_supported=False, flash_attn=True)
    assert plan.dtype == "float16" and plan.attn_implementation == "sdpa"


def test_cuda_none_keeps_full_weights():
    plan = plan_model_load("none", cuda_available=True)
    assert not plan.quantize_4bit and plan.dtype == "bfloat16" and plan.gradient_checkpointing


def test_cpu_is_full_precision_plain_adamw():
    for q in ("auto", "none"):
        assert plan_model_load(q, cuda_available=False) == LoadPlan("cpu", False, "float32", "sdpa", False, "adamw")


def test_nf4_without_cuda_is_refused():
    with pytest.raises(NoCudaFor4bit):
        plan_model_load("nf4", cuda_available=False)
    with pytest.raises(ConfigError):
        plan_model_load("int3", cuda_available=True)


def test_missing_local_model_dir(tmp_path):
    with pytest.raises(ModelNotFound):
        resolve_model_source(str(tmp_path / "nope"))
    assert resolve_model_source("meta-llama/Meta-Llama-3-8B-Instruct") == ("meta-llama/Meta-Llama-3-8B-Instruct", False)


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant"])
def test_schedules_warm_up_then_follow_their_shape(kind):
    f = lr_lambda(kind, warmup_steps=10, total_steps=100)
    warm = [f(s) for s in range(10)]
    assert warm == sorted(warm) and 0 < warm[0] < warm[-1] < 1
    assert f(10) == pytest.approx(1.0)
    end = f(99)
    if kind == "constant":
        assert end == 1.0
    else:
        assert end < 0.05
    if kind == "cosine":
        assert f(55) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
