"""Validation runs: read a completed job's evaluation.json, judge the replies, assemble the metrics
with intervals and pass/fail, pick side-by-side examples, store the run and the report.

- validation_run_for_job: the whole run, synchronously (the Celery task and tests call it).
- validation_run_request + validation_run_execute: the on-demand path (the API creates a pending
  run and a task executes it).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import DomainError
from validation import scoring
from validation.judges.base import ADAPTED, BASE, JudgeItem, JudgeResult
from validation.models import RunStatus, RunTrigger, ValidationRun

if TYPE_CHECKING:  # for the annotations; the functions below import gates where they use it
    from validation import gates

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_RULE = ("{k} items drawn, not picked: the scored items are grouped by the primary endpoint's outcome "
                 "(adapted preferred, tie, base preferred) and each group gets a share of the {k} places in "
                 "proportion to its size (at least one for each group that has items), drawn at random with a "
                 "seed fixed by the item ids, so the same data always shows the same examples; the item with the "
                 "largest judged loss is always added as 'worst loss', so the report shows where the adapter "
                 "hurts most. Items the judge could not score on both replies are left out.")


class ValidationNotReady(DomainError):
    code = "validation_not_ready"
    http_status = 409


# --------------------------------------------------------------------------- settings


def current_thresholds() -> scoring.Thresholds:
    return scoring.Thresholds(retention_min=float(settings.VALIDATION_RETENTION_MIN),
                              brand_voice_min=float(settings.VALIDATION_BRAND_VOICE_MIN))


def judge_config() -> dict[str, Any]:
    """The configured judge as stored with a run: never the API key (only whether one was set)."""
    kind = (settings.VALIDATION_JUDGE or "offline").strip().lower()
    out: dict[str, Any] = {"kind": kind}
    if kind == "llm":
        out.update({"base_url": settings.VALIDATION_LLM_BASE_URL, "model": settings.VALIDATION_LLM_MODEL,
                    "api_key_set": bool(settings.VALIDATION_LLM_API_KEY),
                    "timeout_s": settings.VALIDATION_LLM_TIMEOUT_S, "max_retries": settings.VALIDATION_LLM_MAX_RETRIES})
    return out


def build_judge(rubric, kind: str | None = None):
    """The configured Judge (or the `kind` asked for), or (None, reason) when the configuration
    cannot make one."""
    kind = (kind or settings.VALIDATION_JUDGE or "offline").strip().lower()
    if kind == "offline":
        from validation.judges import OfflineJudge

        return OfflineJudge(rubric), None
    if kind == "llm":
        if not settings.VALIDATION_LLM_BASE_URL or not settings.VALIDATION_LLM_MODEL:
            return None, "VALIDATION_JUDGE=llm needs VALIDATION_LLM_BASE_URL and VALIDATION_LLM_MODEL"
        from validation.judges import LLMJudge

        return LLMJudge(base_url=settings.VALIDATION_LLM_BASE_URL, model=settings.VALIDATION_LLM_MODEL,
                        api_key=settings.VALIDATION_LLM_API_KEY or None, rubric=rubric,
                        timeout=settings.VALIDATION_LLM_TIMEOUT_S, max_retries=settings.VALIDATION_LLM_MAX_RETRIES), None
    return None, f"VALIDATION_JUDGE={kind!r} is not a judge; use 'offline' or 'llm'"


def gate_evidence() -> "gates.Evidence":
    from validation import gates

    return gates.Evidence(min_items=int(settings.VALIDATION_MIN_ITEMS),
                          min_conversations=int(settings.VALIDATION_MIN_CONVERSATIONS),
                          min_rated_share=float(settings.VALIDATION_MIN_RATED_SHARE))


def brand_voice_policy_for(*, organization_id, client: str = ""):
    """(thresholds, client-supplied profile or None): the client's BrandVoicePolicy row, else the
    organization's default row, else the VALIDATION_* settings."""
    from validation import gates
    from validation.models import BrandVoicePolicy

    rows = {p.client: p for p in BrandVoicePolicy.objects.filter(organization_id=organization_id,
                                                                   client__in={client or "", ""})}
    row = rows.get(client or "") or rows.get("")
    if row is None:
        return gates.BrandVoicePolicyValues(
            on_voice_floor=float(settings.VALIDATION_BRAND_VOICE_FLOOR),
            margin=float(settings.VALIDATION_BRAND_VOICE_MARGIN),
            relevance_min=float(settings.VALIDATION_RELEVANCE_MIN),
            diversity_min=float(settings.VALIDATION_DIVERSITY_MIN)), None
    return gates.BrandVoicePolicyValues(on_voice_floor=row.on_voice_floor, margin=row.margin,
                                        relevance_min=row.relevance_min, diversity_min=row.diversity_min), row.profile


