"""Out-of-domain retention through lm-evaluation-harness (pip `lm-eval`), pod side.

Import-guarded: `lm_eval` is not in the control plane's environment (nor in the shared dev venv);
a pod image that installs it runs any of its tasks (mmlu, arc_easy, hellaswag, ifeval, ...) on
the base model (adapter disabled) and the adapted model. gpu_worker.evaluate runs the job spec's
`eval_lm_tasks` (none by default; e.g. ["arc_easy", "hellaswag"] on a pod, whose image has the
task data or network). The project ships one small task, `brightrun_general_mc` (lm_tasks/: 20
general-knowledge multiple-choice questions written for it, in a local JSONL), which runs on the
CPU with the tiny model and needs nothing downloaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

SHIPPED_DIR = Path(__file__).resolve().parent / "lm_tasks"
SHIPPED = {"brightrun_general_mc": ("brightrun_general_mc.yaml", "general_mc.jsonl")}

METRICS = ("acc", "acc_norm", "exact_match", "prompt_level_strict_acc")


def available() -> tuple[bool, str]:
    try:
        import lm_eval  # noqa: F401
    except ImportError as exc:
        return False, f"lm-evaluation-harness (pip lm-eval) is not installed on this pod ({exc})"
    return True, ""


def task_config(name: str) -> str | dict[str, Any]:
    """A shipped task as a config dict whose data file is an absolute path (the YAML names it
    relative to itself, which `datasets` would read relative to the working directory); any other
    name is handed to lm-eval as it is."""
    if name not in SHIPPED:
        return name
    import yaml

    config_file, data_file = SHIPPED[name]
    config = yaml.safe_load((SHIPPED_DIR / config_file).read_text())
    config["dataset_kwargs"]["data_files"]["test"] = str(SHIPPED_DIR / data_file)
    return config


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
        n = ((results.get("n-samples") or {}).get(task) or {}).get("effective", values.get("sample_len"))
        if row and n is not None:
            row["n"] = int(n)
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
    results = simple_evaluate(model=lm, tasks=[task_config(t) for t in tasks], limit=limit, random_seed=seed, numpy_random_seed=seed,
                              torch_random_seed=seed, fewshot_random_seed=seed, log_samples=False)
    return {"tasks": read_results(results or {}), "limit": limit,
            "versions": {t: v for t, v in ((results or {}).get("versions") or {}).items()}}


def base_and_adapted(model, tokenizer, tasks: Sequence[str], *, limit: int | None = None, seed: int = 0,
                     disabled=None) -> dict[str, Any]:
    """The tasks on the base model (`disabled()`: the adapter switched off) and on the adapted one:
    {"tasks": {task: {"base": {acc, acc_stderr, acc_norm, ...}, "adapted": {...}, "n": n}},
    "limit", "versions"} or {"not_computed": why}."""
    import contextlib

    with (disabled() if disabled else contextlib.nullcontext()):
        base = run_tasks(model, tokenizer, tasks, limit=limit, seed=seed)
    if "not_computed" in base:
        return base
    adapted = run_tasks(model, tokenizer, tasks, limit=limit, seed=seed)
    out = {}
    for task, b in base["tasks"].items():
        a = dict(adapted["tasks"].get(task) or {})
        b = dict(b)
        n = b.pop("n", None)
        a.pop("n", None)
        out[task] = {"base": b, "adapted": a, "n": n}
    return {"tasks": out, "limit": limit, "versions": base.get("versions")}
