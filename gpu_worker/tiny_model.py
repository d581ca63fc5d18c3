"""A tiny Llama-architecture model with a tokenizer trained on the dataset's own text.

Used by the embedded default and the tests so nothing is downloaded: the result is a normal
Hugging Face model directory, loaded by the same `from_pretrained` code as a real model.
Deterministic: the same dataset gives the same tokenizer and the same weights.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"
PAD = "<|finetune_right_pad_id|>"
SPECIAL_TOKENS = [BOS, EOS, START_HEADER, END_HEADER, EOT, PAD]

# The Llama-3 chat layout (without the date preamble of 3.1).
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


def dataset_texts(path: Path) -> list[str]:
    """Every message text of a Bright Run JSON file or a normalized JSONL file."""
    path = Path(path)
    raw = path.read_text(encoding="utf-8")
    texts: list[str] = []
    if path.suffix == ".jsonl" or raw.lstrip().startswith('{"conversation_id"'):
        for line in raw.splitlines():
            if line.strip():
                texts.extend(m["content"] for m in json.loads(line)["messages"])
        return texts
    data = json.loads(raw)
    for conv in data.get("conversations", []):
        for pair in conv.get("training_pairs", []):
            for value in (pair.get("system_prompt"), pair.get("current_user_input"), pair.get("target_response")):
                if value:
                    texts.append(value)
            texts.extend(h["content"] for h in pair.get("conversation_history", []) if h.get("content"))
    # Pairs repeat the history; unique texts keep training fast and the merges the same.
    return list(dict.fromkeys(texts))


def build_tokenizer(texts: Iterable[str], vocab_size: int = 4000, model_max_length: int = 8192):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOT,
        pad_token=PAD,
        model_max_length=model_max_length,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny_model(
    dataset: Path,
    out: Path,
    *,
    vocab_size: int = 4000,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    max_position_embeddings: int = 8192,
    seed: int = 0,
) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(dataset_texts(dataset), vocab_size=vocab_size,
                                model_max_length=max_position_embeddings)
    tokenizer.save_pretrained(out)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 8 // 3 // 16 * 16 + 16,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        rope_theta=500000.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(state)
    model.save_pretrained(out, safe_serialization=True)
    (out / "tiny_model.json").write_text(json.dumps(
        {"built_by": "gpu_worker make-tiny-model", "dataset": Path(dataset).name, "seed": seed},
        indent=1,
    ))
    return out