def relevance_embedder():
    """Sentence embeddings for the relevance and diversity checks (the offline judge's packaged
    model, whichever judge rates voice), or None when the eval extra is not installed."""
    from validation.judges.offline import EmbeddingUnavailable, minilm_embedder

    try:
        minilm_embedder(["probe"])
    except EmbeddingUnavailable:
        return None
    return minilm_embedder


def gates_compute(*, judge, judge_result, items, knowledge_base, knowledge_adapted, policy, options: int = 4,
                  resamples: int, seed: int) -> dict[str, Any]:
    """Every gate of a run, the adapted model's and each control's: {"gates": [adapted gate rows],
    "controls": [control rows], "verdict": overall}. JSON-ready (GateResult.to_dict())."""
    from validation import gates

    evidence = gate_evidence()
    kw = {"resamples": resamples, "seed": seed}
    adapted_rows, control_rows = [], []
    rated = judge_result is not None and any(r.computed for r in judge_result.replies if r.model == ADAPTED)
    if judge is not None and items and rated:
        voice = gates.brand_voice_gates(judge, items, embedder=relevance_embedder(), adapted_result=judge_result,
                                        policy=policy, evidence=evidence, **kw)
        for name, result in voice.items():
            (adapted_rows if name == gates.ADAPTED else control_rows).append(result)
    else:
        adapted_rows.append(gates.GateResult(gates.BRAND_VOICE, gates.ADAPTED, gates.INCONCLUSIVE, None, 0,
                                             reasons=["the judge rated no adapted reply, so the controls were "
                                                      "not scored either"]))
    paired = scoring._paired_flags(knowledge_base, knowledge_adapted)
    if paired is not None and paired[0]:
        adapted_rows.append(gates.forgetting_gate(*paired, options=options,
                                                  max_forgetting=float(settings.VALIDATION_FORGETTING_MAX),
                                                  evidence=evidence, **kw))
    else:
        adapted_rows.append(gates.GateResult(gates.FORGETTING, gates.ADAPTED, gates.INCONCLUSIVE, None, 0,
                                             reasons=["no knowledge-set results were reported"]))
    return {"gates": [g.to_dict() for g in adapted_rows], "controls": [g.to_dict() for g in control_rows],
            "verdict": gates.overall_verdict(adapted_rows), "evidence": dataclasses.asdict(evidence),
            "policy": dataclasses.asdict(policy)}


def validation_calibrate(*, dataset, judge_kind: str | None = None, resamples: int | None = None) -> list[dict]:
    """Score the dataset's validation split with the reference, canned and shuffled replies in the
    adapted slot (no model, no GPU) and return one row per gate and control:
    {"gate", "control", "verdict", "value", "ci", "n"}. A gate the reference does not pass, or a
    control passes, cannot prove anything on this dataset."""
    from artifacts.storage import get_storage
    from gpu_worker.evaluation import pod_eval
    from validation import gates
    from validation.rubric import build_rubric

    policy, profile = brand_voice_policy_for(organization_id=dataset.organization_id)
    rubric = build_rubric(profile or dataset.consultant_profile)
    judge, why = build_judge(rubric, kind=judge_kind)
    if judge is None:
        raise DomainError(why)
    raw = get_storage().get_bytes(dataset.val_key).decode("utf-8")
    conversations = [json.loads(line) for line in raw.splitlines() if line.strip()]
    items = [JudgeItem(item_id=r.item_id, client_message=r.client_message, base_reply=r.reference,
                       adapted_reply=r.reference, reference=r.reference, context=tuple(r.prompt_messages[:-1]))
             for r in pod_eval.reply_items(conversations)]
    if not items:
        raise DomainError("the dataset's validation split has no consultant reply to calibrate on; import it with a "
                          "larger --val-fraction")
    results = gates.brand_voice_gates(judge, items, embedder=relevance_embedder(), include_adapted=False,
                                      policy=policy, evidence=gate_evidence(),
                                      resamples=resamples or settings.VALIDATION_BOOTSTRAP_RESAMPLES,
                                      seed=settings.VALIDATION_BOOTSTRAP_SEED)
    out = []
    for name in gates.CONTROLS:
        d = results[name].to_dict()
        out.append({"gate": d["gate"], "control": name, "verdict": d["verdict"], "value": d["value"], "ci": d["ci"],
                    "n": d["n"], "checks": d["checks"], "reasons": d["reasons"]})
    return out


