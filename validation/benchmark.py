"""The organization's benchmark dataset as validation data: which dataset a run measures, whether a
job may be measured on the benchmark, and what the pod is asked to evaluate.

A job is measured on the benchmark's validation split only when (a) the organization has marked
one, (b) the job did not train on any of its validation conversations (content hashes,
training.models.DatasetConversation), and (c) the pod evaluated the job on it: the job spec of every
job whose own validation data differs from the benchmark's carries the benchmark's split, and the
pod stores the results in evaluation.json's "benchmark" section (gpu_worker.runner). A job trained
before the benchmark was marked has no such section and cannot be measured on it without retraining.
"""
from __future__ import annotations

from typing import Any

from core.errors import DomainError

OWN = "own"
BENCHMARK = "benchmark"


class BenchmarkUnavailable(DomainError):
    code = "benchmark_unavailable"
    http_status = 409


def organization_benchmark(organization_id):
    """The organization's benchmark dataset, or None (read from training's models: validation may
    read training's models, never call its services)."""
    from training.models import Dataset

    return Dataset.objects.filter(organization_id=organization_id, is_benchmark=True).first()


def same_validation_data(a, b) -> bool:
    return a.pk == b.pk or bool(a.val_fingerprint and a.val_fingerprint == b.val_fingerprint)


def benchmark_trained_on(*, job, benchmark) -> int:
    """How many of the benchmark's validation conversations the job's dataset trained on."""
    from training.models import DatasetConversation

    val = DatasetConversation.objects.filter(dataset=benchmark, side=DatasetConversation.SIDE_VAL).values(
        "conversation_hash")
    return DatasetConversation.objects.filter(dataset_id=job.dataset_id, side=DatasetConversation.SIDE_TRAIN,
                                              conversation_hash__in=val).count()


def for_pod(job) -> dict[str, Any] | None:
    """What the job spec carries so the pod also evaluates the job on the benchmark: None when
    there is none, it is the job's own validation data, or the job trains on part of it."""
    benchmark = organization_benchmark(job.organization_id)
    if benchmark is None or not benchmark.val_key or same_validation_data(benchmark, job.dataset):
        return None
    if benchmark_trained_on(job=job, benchmark=benchmark):
        return None
    return {"dataset_id": str(benchmark.pk), "name": benchmark.name, "val_fingerprint": benchmark.val_fingerprint,
            "val_key": benchmark.val_key}


def validation_dataset_for(*, job, on: str):
    """The dataset whose validation split a run of `job` measures (`on` = own | benchmark), or
    BenchmarkUnavailable (409) saying why the benchmark cannot be used for this job."""
    if on == OWN:
        return job.dataset
    if on != BENCHMARK:
        raise DomainError(f"validation_data must be {OWN!r} or {BENCHMARK!r}, not {on!r}", code="invalid")
    benchmark = organization_benchmark(job.organization_id)
    if benchmark is None:
        raise BenchmarkUnavailable("the organization has no benchmark dataset; an admin marks one with POST "
                                   "/api/v1/datasets/<id>/benchmark/", code="no_benchmark")
    if same_validation_data(benchmark, job.dataset):
        return benchmark
    trained = benchmark_trained_on(job=job, benchmark=benchmark)
    if trained:
        raise BenchmarkUnavailable(
            f"the job trained on {trained} of the benchmark's {benchmark.val_conversations} validation conversations; "
            "its figures on the benchmark would not be held-out", code="benchmark_trained_on",
            detail={"benchmark": str(benchmark.pk), "trained_on": trained})
    evaluated = (((job.result or {}).get("eval") or {}).get("benchmark") or {}).get("val_fingerprint")
    if evaluated != benchmark.val_fingerprint:
        raise BenchmarkUnavailable(
            f"the pod did not evaluate this job on the benchmark {benchmark.name!r} (the benchmark was marked, or "
            "changed, after the job trained); retrain the job to measure it there", code="benchmark_not_evaluated",
            detail={"benchmark": str(benchmark.pk), "evaluated_fingerprint": evaluated})
    return benchmark


def evaluation_part(doc: dict[str, Any] | None, missing: str, dataset) -> tuple[dict[str, Any] | None, str]:
    """The pod's evaluation of the job on `dataset` (the benchmark): evaluation.json's "benchmark"
    section, shaped like the file itself, or (None, why not)."""
    if doc is None:
        return None, missing
    part = doc.get("benchmark")
    if not isinstance(part, dict) or part.get("val_fingerprint") != dataset.val_fingerprint:
        return None, f"evaluation.json holds no evaluation on the benchmark {dataset.name!r}"
    if part.get("not_computed"):
        return None, f"not measured on the pod: {part['not_computed']}"
    return part, ""
