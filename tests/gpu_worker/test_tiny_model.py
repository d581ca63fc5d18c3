import hashlib

from gw_brightrun import write_jsonl

from gpu_worker.tiny_model import make_tiny_model


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_model_is_deterministic_and_loads_like_any_model(tmp_path, short_conversations):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = write_jsonl(short_conversations[:10], tmp_path / "train.jsonl")
    a = make_tiny_model(data, tmp_path / "a", vocab_size=1500)
    b = make_tiny_model(data, tmp_path / "b", vocab_size=1500)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert _digest(a / name) == _digest(b / name)
    tok = AutoTokenizer.from_pretrained(a)
    model = AutoModelForCausalLM.from_pretrained(a)
    assert model.config.model_type == "llama" and model.config.vocab_size == len(tok)
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                    "<|start_header_id|>assistant<|end_header_id|>\n\n")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.convert_tokens_to_ids("<|eot_id|>") in ids