def code_version() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --------------------------------------------------------------------------- the evaluation file


def evaluation_load(job) -> tuple[dict[str, Any] | None, str]:
    """The worker's evaluation.json for `job` (through storage), or (None, why not)."""
    from artifacts.services import job_output_key
    from artifacts.storage import StorageError, get_storage

    storage = get_storage()
    result = job.result or {}
    uri = ((result.get("eval") or {}).get("evaluation_uri") or (result.get("artifacts") or {}).get("evaluation_uri"))
    key = f"{job_output_key(job)}/evaluation.json"
    if uri:
        try:
            key = storage.key_for_uri(uri)
        except StorageError:
            logger.warning("job %s: evaluation_uri %s is outside storage; trying the job prefix", job.pk, uri)
    try:
        return json.loads(storage.get_bytes(key)), ""
    except StorageError:
        return None, ("the worker stored no evaluation.json for this job (it may have been trained before "
                      "per-item evaluation existed); retrain to measure these metrics")
    except ValueError as exc:
        return None, f"evaluation.json is not valid JSON: {exc}"


def _part(doc: dict[str, Any] | None, name: str, missing: str) -> tuple[dict[str, Any] | None, str]:
    if doc is None:
        return None, missing
    part = doc.get(name)
    if not isinstance(part, dict):
        return None, f"evaluation.json has no {name!r} section"
    if part.get("not_computed"):
        return None, f"not measured on the pod: {part['not_computed']}"
    return part, ""


def _flags(part: dict[str, Any] | None, model: str, normalized: bool | None = None) -> list[bool] | None:
    """Per-item correctness; with `normalized` set, recomputed from the stored option scores."""
    if part is None:
        return None
    out = []
    for row in part.get("items") or []:
        if normalized is None:
            out.append(bool(row[f"{model}_correct"]))
        else:
            scores = row[model]
            values = [lp / n if normalized else lp for lp, n in zip(scores["logprobs"], scores["n_tokens"])]
            out.append(max(range(len(values)), key=values.__getitem__) == row["answer"])
    return out


def _accuracy(flags: list[bool] | None) -> float | None:
    return sum(flags) / len(flags) if flags else None


