import subprocess
import sys

import pytest

from gpu_worker.contracts import Hyperparameters
from gpu_worker.presets import PRESETS, ConfigError, presets_table, resolve_hyperparameters


def test_three_presets_each_valid_and_documented():
    assert list(PRESETS) == ["conservative", "balanced", "aggressive"]
    for name, preset in PRESETS.items():
        hp = resolve_hyperparameters(name)
        assert hp == preset.hyperparameters
        assert preset.when_to_choose.endswith(".")
    rows = presets_table()
    assert {r["name"] for r in rows} == set(PRESETS)
    assert PRESETS["conservative"].hyperparameters.lora_r < PRESETS["aggressive"].hyperparameters.lora_r


def test_overrides_apply_on_top_of_the_preset():
    hp = resolve_hyperparameters("conservative", {"learning_rate": 5e-5, "target_modules": ["q_proj", "v_proj"]})
    assert hp.learning_rate == 5e-5
    assert hp.target_modules == ("q_proj", "v_proj")
    assert hp.lora_r == PRESETS["conservative"].hyperparameters.lora_r
    assert isinstance(resolve_hyperparameters("balanced", {"num_epochs": 2}).num_epochs, float)
    assert resolve_hyperparameters(None) == PRESETS["balanced"].hyperparameters


@pytest.mark.parametrize("overrides, message", [
    ({"learning_rate": -0.1}, "learning_rate must be > 0 (got -0.1)"),
    ({"learning_rate": 0}, "learning_rate must be > 0 (got 0.0)"),
    ({"lora_r": 0}, "lora_r must be >= 1 (got 0)"),
    ({"lora_r": 2.5}, "lora_r must be an integer (got 2.5)"),
    ({"lora_dropout": 1.0}, "lora_dropout must be in [0, 1) (got 1.0)"),
    ({"lr_scheduler": "step"}, "lr_scheduler must be one of cosine, linear, constant (got 'step')"),
    ({"micro_batch_size": 0}, "micro_batch_size must be >= 1 (got 0)"),
    ({"gradient_accumulation_steps": True}, "gradient_accumulation_steps must be an integer (got True)"),
    ({"num_epochs": 0}, "num_epochs must be > 0 (got 0.0)"),
    ({"warmup_ratio": 1.5}, "warmup_ratio must be in [0, 1) (got 1.5)"),
    ({"max_seq_len": 8}, "max_seq_len must be >= 32 (got 8)"),
    ({"target_modules": []}, "target_modules must be a non-empty list"),
    ({"max_grad_norm": float("nan")}, "max_grad_norm must be a finite number"),
])
def test_invalid_values_get_clear_errors(overrides, message):
    with pytest.raises(ConfigError) as err:
        resolve_hyperparameters("balanced", overrides)
    assert message in str(err.value)


def test_seq_len_above_model_context():
    with pytest.raises(ConfigError, match="max_seq_len 16384 exceeds the model's context of 8192"):
        resolve_hyperparameters("balanced", {"max_seq_len": 16384}, model_max_context=8192)
    assert resolve_hyperparameters("balanced", {"max_seq_len": 8192}, model_max_context=8192).max_seq_len == 8192


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        resolve_hyperparameters("balanced", {"learning_rate": -1, "lora_r": 0})
    assert len(err.value.errors) == 2


def test_unknown_preset_and_unknown_field():
    with pytest.raises(ConfigError, match="unknown preset 'turbo'; choose one of conservative, balanced, aggressive"):
        resolve_hyperparameters("turbo")
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        resolve_hyperparameters("balanced", {"lr": 1e-4})


def test_contract_default_matches_balanced():
    assert Hyperparameters() == PRESETS["balanced"].hyperparameters


def test_control_plane_modules_import_without_torch():
    code = (
        "import sys\n"
        "import gpu_worker.contracts, gpu_worker.signing, gpu_worker.presets, gpu_worker.events,"
        " gpu_worker.storage, gpu_worker.failures\n"
        "bad = [m for m in ('torch', 'transformers', 'django') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("gw_brightrun").REPO))
