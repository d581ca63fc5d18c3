"""The chunked loss equals the plain one (value and gradients), on raw tensors and on the tiny model."""
import pytest
import torch
import torch.nn.functional as F

from gpu_worker import loss as losses
from gpu_worker.contracts import Hyperparameters
from gpu_worker.data import micro_batch
from gpu_worker.trainer import loss_sum


def test_resolve_impl_table():
    assert losses.resolve_impl("auto", cuda=True, liger=True) == "liger"
    assert losses.resolve_impl("auto", cuda=True, liger=False) == "chunked"
    assert losses.resolve_impl("auto", cuda=False, liger=True) == "chunked"
    assert losses.resolve_impl("liger", cuda=False, liger=True) == "chunked"  # never fails a paid run
    assert losses.resolve_impl("plain", cuda=True, liger=True) == "plain"
    with pytest.raises(ValueError, match="loss_impl must be one of"):
        losses.resolve_impl("fused", cuda=False)


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
@pytest.mark.parametrize("softcap", [None, 30.0])
def test_chunked_cross_entropy_equals_full_logits(chunk, softcap):
    g = torch.Generator().manual_seed(0)
    n, d, vocab = 53, 16, 301
    head = torch.nn.Linear(d, vocab, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(vocab, d, generator=g))
    hidden = torch.randn(n, d, generator=g, requires_grad=True)
    labels = torch.randint(0, vocab, (n,), generator=g)

    logits = head(hidden)
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    full = F.cross_entropy(logits, labels, reduction="sum")
    full.backward()
    want_h, want_w = hidden.grad.clone(), head.weight.grad.clone()
    hidden.grad, head.weight.grad = None, None

    got = losses.chunked_ce_sum(head, hidden, labels, chunk_tokens=chunk, softcap=softcap)
    got.backward()
    assert abs(float(got.detach()) - float(full.detach())) <= 1e-5 * max(1.0, abs(float(full)))
    assert torch.allclose(hidden.grad, want_h, atol=1e-5, rtol=1e-5)
    assert torch.allclose(head.weight.grad, want_w, atol=1e-5, rtol=1e-5)


def _lora_model(tiny_model_dir):
    from gpu_worker import modeling

    plan = modeling.plan_model_load("none", cuda_available=False)
    torch.manual_seed(3)
    model = modeling.add_lora(modeling.load_base_model(str(tiny_model_dir), plan), Hyperparameters(lora_r=4, lora_alpha=8, lora_dropout=0.0), plan)
    # LoRA B starts at zero; give it values so the adapter contributes to the gradient check.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    return model


def test_chunked_loss_on_the_model_equals_plain(tiny_model_dir, tiny_tokenizer, short_conversations):
    from gpu_worker.data import tokenize_all

    model = _lora_model(tiny_model_dir)
    convs, _ = tokenize_all(tiny_tokenizer, short_conversations[:3], 2048)
    batch = micro_batch(convs)
    trainable = [p for p in model.parameters() if p.requires_grad]

    results = {}
    for impl, chunk in (("plain", None), ("chunked", 5), ("chunked", 100_000)):
        model.zero_grad(set_to_none=True)
        s, n = loss_sum(model, batch, impl=impl, **({"chunk_tokens": chunk} if chunk else {}))
        (s / n).backward()
        results[(impl, chunk)] = (float(s), [p.grad.clone() for p in trainable], n)
    base_loss, base_grads, n = results[("plain", None)]
    assert n > 100  # the check covers many chunks of 5
    for key, (value, grads, _) in results.items():
        assert abs(value - base_loss) <= 1e-5 * abs(base_loss), key
        worst = max(float((a - b).abs().max()) for a, b in zip(grads, base_grads))
        assert worst <= 1e-5, (key, worst)