def evaluation_inputs(doc: dict[str, Any] | None, missing_reason: str, judge_result: JudgeResult | None,
                      judge_missing: str) -> tuple[scoring.EvaluationInputs, dict[str, str]]:
    """scoring.EvaluationInputs from the evaluation file; and sensitivity notes per metric key."""
    missing: dict[str, str] = {}
    notes: dict[str, str] = {}
    ppl, why = _part(doc, "perplexity", missing_reason)
    base_ppl = adapted_ppl = None
    if ppl is not None:
        rows = ppl.get("conversations") or []
        base_ppl = [(float(r["base_nll"]), int(r["tokens"])) for r in rows]
        adapted_ppl = [(float(r["adapted_nll"]), int(r["tokens"])) for r in rows]
        if not rows:
            missing[scoring.PERPLEXITY] = "the worker scored no held-out conversation"
    else:
        missing[scoring.PERPLEXITY] = why
    choice = {}
    for name, key in (("emotion", scoring.EMOTION), ("knowledge", scoring.RETENTION)):
        part, why = _part(doc, name, missing_reason)
        if part is None:
            missing[key] = why
            choice[name] = (None, None)
            continue
        choice[name] = (_flags(part, "base"), _flags(part, "adapted"))
        score = part.get("score", "sum")
        other = score != "sum"  # the other reading: normalized when the run used the sum
        alt_b, alt_a = _accuracy(_flags(part, "base", not other)), _accuracy(_flags(part, "adapted", not other))
        if alt_b is not None:
            notes[key] = (f"accuracy decided by the option's {'summed' if score == 'sum' else 'mean per-token'} "
                          f"log-probability; with the {'mean per-token' if score == 'sum' else 'summed'} score "
                          f"instead: base {alt_b:.1%}, adapted {alt_a:.1%}")
    emotion_context = None
    part, _ = _part(doc, "emotion", missing_reason)
    if part is not None:
        rows = part.get("items") or []
        metas = [r.get("meta") or {} for r in rows]
        emotion_context = {"unmapped_labels": part.get("unmapped_labels")}
        if rows and all("options" in r for r in rows):
            emotion_context.update({
                "labels": [r["options"][r["answer"]] for r in rows],
                "positions": [m.get("client_turn", m.get("message_index", 0)) for m in metas],
                "conversations": [str(m.get("conversation_id") or str(r["item_id"]).rsplit("#", 1)[0])
                                  for r, m in zip(rows, metas)]})
        if rows and all("n_tokens" in (r.get("base") or {}) for r in rows):
            emotion_context["acc"] = {m: _accuracy(_flags(part, m, False)) for m in ("base", "adapted")}
            emotion_context["acc_norm"] = {m: _accuracy(_flags(part, m, True)) for m in ("base", "adapted")}
        if metas and "option_seed" in metas[0]:
            emotion_context["option_seed"] = metas[0]["option_seed"]
    if judge_result is None:
        missing["judge"] = judge_missing
    return scoring.EvaluationInputs(emotion_context=emotion_context,
        knowledge_base=choice["knowledge"][0], knowledge_adapted=choice["knowledge"][1],
        emotion_base=choice["emotion"][0], emotion_adapted=choice["emotion"][1], judge_result=judge_result,
        perplexity_base=base_ppl, perplexity_adapted=adapted_ppl, missing=missing), notes


def judge_items(replies: dict[str, Any]) -> list[JudgeItem]:
    items = []
    for row in replies.get("items") or []:
        context = tuple({"role": m["role"], "content": m["content"]} for m in (row.get("context") or [])[:-1])
        items.append(JudgeItem(item_id=row["item_id"], client_message=row["client_message"],
                               base_reply=(row.get("base") or {}).get("text"),
                               adapted_reply=(row.get("adapted") or {}).get("text"),
                               reference=row.get("reference"), context=context))
    return items


# --------------------------------------------------------------------------- examples


def examples_select(replies: dict[str, Any] | None, judge_result: JudgeResult | None, *, per_side: int) -> list[dict]:
    """2 x `per_side` examples drawn by EXAMPLES_RULE, plus the worst loss. Largest gains and
    losses alone would show only the tails, which is how a report flatters or scares; a draw
    stratified by the primary endpoint's outcome shows the adapter as a reader would meet it."""
    if not replies or judge_result is None:
        return []
    base = judge_result.scores_for(BASE)
    adapted = judge_result.scores_for(ADAPTED)
    pairwise = {p.item_id: p for p in judge_result.pairwise}
    scored = []
    for row in replies.get("items") or []:
        b, a = base.get(row["item_id"]), adapted.get(row["item_id"])
        if not (b and a and b.overall is not None and a.overall is not None):
            continue
        p = pairwise.get(row["item_id"])
        scored.append({"gain": a.overall - b.overall, "row": row, "base": b, "adapted": a,
                       "outcome": (p.outcome if p else None) or "not compared",
                       "winner": p.winner if p else None})
    if not scored:
        return []
    worst = min(scored, key=lambda t: (t["gain"], t["row"]["item_id"]))
    worst = worst if worst["gain"] < 0 else None
    rest = [t for t in scored if t is not worst]
    chosen = _stratified_draw(rest, places=2 * per_side)
    if worst is not None:
        chosen.append({**worst, "outcome": "worst loss"})
    return [{
        "kind": t["outcome"], "label": _OUTCOME_LABELS[t["outcome"]], "item_id": t["row"]["item_id"], "judged_gain": t["gain"],
        "client_message": t["row"]["client_message"], "base_reply": t["row"]["base"]["text"],
        "adapted_reply": t["row"]["adapted"]["text"], "reference": t["row"].get("reference"),
        "base_overall": t["base"].overall, "adapted_overall": t["adapted"].overall,
        "base_on_voice": t["base"].on_voice, "adapted_on_voice": t["adapted"].on_voice,
        "pairwise_winner": t["winner"],
    } for t in chosen]


