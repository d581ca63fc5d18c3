"""Out-of-domain retention through lm-evaluation-harness (pip `lm-eval`), pod side.

Import-guarded: `lm_eval` is not in the control plane's environment (nor in the shared dev venv);
a pod image that installs it runs any of its tasks (mmlu, arc_easy, hellaswag, ifeval, ...) on
the base model (adapter disabled) and the adapted model. Nothing is downloaded at test time: the
tests only exercise the guard and the reading of results. Not yet wired into gpu_worker.evaluate
(needs a per-job task list on the job spec).
"""
from __future__ import annotations

from typing import Any, Sequence

METRICS = ("acc", "acc_norm", "exact_match", "prompt_level_strict_acc")


def available() -> tuple[bool, str]:
    try:
        import lm_eval  # noqa: F401
    except ImportError as exc:
        return False, f"lm-evaluation-harness (pip lm-eval) is not installed on this pod ({exc})"
    return True, ""


def read_results(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{task: {metric: value, metric_stderr: value}} from lm_eval's `simple_evaluate` output, whose
    keys look like "acc,none" / "acc_stderr,none"."""
    out: dict[str, dict[str, float]] = {}
    for task, values in (results.get("results") or {}).items():
        row: dict[str, float] = {}
        for key, value in values.items():
            name = key.split(",", 1)[0]
            base = name.removesuffix("_stderr")
            if base in METRICS and isinstance(value, (int, float)):
                row[name] = float(value)
        if row:
            out[task] = row
    return out


def run_tasks(model, tokenizer, tasks: Sequence[str], *, limit: int | None = None, batch_size: int = 8,
              seed: int = 0) -> dict[str, Any]:
    """Run `tasks` on `model` as it is (the caller disables the adapter for the base run).
    {"tasks": read_results(...), "limit": limit} or {"not_computed": why}."""
    ok, why = available()
    if not ok:
        return {"not_computed": why}
    if not tasks:
        return {"not_computed": "no lm-evaluation-harness task was requested for this job"}
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    results = simple_evaluate(model=lm, tasks=list(tasks), limit=limit, random_seed=seed, numpy_random_seed=seed,
                              torch_random_seed=seed, fewshot_random_seed=seed, log_samples=False)
    return {"tasks": read_results(results or {}), "limit": limit,
            "versions": {t: v for t, v in ((results or {}).get("versions") or {}).items()}}
