"""Several GPUs on one pod: torch.distributed's elastic launcher, DDP or FSDP, rank-0 side effects.

How a step is split: the optimizer step's micro-batches (micro_batch_size x
gradient_accumulation_steps rows, the same as on one GPU) are dealt round-robin to the ranks.
Each rank sums its loss over its share, scaled so that DDP's gradient *average* becomes the sum
over all ranks divided by the step's loss tokens: exactly the single-GPU gradient. The effective
batch, the data order, the checkpoint's data position and the number of steps do not depend on
the number of GPUs, so a job resumes on any number of ranks and the estimate's steps are the same.

- DDP for models whose (quantized) weights fit on one GPU: each rank holds the whole model, LoRA
  gradients are all-reduced.
- FSDP for models that do not (a 70B in NF4 is ~35 GB before activations): the decoder layers are
  sharded; QLoRA under FSDP needs the 4-bit weights stored in the compute dtype
  (`bnb_4bit_quant_storage`, see modeling.load_base_model) so FSDP can flatten them.

Rank 0 alone sends events, writes checkpoints and artifacts and runs the evaluation; every rank
restores from a checkpoint; a stop (SIGTERM, max runtime) on any rank is agreed by all at the next
step boundary so no rank is left waiting in a collective.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PARALLEL_STRATEGIES = ("auto", "ddp", "fsdp")
# Above this many parameters a model in NF4 no longer leaves room for activations on an 80 GB GPU
# with DDP's full replica; `auto` shards it with FSDP instead.
FSDP_AUTO_MIN_PARAMS_B = 30.0


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Dist()


def from_env(environ=None) -> Dist:
    env = os.environ if environ is None else environ
    world = int(env.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return SINGLE
    return Dist(rank=int(env["RANK"]), world_size=world, local_rank=int(env.get("LOCAL_RANK", env["RANK"])))


def plan_parallel(strategy: str, *, gpu_count: int, params_b: float | None) -> str:
    """'none', 'ddp' or 'fsdp' for a job (pure; unit-tested)."""
    if strategy not in PARALLEL_STRATEGIES:
        raise ValueError(f"parallel must be one of {', '.join(PARALLEL_STRATEGIES)} (got {strategy!r})")
    if gpu_count <= 1:
        return "none"
    if strategy != "auto":
        return strategy
    return "fsdp" if params_b is not None and params_b >= FSDP_AUTO_MIN_PARAMS_B else "ddp"


def rank_share(items: list, dist: Dist) -> list:
    """This rank's micro-batches of one optimizer step (round-robin)."""
    return items[dist.rank::dist.world_size] if dist.enabled else list(items)


def rank_share_padded(items: list, dist: Dist) -> list:
    """This rank's share, padded with None to the largest share, so every rank makes the same
    number of forward passes (FSDP gathers weights in each: a missing pass would hang the others)."""
    if not dist.enabled:
        return list(items)
    per_rank = -(-len(items) // dist.world_size)
    mine = rank_share(items, dist)
    return mine + [None] * (per_rank - len(mine))


def init_process_group(dist: Dist, device_type: str) -> None:
    import torch
    import torch.distributed as td

    if not dist.enabled or td.is_initialized():
        return
    if device_type == "cuda":
        torch.cuda.set_device(dist.local_rank)
        td.init_process_group("nccl", device_id=torch.device("cuda", dist.local_rank))
    else:
        td.init_process_group("gloo")


def destroy_process_group() -> None:
    import torch.distributed as td

    if td.is_initialized():
        td.destroy_process_group()


def _collective_device():
    import torch
    import torch.distributed as td

    return torch.device("cuda", torch.cuda.current_device()) if td.get_backend() == "nccl" else torch.device("cpu")


def all_sum(value, dist: Dist):
    """The sum over ranks of a float32 tensor (returned as a tensor on the same device)."""
    if not dist.enabled:
        return value
    import torch.distributed as td

    out = value.detach().clone().to(_collective_device())
    td.all_reduce(out, op=td.ReduceOp.SUM)
    return out.to(value.device)


def any_rank(flag: bool, dist: Dist) -> bool:
    """True on every rank when `flag` is true on at least one."""
    if not dist.enabled:
        return flag
    import torch
    import torch.distributed as td

    t = torch.tensor([1 if flag else 0], device=_collective_device())
    td.all_reduce(t, op=td.ReduceOp.MAX)
    return bool(t.item())


def gather_to_main(obj: Any, dist: Dist) -> list[Any] | None:
    """Every rank's `obj` on rank 0 (None elsewhere)."""
    if not dist.enabled:
        return [obj]
    import torch.distributed as td

    out = [None] * dist.world_size if dist.is_main else None
    td.gather_object(obj, out, dst=0)
    return out


def barrier(dist: Dist) -> None:
    if dist.enabled:
        import torch.distributed as td

        td.barrier()


def wrap(module, strategy: str, dist: Dist, device):
    """The loss module wrapped for `strategy` ('none' returns it as is)."""
    if strategy == "none" or not dist.enabled:
        return module
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        # Frozen base weights are identical on every rank by construction (same files, same
        # seed); only the LoRA gradients need reducing. No buffers change during training.
        return DDP(module, device_ids=ids, broadcast_buffers=False)
    if strategy == "fsdp":
        return _fsdp_wrap(module, device)
    raise ValueError(f"unknown parallel strategy {strategy!r}")


def _fsdp_wrap(module, device):
    import functools

    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp import ShardingStrategy
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    layer_classes = {type(m) for name, m in module.named_modules() if name.endswith("layers.0")}
    policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls=layer_classes)
    return FSDP(
        module,
        auto_wrap_policy=policy,
        sharding_strategy=ShardingStrategy.FULL_SHARD,
        use_orig_params=True,  # frozen and trainable parameters in one flat group (QLoRA)
        device_id=device if device.type == "cuda" else None,
        limit_all_gathers=True,
        sync_module_states=False,
    )