_OUTCOME_ORDER = ("win", "tie", "loss", "not compared")
_OUTCOME_LABELS = {"win": "Adapted preferred", "tie": "Tie", "loss": "Base preferred",
                   "not compared": "Not compared", "worst loss": "Worst loss (largest judged drop)"}


def _stratified_draw(items: list[dict], *, places: int) -> list[dict]:
    """`places` items, shared among the outcome groups by size (largest remainder, one at least for
    every group while places last), drawn within each group with a seed from the item ids."""
    import hashlib
    import random

    groups = {o: sorted((t for t in items if t["outcome"] == o), key=lambda t: t["row"]["item_id"])
              for o in _OUTCOME_ORDER}
    groups = {o: g for o, g in groups.items() if g}
    places = min(places, len(items))
    if not places:
        return []
    share = {o: 0 for o in groups}
    for o in sorted(groups, key=lambda o: -len(groups[o]))[:places]:
        share[o] = 1
    left = places - sum(share.values())
    if left:
        quota = {o: len(g) * places / len(items) for o, g in groups.items()}
        room = {o: len(groups[o]) - share[o] for o in groups}
        while left:
            o = max((o for o in groups if room[o] > 0), key=lambda o: (quota[o] - share[o], len(groups[o])))
            share[o] += 1
            room[o] -= 1
            left -= 1
    ids = ",".join(sorted(t["row"]["item_id"] for t in items))
    rng = random.Random(int.from_bytes(hashlib.sha256(ids.encode()).digest()[:8], "big"))
    out = []
    for o in groups:
        picked = rng.sample(groups[o], share[o])
        out.extend(sorted(picked, key=lambda t: -t["gain"]))
    return out


# --------------------------------------------------------------------------- runs


def validation_run_request(*, job_id, requested_by=None, trigger: str = RunTrigger.ON_DEMAND,
                           validation_data: str = "own") -> ValidationRun:
    """A pending run for a completed job (raises ValidationNotReady otherwise), measured on the
    job's own validation split or (`validation_data="benchmark"`) on the organization's benchmark
    (validation.benchmark: BenchmarkUnavailable, 409, says why not)."""
    from training import states
    from training.models import TrainingJob
    from validation import benchmark

    job = TrainingJob.objects.select_related("dataset").filter(pk=job_id).first()
    if job is None:
        raise ValidationNotReady("no such job")
    if job.status != states.COMPLETED:
        raise ValidationNotReady(f"the job is {job.status}; a validation report needs a completed job")
    measured = benchmark.validation_dataset_for(job=job, on=validation_data)
    return ValidationRun.objects.create(job=job, organization_id=job.organization_id, trigger=trigger,
                                        validation_dataset=measured,
                                        requested_by=requested_by, thresholds=dataclasses.asdict(current_thresholds()),
                                        judge=judge_config())


def validation_run_request_once(*, job_id, requested_by=None, validation_data: str = "own") -> tuple[ValidationRun, bool]:
    """(run, created): the job's on-demand run still pending or running if there is one (a
    repeated request joins it: no second run, no second task queued), else a new pending run.
    The job row is locked so two requests at once agree."""
    from training.models import TrainingJob

    with transaction.atomic():
        TrainingJob.objects.select_for_update().filter(pk=job_id).first()
        live = (ValidationRun.objects.filter(job_id=job_id, trigger=RunTrigger.ON_DEMAND,
                                             status__in=[RunStatus.PENDING, RunStatus.RUNNING])
                .select_related("job").order_by("-created_at"))
        # A live run is joined only when it measures the same data (own split vs benchmark).
        want_benchmark = validation_data == "benchmark"
        for candidate in live:
            if (candidate.validation_dataset_id not in (None, candidate.job.dataset_id)) == want_benchmark:
                return candidate, False
        return validation_run_request(job_id=job_id, requested_by=requested_by, validation_data=validation_data), True


