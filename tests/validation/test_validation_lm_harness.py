"""lm-evaluation-harness integration: import-guarded, nothing downloaded at test time."""
import importlib.util

import pytest

from gpu_worker.evaluation import lm_harness


@pytest.mark.skipif(importlib.util.find_spec("lm_eval") is not None, reason="lm-eval is installed here")
def test_without_lm_eval_the_run_says_why_and_needs_no_model():
    ok, why = lm_harness.available()
    assert not ok and "lm-eval" in why
    assert lm_harness.run_tasks(None, None, ["arc_easy"]) == {"not_computed": why}


def test_results_are_read_per_task_and_metric():
    raw = {"results": {"arc_easy": {"alias": "arc_easy", "acc,none": 0.61, "acc_stderr,none": 0.01,
                                    "acc_norm,none": 0.55, "acc_norm_stderr,none": 0.012},
                       "ifeval": {"prompt_level_strict_acc,none": 0.3, "inst_level_loose_acc,none": 0.4}}}
    assert lm_harness.read_results(raw) == {
        "arc_easy": {"acc": 0.61, "acc_stderr": 0.01, "acc_norm": 0.55, "acc_norm_stderr": 0.012},
        "ifeval": {"prompt_level_strict_acc": 0.3}}
    assert lm_harness.read_results({}) == {}