def no_sync(wrapped, last: bool):
    """Skip the gradient all-reduce on every micro-batch but a rank's last of the step."""
    if last or not hasattr(wrapped, "no_sync"):
        return nullcontext()
    return wrapped.no_sync()


def is_fsdp(wrapped) -> bool:
    return type(wrapped).__name__ == "FullyShardedDataParallel"


def clip_grad_norm(wrapped, params, max_norm: float) -> float:
    import torch

    if is_fsdp(wrapped):
        return float(wrapped.clip_grad_norm_(max_norm))
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))


def full_params(wrapped, dist: Dist):
    """A context in which rank 0 sees the whole (unsharded) adapter: for saving under FSDP."""
    if not is_fsdp(wrapped):
        return nullcontext()
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    return FSDP.summon_full_params(wrapped, writeback=False, rank0_only=True, offload_to_cpu=True)


# --------------------------------------------------------------------------- launching
def _rank_entry(spec_dict: dict[str, Any], work_dir: str | None) -> int:
    """One rank (runs in a process started by the elastic agent, with RANK/WORLD_SIZE set)."""
    import logging
    import sys

    from .contracts import JobSpec
    from .runner import run_job

    logging.basicConfig(level=os.environ.get("BRIGHTRUN_LOG_LEVEL", "INFO"),
                        format=f"%(asctime)s rank{os.environ.get('RANK')} %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    return run_job(JobSpec.from_dict(spec_dict), Path(work_dir) if work_dir else None)


def launch(spec, work_dir: Path | None) -> int:
    """Run `spec` on spec.gpu_count local processes (torchrun's standalone mode) and return rank 0's
    exit code: EXIT_OK, EXIT_FAILED, or EXIT_INTERRUPTED after a SIGTERM reached every rank."""
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from .contracts import EXIT_FAILED, EXIT_INTERRUPTED

    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=spec.gpu_count,
        rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0",  # torchrun --standalone
        run_id=f"{spec.job_id}-{spec.attempt}-{uuid.uuid4().hex[:8]}",
        max_restarts=0,  # a failed rank fails the attempt; the control plane decides on retries
        monitor_interval=0.5, start_method="spawn",
    )
    try:
        results = elastic_launch(config, _rank_entry)(spec.to_dict(), str(work_dir) if work_dir else None)
    except SignalException:
        # SIGTERM reached the launcher: the agent forwarded it to the ranks and waited for them
        # (they stop at a step boundary and rank 0 saves a checkpoint and reports).
        return EXIT_INTERRUPTED
    except ChildFailedError as exc:
        codes = [f.exitcode for f in exc.failures.values()]
        return EXIT_INTERRUPTED if EXIT_INTERRUPTED in codes else EXIT_FAILED
    return int(results.get(0, EXIT_FAILED))