def validation_run_for_job(*, job_id, trigger: str = RunTrigger.AUTOMATIC, requested_by=None) -> ValidationRun:
    """Run the whole validation of a completed job now and store it (and its report).

    Automatic runs are one per job (a database constraint; failed ones aside): a second call,
    e.g. the automatic task delivered twice, takes up the existing run instead of making another,
    so a run left `pending` by a worker that died right after creating it is finished here."""
    if trigger == RunTrigger.AUTOMATIC:
        run = _automatic_run_get_or_create(job_id=job_id, requested_by=requested_by)
    else:
        run = validation_run_request(job_id=job_id, requested_by=requested_by, trigger=trigger)
    return validation_run_execute(run_id=run.pk)


def _automatic_run_get_or_create(*, job_id, requested_by=None) -> ValidationRun:
    live = ValidationRun.objects.filter(job_id=job_id, trigger=RunTrigger.AUTOMATIC).exclude(status=RunStatus.FAILED)
    run = live.first()
    if run is not None:
        return run
    try:
        with transaction.atomic():
            return validation_run_request(job_id=job_id, requested_by=requested_by, trigger=RunTrigger.AUTOMATIC)
    except IntegrityError:  # created by a concurrent delivery between our read and our insert
        return live.get()


def _stale_before():
    return timezone.now() - timedelta(seconds=settings.VALIDATION_RUN_STALE_S)


def validation_run_execute(*, run_id) -> ValidationRun:
    """Execute a pending run, or take up again a `running` one whose worker stopped (started more
    than VALIDATION_RUN_STALE_S ago). Any other run is returned unchanged (idempotent: redelivered
    tasks and the recovery sweep may call this for a run another worker is executing).
    Never raises for a metric that cannot be computed; an unexpected error marks the run failed
    with the reason; a run taken up VALIDATION_RUN_MAX_ATTEMPTS times without finishing fails."""
    with transaction.atomic():
        run = ValidationRun.objects.select_for_update().select_related("job", "job__dataset").get(pk=run_id)
        stale = run.status == RunStatus.RUNNING and run.started_at is not None and run.started_at < _stale_before()
        if run.status != RunStatus.PENDING and not stale:
            return run
        if run.attempts >= settings.VALIDATION_RUN_MAX_ATTEMPTS:
            run.status = RunStatus.FAILED
            run.errors = list(run.errors or []) + [
                f"the worker executing this run stopped {run.attempts} times (killed, out of memory or past its time "
                f"limit) without finishing it; request a new run (POST /api/v1/jobs/{run.job_id}/validation/) "
                f"after checking the worker's logs"]
            run.finished_at = timezone.now()
            run.save(update_fields=["status", "errors", "finished_at"])
            return run
        if stale:
            logger.warning("validation run %s: taking it up again (attempt %d; the last worker stopped)",
                           run.pk, run.attempts + 1)
        run.status = RunStatus.RUNNING
        run.started_at = timezone.now()
        run.attempts += 1
        run.save(update_fields=["status", "started_at", "attempts"])
    try:
        _execute(run)
    except Exception as exc:  # noqa: BLE001 - the run records why it failed; the caller gets the run
        logger.exception("validation run %s failed", run.pk)
        run.status = RunStatus.FAILED
        run.errors = list(run.errors or []) + [f"{type(exc).__name__}: {exc}"[:2000]]
        run.finished_at = timezone.now()
        run.save()
    return run


