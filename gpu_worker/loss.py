"""The training loss, computed without materialising the logits of a whole sequence.

Llama-3's vocabulary has 128,256 entries: the float32 logits of one 4,096-token sequence are
about 2 GB, and their gradient as much again, more than the LoRA weights, activations and
optimizer together. Three ways to get the summed cross-entropy over the tokens that carry a label:

- `plain`: the model's own forward with `logits_to_keep` limited to the labelled positions
  (still [labelled tokens x vocab] logits and their gradient).
- `chunked`: the decoder's last hidden state, then the LM head and cross-entropy over slices of
  `chunk_tokens` positions, each slice under activation checkpointing, so at most one slice's
  logits exist at a time, in the forward and in the backward. Pure PyTorch, any device.
- `liger`: Liger Kernel's fused linear cross-entropy (Triton, CUDA only), which never writes the
  logits to memory at all. Used by `auto` on CUDA when `liger-kernel` is installed.

`LossModule` wraps the causal LM so that the whole loss runs inside one `forward`: that is what
DistributedDataParallel and FSDP hook into, so gradient synchronisation covers the chunked path.
"""
from __future__ import annotations

import importlib.util
from typing import Any

LOSS_IMPLS = ("auto", "plain", "chunked", "liger")
DEFAULT_CHUNK_TOKENS = 512


def liger_available() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def resolve_impl(requested: str, *, cuda: bool, liger: bool | None = None) -> str:
    """The implementation `requested` means on this machine (pure; unit-tested)."""
    if requested not in LOSS_IMPLS:
        raise ValueError(f"loss_impl must be one of {', '.join(LOSS_IMPLS)} (got {requested!r})")
    liger = liger_available() if liger is None else liger
    if requested == "auto":
        return "liger" if cuda and liger else "chunked"
    if requested == "liger" and not (cuda and liger):
        # Asked for explicitly but impossible here: fall back to the exact pure-PyTorch path
        # rather than fail a paid run; the runner logs the substitution.
        return "chunked"
    return requested


def _causal_lm(model):
    """The transformers *ForCausalLM under a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _softcap(model) -> float | None:
    return getattr(_causal_lm(model).config, "final_logit_softcapping", None)


def _slice_ce_sum_correct(lm_head, hidden, labels, softcap):
    """Summed cross-entropy of one slice and how many of its tokens the model predicts (argmax)."""
    import torch
    import torch.nn.functional as F

    logits = lm_head(hidden).float()  # the loss is always summed in float32
    if softcap:
        logits = softcap * (logits / softcap).tanh()
    with torch.no_grad():
        correct = (logits.argmax(-1) == labels).sum()
    return F.cross_entropy(logits, labels, reduction="sum"), correct


def chunked_ce_sum(lm_head, hidden, labels, *, chunk_tokens: int = DEFAULT_CHUNK_TOKENS, softcap=None,
                   count_correct: bool = False):
    """Sum of cross-entropy of `lm_head(hidden)` against `labels`, `chunk_tokens` rows at a time
    (and, with `count_correct`, the number of argmax hits as a second value).

    `hidden` is [n, d] (only the labelled positions), `labels` [n]. Each slice is checkpointed:
    its logits are freed after the forward and recomputed in the backward.
    """
    import torch
    from torch.utils.checkpoint import checkpoint

    if chunk_tokens < 1:
        raise ValueError("chunk_tokens must be at least 1")
    total = hidden.new_zeros((), dtype=torch.float32)
    correct = torch.zeros((), dtype=torch.long, device=hidden.device)
    for start in range(0, hidden.shape[0], chunk_tokens):
        h = hidden[start:start + chunk_tokens]
        y = labels[start:start + chunk_tokens]
        if torch.is_grad_enabled() and h.requires_grad:
            s, c = checkpoint(_slice_ce_sum_correct, lm_head, h, y, softcap, use_reentrant=False)
        else:
            s, c = _slice_ce_sum_correct(lm_head, h, y, softcap)
        total = total + s
        correct = correct + c
    return (total, correct) if count_correct else total


def _liger_ce_sum(lm_head, hidden, labels, softcap=None):
    import torch
    from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss

    # accum_dtype float32: the bf16 kernel accumulates the gradient in float32, as the other paths do.
    loss = LigerFusedLinearCrossEntropyLoss(reduction="sum", softcap=softcap, accum_dtype=torch.float32)
    return loss(lm_head.weight, hidden, labels, getattr(lm_head, "bias", None)).float()


def loss_sum(model, tensors: dict[str, Any], keep, *, impl: str = "plain",
             chunk_tokens: int = DEFAULT_CHUNK_TOKENS, count_correct: bool = False):
    """Summed cross-entropy over positions `keep` of one packed micro-batch (float32); with
    `count_correct`, (sum, tokens predicted right by argmax) — None for the fused kernel, which
    never forms the logits."""
    import torch
    import torch.nn.functional as F

    labels = tensors["labels"][0]
    if impl == "plain":
        out = model(
            input_ids=tensors["input_ids"],
            position_ids=tensors["position_ids"],
            attention_mask=None,  # packed: transformers derives block-diagonal attention from position_ids
            use_cache=False,
            logits_to_keep=keep,
        )
        logits = out.logits[0]
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        total = F.cross_entropy(logits, labels[keep], reduction="sum")
        if not count_correct:
            return total
        with torch.no_grad():
            return total, (logits.argmax(-1) == labels[keep]).sum()

    causal = _causal_lm(model)
    body = causal.get_decoder()
    hidden = body(
        input_ids=tensors["input_ids"], position_ids=tensors["position_ids"], attention_mask=None,
        use_cache=False,
    ).last_hidden_state[0][keep]
    lm_head = causal.get_output_embeddings()
    if impl == "liger":
        total = _liger_ce_sum(lm_head, hidden, labels[keep], softcap=_softcap(model))
        return (total, None) if count_correct else total
    if impl == "chunked":
        return chunked_ce_sum(lm_head, hidden, labels[keep], chunk_tokens=chunk_tokens, softcap=_softcap(model),
                              count_correct=count_correct)
    raise ValueError(f"unknown loss implementation {impl!r}")


def loss_module(model, *, impl: str, chunk_tokens: int = DEFAULT_CHUNK_TOKENS):
    """An nn.Module whose forward(input_ids, position_ids, labels, keep) returns the summed loss
    and the number of tokens predicted right (None under the fused kernel)."""
    import torch

    class LossModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.impl = impl

        def forward(self, input_ids, position_ids, labels, keep):
            tensors = {"input_ids": input_ids, "position_ids": position_ids, "labels": labels}
            # Evaluation never needs the fused kernel's memory saving more than its accuracy.
            use = "chunked" if impl == "liger" and not torch.is_grad_enabled() else impl
            return loss_sum(self.model, tensors, keep, impl=use, chunk_tokens=chunk_tokens, count_correct=True)

    return LossModule()
