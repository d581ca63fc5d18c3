"""`python -m gpu_worker run`: one attempt of one job, stage by stage, every step reported.

Stages: preprocessing -> model_loading -> training -> finalizing -> evaluating, then `completed`.
A SIGTERM (spot interruption) stops at the next step boundary, saves a checkpoint, sends
`interrupted` and exits EXIT_INTERRUPTED. Any error is classified (failures.classify) and sent
as `failed` with a suggested fix; the exit code is EXIT_FAILED.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from . import distributed, storage
from .contracts import (
    EVENT_COMPLETED,
    EVENT_FAILED,
    EVENT_INTERRUPTED,
    EVENT_LOG,
    EVENT_STAGE_CHANGED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    JobSpec,
)
from .events import EventSender
from .faults import HOOK_NAMES, FaultInjector
from .failures import (
    ControlPlaneUnreachable,
    DatasetUnreachable,
    MaxRuntimeExceeded,
    classify,
)
from .presets import validate_hyperparameters
from .trainer import StopFlag

log = logging.getLogger("gpu_worker")

TEST_HOOKS_ENV = "BRIGHTRUN_ALLOW_TEST_HOOKS"
WORK_DIR_ENV = "BRIGHTRUN_WORK_DIR"
TEST_HOOK_NAMES = HOOK_NAMES  # gpu_worker.faults


class Interrupted(Exception):
    """Stop requested (SIGTERM); state is saved and the job can resume."""


class SilentSender:
    """The event sender of ranks other than 0 in a multi-GPU run: the pod reports once, from rank 0."""

    last_delivery_at = None
    path = None

    def emit(self, type: str, data: dict[str, Any] | None = None, *, step: int = 0):
        return None

    def close(self, deadline_s: float = 0) -> bool:
        return True


def default_work_dir(spec: JobSpec) -> Path:
    root = os.environ.get(WORK_DIR_ENV) or os.path.join(tempfile.gettempdir(), "brightrun-worker")
    return Path(root) / f"{spec.job_id}-{spec.attempt}"


class JobRun:
    def __init__(self, spec: JobSpec, work_dir: Path | None = None):
        self.spec = spec
        self.hp = spec.hyperparameters
        self.dist = distributed.from_env()
        storage.install_grant(spec.storage_grant)
        self.work_dir = Path(work_dir) if work_dir else default_work_dir(spec)
        if self.dist.enabled:
            self.work_dir = self.work_dir / f"rank-{self.dist.rank}"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.faults = FaultInjector(dict(spec.test_hooks) if os.environ.get(TEST_HOOKS_ENV) == "1" else {})
        self.stop = StopFlag()
        self.started = time.time()
        self.trainer = None
        self.stage: str | None = None
        heartbeat = min(30.0, spec.heartbeat_timeout_s / 3) if spec.heartbeat_timeout_s else 60.0
        self.events = (EventSender(spec, self.work_dir, heartbeat_interval_s=heartbeat)
                       if self.dist.is_main else SilentSender())

    # ------------------------------------------------------------------ plumbing
    def emit(self, type: str, data: dict[str, Any] | None = None, *, step: int | None = None):
        if step is None:
            step = self.trainer.global_step if self.trainer else 0
        return self.events.emit(type, data, step=step)

    def warn(self, message: str) -> None:
        log.warning(message)
        self.emit(EVENT_LOG, {"level": "warning", "message": message, "stage": self.stage})

    def enter(self, stage: str) -> None:
        self.check_stop()
        self.stage = stage
        log.info("stage %s", stage)
        self.emit(EVENT_STAGE_CHANGED, {"stage": stage})
        self.faults.entering(stage)

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Interrupted(self.stop.reason)

    def _watch_control_plane(self) -> None:
        # Self-protection: a pod that cannot reach the control plane for heartbeat_timeout_s
        # stops (after a checkpoint) rather than burning GPU time nobody can see.
        timeout = self.spec.heartbeat_timeout_s
        while not self._done.wait(min(5.0, timeout / 4)):
            last = self.events.last_delivery_at or self.started
            if time.time() - last > timeout:
                self.stop.set("control_plane_unreachable")
                return

    def _install_stops(self) -> list:
        cleanups = []
        if threading.current_thread() is threading.main_thread():
            previous = {}
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, lambda signum, frame: self.stop.set("sigterm"))
            cleanups.append(lambda: [signal.signal(s, h) for s, h in previous.items()])
        self._done = threading.Event()
        cleanups.append(self._done.set)
        if self.spec.max_runtime_s:
            timer = threading.Timer(self.spec.max_runtime_s, self.stop.set, args=("max_runtime",))
            timer.daemon = True
            timer.start()
            cleanups.append(timer.cancel)
        if self.spec.heartbeat_timeout_s and self.spec.callback_url and self.dist.is_main:
            threading.Thread(target=self._watch_control_plane, daemon=True).start()
        return cleanups

    # ------------------------------------------------------------------ stages
    def run(self) -> int:
        cleanups = self._install_stops()
        try:
            return self._run()
        finally:
            for c in reversed(cleanups):
                c()
            if self.dist.enabled:
                distributed.destroy_process_group()

    def _run(self) -> int:
        try:
            validate_hyperparameters(self.hp)
            summary = self._stages()
        except Interrupted:
            return self._stopped()
        except BaseException as exc:  # noqa: BLE001 - every error is reported, then the pod exits
            step = None
            if self.trainer is not None:
                # During training the failing step is the one in progress, not the last completed.
                step = self.trainer.global_step + (1 if self.stage == "training" else 0)
            info = classify(exc, self.hp, step=step)
            log.error("failed (%s): %s", info.error_class, info.message)
            data = info.to_dict()
            data["stage"] = self.stage
            if self.trainer and self.trainer.last_checkpoint:
                data["checkpoint_step"], data["checkpoint_uri"] = self.trainer.last_checkpoint
            self.emit(EVENT_FAILED, data)
            self._finish(deadline_s=10)
            if isinstance(exc, KeyboardInterrupt):
                raise
            return EXIT_FAILED
        self.emit(EVENT_COMPLETED, summary)
        self._finish(deadline_s=15)
        return EXIT_OK

    def _stopped(self) -> int:
        reason = self.stop.reason or "sigterm"
        checkpoint = None
        if self.trainer is not None:
            try:
                checkpoint = self.trainer.ensure_checkpoint()
            except Exception as exc:  # noqa: BLE001 - report the interruption anyway
                log.error("could not save a checkpoint on stop: %s", exc)
                checkpoint = self.trainer.last_checkpoint
        if checkpoint is None and self.spec.resume_from:
            checkpoint = (None, self.spec.resume_from)
        data = {
            "reason": reason,
            "stage": self.stage,
            "checkpoint_step": checkpoint[0] if checkpoint else None,
            "checkpoint_uri": checkpoint[1] if checkpoint else None,
            "step": self.trainer.global_step if self.trainer else 0,
        }
        if reason in ("max_runtime", "control_plane_unreachable"):
            exc = (MaxRuntimeExceeded(f"stopped after max_runtime_s={self.spec.max_runtime_s} s")
                   if reason == "max_runtime" else
                   ControlPlaneUnreachable(f"no event delivered for {self.spec.heartbeat_timeout_s} s"))
            info = classify(exc, self.hp, step=data["step"])
            self.emit(EVENT_FAILED, {**info.to_dict(), **data})
            # Unreachable control plane: nothing will get through, do not wait long for it.
            self._finish(deadline_s=1 if reason == "control_plane_unreachable" else 3)
            return EXIT_FAILED
        self.emit(EVENT_INTERRUPTED, data)
        # RunPod allows about 5 s between SIGTERM and SIGKILL.
        self._finish(deadline_s=2)
        return EXIT_INTERRUPTED

    def _finish(self, deadline_s: float) -> None:
        self.events.close(deadline_s=deadline_s)
        if not self.dist.is_main:
            return
        try:  # the local event log next to the artifacts helps debugging; best effort
            storage.upload(self.events.path, storage.join(self.spec.output_uri, f"events-attempt-{self.spec.attempt}.jsonl"))
        except Exception:  # noqa: BLE001
            pass

    def _fetch_split(self, uri: str, name: str) -> list[dict[str, Any]]:
        from .data import read_jsonl

        try:
            path = storage.download(uri, self.work_dir / "data" / f"{name}.jsonl")
        except storage.StorageError as exc:
            raise DatasetUnreachable(f"the {name} split could not be read: {exc}") from exc
        return read_jsonl(path)

    def _stages(self) -> dict[str, Any]:
        """The five stages in order, each a method (as torchtune's recipes split theirs); `st`
        carries what one stage hands the next."""
        st = _StageState()
        self._preprocess(st)
        self._load_model(st)
        self._train(st)
        if not self._finalize(st):
            return {}
        return self._evaluate(st)

    def _preprocess(self, st: "_StageState") -> None:
        """Resolve the model and the device plan, tokenize and pack both splits."""
        from . import loss as losses
        from . import modeling
        from .data import PackedDataset, tokenize_all

        spec, hp = self.spec, self.hp
        self.enter("preprocessing")
        t0 = time.time()
        source, _ = modeling.resolve_model_source(spec.base_model)
        plan = modeling.current_plan(spec.quantization)  # fails early: no CUDA for nf4
        context = modeling.model_max_context(source, spec.hf_token)
        dist = self.dist
        if spec.gpu_count > 1 and not dist.enabled:
            self.warn(f"gpu_count={spec.gpu_count} but this process was started alone; training on one device")
        parallel = distributed.plan_parallel(spec.parallel, gpu_count=dist.world_size,
                                             params_b=modeling.model_params_b(source, spec.hf_token))
        distributed.init_process_group(dist, plan.device)
        if dist.enabled and hp.gradient_accumulation_steps < dist.world_size:
            self.warn(f"gradient_accumulation_steps={hp.gradient_accumulation_steps} is below the "
                      f"{dist.world_size} GPUs: some stay idle on every step; raise it to at least {dist.world_size}")
        loss_impl = losses.resolve_impl(spec.loss_impl, cuda=plan.device == "cuda")
        if spec.loss_impl == "liger" and loss_impl != "liger":
            self.warn("loss_impl 'liger' needs CUDA and the liger-kernel package; using the chunked loss")
        validate_hyperparameters(hp, context)
        tokenizer = modeling.load_tokenizer(source, spec.hf_token)
        train_rows = self._fetch_split(spec.train_uri, "train")
        train_convs, report = tokenize_all(tokenizer, train_rows, hp.max_seq_len, warn=self.warn)
        if not train_convs:
            from .presets import ConfigError

            raise ConfigError("the training split has no assistant message marked train: nothing to learn")
        data = PackedDataset.build(
            train_convs, max_seq_len=hp.max_seq_len, micro_batch_size=hp.micro_batch_size,
            gradient_accumulation_steps=hp.gradient_accumulation_steps, shuffle_seed=hp.seed,
        )
        val_batches = []
        if spec.val_uri:
            val_convs, _ = tokenize_all(tokenizer, self._fetch_split(spec.val_uri, "val"), hp.max_seq_len,
                                        warn=self.warn)
            if val_convs:
                val_data = PackedDataset.build(val_convs, max_seq_len=hp.max_seq_len,
                                               micro_batch_size=hp.micro_batch_size,
                                               gradient_accumulation_steps=1, shuffle_seed=0)
                val_batches = val_data.all_micro_batches()
        preprocessing = {
            "conversations": report.conversations, "used": report.used,
            "skipped_without_target": report.skipped_no_target, "truncated": len(report.truncated),
            "tokens_per_epoch": report.tokens, "loss_tokens_per_epoch": report.loss_tokens,
            "packed_rows": len(data.rows), "steps_per_epoch": data.steps_per_epoch,
            "seconds": round(time.time() - t0, 2),
        }
        self.emit(EVENT_LOG, {"level": "info", "message": "preprocessing done", "stage": self.stage,
                              **preprocessing})
        st.source = source
        st.plan = plan
        st.dist = dist
        st.parallel = parallel
        st.loss_impl = loss_impl
        st.tokenizer = tokenizer
        st.data = data
        st.val_batches = val_batches
        st.preprocessing = preprocessing

    def _load_model(self, st: "_StageState") -> None:
        """The base model with its LoRA adapter, the loss and optimizer, the trainer; a resume
        loads the checkpoint's adapter and training state."""
        import random

        import numpy as np
        import torch

        from . import checkpoints, modeling
        from . import loss as losses
        from .trainer import Trainer

        spec, hp = self.spec, self.hp
        source, plan, dist, parallel = st.source, st.plan, st.dist, st.parallel
        loss_impl, data, val_batches = st.loss_impl, st.data, st.val_batches
        self.enter("model_loading")
        random.seed(hp.seed)
        np.random.seed(hp.seed % 2**32)
        torch.manual_seed(hp.seed)
        model = modeling.load_base_model(source, plan, spec.hf_token, for_fsdp=parallel == "fsdp")
        model = modeling.add_lora(model, hp, plan)
        device = (torch.device("cuda", torch.cuda.current_device()) if plan.device == "cuda"
                  else torch.device("cpu"))
        if plan.device == "cpu":
            model.to(device)
            if dist.enabled:  # one process per core group, not every process on every core
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.world_size))
        local_checkpoint = None
        if spec.resume_from:
            try:
                local_checkpoint = checkpoints.fetch(spec.resume_from, self.work_dir / "resume")
            except storage.StorageError as exc:
                raise DatasetUnreachable(f"the checkpoint to resume from could not be read: {exc}") from exc
            # Before any wrapping: every rank holds the same full adapter, which DDP and FSDP take as is.
            checkpoints.load_adapter(local_checkpoint, model)
        loss_fn = distributed.wrap(losses.loss_module(model, impl=loss_impl, chunk_tokens=spec.loss_chunk_tokens),
                                   parallel, dist, device)
        optimizer = modeling.make_optimizer(model, hp, plan)  # after wrapping: FSDP needs it so
        trainer = Trainer(
            model=model, optimizer=None, scheduler=None, data=data, hp=hp, device=device,
            emit=lambda t, d, step: self.events.emit(t, d, step=step), stop=self.stop,
            work_dir=self.work_dir, output_uri=spec.output_uri, checkpoint_every=spec.checkpoint_every,
            keep_checkpoints=spec.keep_checkpoints, faults=self.faults, job_id=spec.job_id, attempt=spec.attempt,
            loss_fn=loss_fn, dist=dist, val_batches=val_batches,
        )
        trainer.optimizer = optimizer
        trainer.scheduler = modeling.make_scheduler(optimizer, hp, trainer.total_steps)
        rng = None
        if local_checkpoint is not None:
            state, rng, warnings = checkpoints.load_training_state(
                local_checkpoint, model=model, optimizer=optimizer, scheduler=trainer.scheduler,
                wrapped=loss_fn, rank=dist.rank)
            for w in warnings + trainer.restore(state, spec.resume_from):
                self.warn(w)
        self.trainer = trainer
        st.model = model
        st.device = device
        st.loss_fn = loss_fn
        st.optimizer = optimizer
        st.trainer = trainer
        st.rng = rng

    def _train(self, st: "_StageState") -> None:
        from . import checkpoints

        dist, trainer, rng = st.dist, st.trainer, st.rng
        self.enter("training")
        if rng is not None:
            checkpoints.restore_rng(rng)  # last, so nothing between here and step k+1 draws from it
        train_started = time.time()
        outcome = trainer.train()
        if outcome == "early_stopped" and dist.is_main:
            es = trainer.early_stopped
            self.emit(EVENT_LOG, {
                "level": "info", "stage": self.stage, "early_stopping": es,
                "message": (f"early stopping at step {es['step']}: the validation loss did not improve by "
                            f"{es['min_delta']:g} for {es['patience']} evaluations; "
                            + (f"the adapter is the one of step {es['best_step']} (valid_loss {es['best_valid_loss']:.4f})"
                               if es["restored"] else "the adapter is the final one")),
            })
        # A stop that arrived during the last step is agreed by every rank here, while they are all
        # still present for the checkpoint's collectives.
        if outcome == "stopped" or trainer.stop_requested():
            raise Interrupted(self.stop.reason)
        st.train_seconds = time.time() - train_started

    def _finalize(self, st: "_StageState") -> bool:
        """Save and upload the adapter and the metrics; False on ranks other than 0 (done)."""
        from . import modeling

        spec = self.spec
        dist, model, trainer, loss_fn = st.dist, st.model, st.trainer, st.loss_fn
        optimizer, parallel, source, plan = st.optimizer, st.parallel, st.source, st.plan
        tokenizer, preprocessing = st.tokenizer, st.preprocessing
        adapter_dir = self.work_dir / "adapter"
        with distributed.full_params(loss_fn, dist):  # FSDP: every rank takes part in the gather
            if dist.is_main:
                self.enter("finalizing")
                model.save_pretrained(adapter_dir, safe_serialization=True)
        if not dist.is_main:
            return False  # rank 0 alone uploads, evaluates and reports
        # From here on rank 0 is alone: a checkpoint on a late stop must not wait for the others.
        trainer.dist = distributed.SINGLE
        if parallel == "fsdp":
            # The sharded model cannot generate without the other ranks: evaluate from the saved
            # adapter on one GPU (a 4-bit 70B fits in 80 GB when it is not also training).
            st.loss_fn = st.optimizer = None
            del loss_fn, trainer.loss_fn, optimizer, trainer.optimizer
            model = modeling.reload_for_evaluation(source, plan, adapter_dir, spec.hf_token)
        tokenizer.save_pretrained(adapter_dir)
        adapter_uri = storage.join(spec.output_uri, "adapter")
        storage.upload_dir(adapter_dir, adapter_uri, last="adapter_model.safetensors")
        metrics_path = self.work_dir / "metrics.json"
        metrics_path.write_text(json.dumps({"steps": trainer.history, "preprocessing": preprocessing}, indent=1))
        metrics_uri = storage.join(spec.output_uri, "metrics.json")
        storage.upload(metrics_path, metrics_uri)
        st.model = model
        st.adapter_dir = adapter_dir
        st.adapter_uri = adapter_uri
        st.metrics_uri = metrics_uri
        return True

    def _evaluate_benchmark(self, model, tokenizer, device, full: dict[str, Any]) -> dict[str, Any]:
        """The same evaluation on the organization's benchmark split (spec.benchmark), so any job's
        report can be measured on one fixed test set. The knowledge set and lm-eval tasks do not
        depend on the data: the job's own results are reused. Failure is recorded, not raised."""
        import dataclasses

        from . import evaluate
        from .data import tokenize_all

        bench = self.spec.benchmark or {}
        head = {"dataset_id": bench.get("dataset_id"), "name": bench.get("name"),
                "val_fingerprint": bench.get("val_fingerprint")}
        try:
            rows = self._fetch_split(bench["val_uri"], "benchmark")
            convs = tokenize_all(tokenizer, rows, self.hp.max_seq_len)[0] if rows else []
            spec = dataclasses.replace(self.spec, eval_knowledge=False, eval_lm_tasks=())
            doc = evaluate.full_evaluation(model, tokenizer, spec, val_rows=rows, val_conversations=convs,
                                           device=device, check=self.check_stop, warn=self.warn)
        except (DatasetUnreachable, KeyError) as exc:
            self.warn(f"the benchmark split could not be evaluated: {exc}")
            return {**head, "not_computed": f"the benchmark split could not be evaluated: {exc}"}
        for shared in ("knowledge", "lm_eval"):
            if shared in full:
                doc[shared] = full[shared]
        return {**doc, **head}

    def _evaluate(self, st: "_StageState") -> dict[str, Any]:
        """Evaluate the adapter on the held-out split; the run's summary (the `completed` event)."""
        from . import evaluate
        from .data import read_jsonl, tokenize_all

        spec, hp = self.spec, self.hp
        model, tokenizer, device, trainer = st.model, st.tokenizer, st.device, st.trainer
        val_batches, adapter_dir, adapter_uri, metrics_uri = st.val_batches, st.adapter_dir, st.adapter_uri, st.metrics_uri
        train_seconds, preprocessing, plan = st.train_seconds, st.preprocessing, st.plan
        self.enter("evaluating")
        if not val_batches:
            self.warn("no validation split: perplexity was not measured")
        # The held-out split as downloaded in preprocessing, read again (cheap) so this stage needs
        # nothing from the others but the model and tokenizer.
        val_path = self.work_dir / "data" / "val.jsonl"
        val_rows = read_jsonl(val_path) if spec.val_uri and val_path.exists() else []
        val_eval_convs = tokenize_all(tokenizer, val_rows, hp.max_seq_len)[0] if val_rows else []
        full = evaluate.full_evaluation(model, tokenizer, spec, val_rows=val_rows, val_conversations=val_eval_convs,
                                        device=device, check=self.check_stop, warn=self.warn)
        if spec.benchmark:
            full["benchmark"] = self._evaluate_benchmark(model, tokenizer, device, full)
        evaluation_path = self.work_dir / "evaluation.json"
        evaluation_path.write_text(json.dumps(full, indent=1))
        evaluation_uri = storage.join(spec.output_uri, "evaluation.json")
        storage.upload(evaluation_path, evaluation_uri)
        ev = {**evaluate.summary(full), "evaluation_uri": evaluation_uri}
        eval_path = self.work_dir / "eval.json"
        eval_path.write_text(json.dumps(ev, indent=1))
        eval_uri = storage.join(spec.output_uri, "eval.json")
        storage.upload(eval_path, eval_uri)
        self.check_stop()

        last = trainer.history[-1] if trainer.history else {}
        evaluated = [h for h in trainer.history if h.get("valid_loss") is not None]
        return {
            "final_metrics": {
                **{k: last.get(k) for k in ("step", "total_steps", "epoch", "loss", "learning_rate", "grad_norm",
                                            "train_mean_token_accuracy")},
                # The last validation measured during training (it may be a few steps before the end).
                **({k: evaluated[-1].get(k) for k in ("valid_loss", "valid_mean_token_accuracy")} if evaluated else {}),
            },
            "eval": ev,
            "artifacts": {
                "adapter_uri": adapter_uri,
                "adapter_files": sorted(p.name for p in adapter_dir.iterdir()),
                "tokenizer_included": True,
                "metrics_uri": metrics_uri,
                "eval_uri": eval_uri,
                "evaluation_uri": evaluation_uri,
                "checkpoint_uri": trainer.last_checkpoint[1] if trainer.last_checkpoint else None,
            },
            "train_tokens": trainer.train_tokens,
            "tokens_per_s": round(trainer.train_tokens / trainer.train_seconds, 1) if trainer.train_seconds else None,
            "train_seconds": round(train_seconds, 2),
            "duration_s": round(time.time() - self.started, 2),
            "resumed_from": spec.resume_from,
            "early_stopping": trainer.early_stopped,
            "best_valid_loss": trainer.best_valid_loss,
            "best_valid_step": trainer.best_step,
            "preprocessing": preprocessing,
            "device": plan.device,
            "quantized_4bit": plan.quantize_4bit,
        }


class _StageState:
    """What the stages of one run hand each other (set by the stage that makes each)."""

    source = plan = dist = parallel = loss_impl = tokenizer = data = preprocessing = None
    val_batches: list = []
    model = device = loss_fn = optimizer = trainer = rng = None
    train_seconds = 0.0
    adapter_dir = adapter_uri = metrics_uri = None


def run_job(spec: JobSpec, work_dir: Path | None = None) -> int:
    return JobRun(spec, work_dir).run()