def validation_runs_to_recover() -> list:
    """Runs no worker is executing: `running` past VALIDATION_RUN_STALE_S (the worker died; the
    redelivered task, if any, finds it not stale yet and leaves it) and `pending` runs older than
    the sweep interval (the task message was lost, or the worker died before taking it up)."""
    pending_before = timezone.now() - timedelta(seconds=settings.VALIDATION_RECOVER_INTERVAL_S)
    return list(ValidationRun.objects.filter(
        Q(status=RunStatus.RUNNING, started_at__lt=_stale_before())
        | Q(status=RunStatus.PENDING, created_at__lt=pending_before)).values_list("pk", flat=True))


def dataset_inputs(dataset) -> dict[str, Any]:
    """The validation data as the report states it: the part of the training file held out of
    training, or (an OpenAI validation_file, training.services.dataset_compose) a file of its own
    while training used every conversation of the training file."""
    out = {"id": str(dataset.pk), "name": dataset.name, "split": "validation",
           "val_conversations": dataset.val_conversations, "split_seed": dataset.split_seed,
           "val_fraction": dataset.val_fraction}
    composition = dataset.composition
    if composition:
        train, val = composition["train"], composition["val"]
        out.update(source="validation_file", training_file=train, validation_file=val, description=(
            f"the validation file {val['source_filename'] or val['name']} ({val['conversations']} conversations, "
            f"none trained on); training used all {train['conversations']} conversations of the training file "
            f"{train['source_filename'] or train['name']}"))
    else:
        out.update(source="held_out_split", description=(
            f"{dataset.val_conversations} of the training file's {dataset.conversation_count} conversations, held "
            f"out of training (val_fraction {dataset.val_fraction}, seed {dataset.split_seed})"))
    return out


def lm_eval_metrics(doc: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """One report row per lm-evaluation-harness task of evaluation.json's `lm_eval` section:
    "Out-of-domain retention (lm-eval: <task>)", adapted acc with base beside it, each with a 95%
    normal interval from lm-eval's own standard error (acc +- 1.96 stderr, clipped to [0, 1]);
    acc_norm in the notes. Measured, never a gate (no threshold)."""
    part = (doc or {}).get("lm_eval") or {}
    out = {}

    def estimate(row, side):
        acc, se = row[side].get("acc"), row[side].get("acc_stderr") or 0.0
        return {"value": acc, "low": max(0.0, acc - 1.96 * se), "high": min(1.0, acc + 1.96 * se),
                "n": row.get("n"), "confidence": 0.95}

    for task, row in (part.get("tasks") or {}).items():
        key = f"lm_eval:{task}"
        if "acc" not in (row.get("base") or {}) or "acc" not in (row.get("adapted") or {}):
            out[key] = {"key": key, "title": f"Out-of-domain retention (lm-eval: {task})", "computed": False,
                        "reason": "lm-eval reported no acc for this task"}
            continue
        out[key] = {"key": key, "title": f"Out-of-domain retention (lm-eval: {task})", "computed": True,
                    "value": estimate(row, "adapted"), "base": estimate(row, "base"),
                    "adapted": estimate(row, "adapted"), "passed": None,
                    "higher_is_better": True,
                    "notes": [f"acc_norm: base {row['base'].get('acc_norm')}, adapted {row['adapted'].get('acc_norm')}",
                              f"lm-evaluation-harness, {row.get('n')} examples"
                              + (f" (limit {part.get('limit')})" if part.get("limit") else "")]}
    return out


def _execute(run: ValidationRun) -> None:
    from validation.rubric import build_rubric

    from validation import benchmark

    job = run.job
    doc, missing_reason = evaluation_load(job)
    # The data this run measures: the job's own validation split, or the organization's benchmark,
    # whose results the pod stored in evaluation.json's "benchmark" section.
    measured = run.validation_dataset or job.dataset
    if not benchmark.same_validation_data(measured, job.dataset):
        doc, missing_reason = benchmark.evaluation_part(doc, missing_reason, measured)
    thresholds = scoring.Thresholds(**run.thresholds) if run.thresholds else current_thresholds()
    replies, replies_missing = _part(doc, "replies", missing_reason)
    judge_result = None
    judge = None
    judge_missing = replies_missing
    policy, client_profile = brand_voice_policy_for(organization_id=job.organization_id)
    rubric = build_rubric(client_profile or measured.consultant_profile)
    items = judge_items(replies) if replies is not None else []
    if replies is not None:
        judge, why = build_judge(rubric)
        if judge is None:
            judge_missing = why
        else:
            judge_result = judge.score(items)
            run.judge = {**run.judge, "label": judge_result.label, "settings": judge_result.settings}
            run.judge_result = judge_result.to_dict()
    inputs, notes = evaluation_inputs(doc, missing_reason, judge_result, judge_missing)
    metrics = scoring.build_metrics(inputs, thresholds=thresholds, resamples=settings.VALIDATION_BOOTSTRAP_RESAMPLES,
                                    seed=settings.VALIDATION_BOOTSTRAP_SEED)
    for key, note in notes.items():
        if isinstance(metrics.get(key), scoring.Metric):
            metrics[key] = dataclasses.replace(metrics[key], notes=metrics[key].notes + (note,))
    summary = scoring.summary_verdict(metrics)
    gate_report = gates_compute(judge=judge if judge_result is not None else None, judge_result=judge_result,
                                items=items, knowledge_base=inputs.knowledge_base,
                                knowledge_adapted=inputs.knowledge_adapted, policy=policy,
                                resamples=settings.VALIDATION_BOOTSTRAP_RESAMPLES,
                                seed=settings.VALIDATION_BOOTSTRAP_SEED)
    # The verdict comes from the gates (interval bounds, minimum evidence, controls); a report
    # whose gated metrics could not be computed at all stays "incomplete".
    summary = {**summary, "point_estimate_verdict": summary["verdict"], "gates": gate_report["gates"],
               "controls": gate_report["controls"], "gate_evidence": gate_report["evidence"],
               "brand_voice_policy": gate_report["policy"],
               "verdict": "incomplete" if summary["verdict"] == "incomplete" else gate_report["verdict"]}

    per_side = settings.VALIDATION_EXAMPLES_PER_SIDE
    run.metrics = {**{k: m.to_dict() for k, m in metrics.items()}, **lm_eval_metrics(doc)}
    run.summary = summary
    run.verdict = summary["verdict"]
    run.examples = examples_select(replies, judge_result, per_side=per_side)
    run.inputs = {
        "evaluation_uri": ((job.result or {}).get("eval") or {}).get("evaluation_uri"),
        "evaluation_found": doc is not None,
        "evaluation_missing_reason": missing_reason or None,
        "dataset": {**dataset_inputs(measured), "benchmark": measured.pk != job.dataset_id,
                    "trained_on": str(job.dataset_id)},
        "pod_settings": (doc or {}).get("settings"),
        "items": {name: ((doc or {}).get(name) or {}).get("n") for name in ("emotion", "knowledge", "replies")},
        "held_out_conversations": (doc or {}).get("held_out_conversations"),
        "examples_rule": EXAMPLES_RULE.format(k=2 * per_side),
        "bootstrap": {"resamples": settings.VALIDATION_BOOTSTRAP_RESAMPLES, "seed": settings.VALIDATION_BOOTSTRAP_SEED,
                      "confidence": 0.95, "method": "percentile bootstrap"},
    }
    run.versions = {
        "code": code_version(), "evaluation_file": (doc or {}).get("version"),
        "base_model": job.base_model, "adapter_uri": job.adapter_uri,
        "pod": (doc or {}).get("versions"), "judge": run.judge.get("settings", {}).get("embedding")
        or {"prompt_version": run.judge.get("settings", {}).get("prompt_version")},
        "rubric_unmatched_avoid": list(rubric.unmatched_avoid),
    }
    run.errors = [f"{k}: {v}" for k, v in ((doc or {}).get("errors") or {}).items()]
    run.status = RunStatus.COMPLETED
    run.finished_at = timezone.now()

    from artifacts.services import report_artifact_store
    from validation import report

    # The report is stored before the run is saved as completed, so a completed run always has
    # its JSON, HTML and PDF (a crash in between leaves the run `running`; run it again on demand).
    document = report.report_document(run)
    report_artifact_store(job_id=job.pk, report_json=document, html=report.render_html(document),
                          pdf=report.render_pdf(document))
    run.save()
