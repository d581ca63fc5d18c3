"""gpu_worker.evaluation.pod_eval on a tiny random Llama built here (nothing downloaded)."""
import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.conftest import SAMPLE_FILE  # noqa: E402
from gpu_worker.evaluation import pod_eval  # noqa: E402

CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start|>' + message['role'] + '<|sep|>' + message['content'] | trim + '<|eot|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start|>assistant<|sep|>' }}{%- endif %}"
)


def _sample_texts():
    data = json.loads(SAMPLE_FILE.read_text())
    texts = []
    for conv in data["conversations"]:
        for pair in conv["training_pairs"]:
            texts.append(pair["current_user_input"] or "")
            texts.append(pair["target_response"] or "")
    return [t for t in texts if t] + ["anxiety fear shame guilt hope relief clarity options A B C D"]


@pytest.fixture(scope="module")
def tiny():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<|bos|>", "<|eos|>", "<|pad|>", "<|start|>", "<|sep|>", "<|eot|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_sample_texts(), trainers.BpeTrainer(
        vocab_size=600, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>",
                                        pad_token="<|pad|>", additional_special_tokens=special[3:])
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config).eval()
    return model, tokenizer


def _naive_logprob(model, tokenizer, prompt_messages, option):
    """Reference computation: one unpadded sequence, full logits."""
    prompt = tokenizer.apply_chat_template(prompt_messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(prompt_messages + [{"role": "assistant", "content": option}], tokenize=False)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    f_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    assert f_ids[:len(p_ids)] == p_ids
    with torch.no_grad():
        logits = model(torch.tensor([f_ids])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    return sum(lp[t - 1, f_ids[t]].item() for t in range(len(p_ids), len(f_ids))), len(f_ids) - len(p_ids)


def test_option_loglikelihoods_match_an_unbatched_computation_and_repeat(tiny):
    model, tokenizer = tiny
    messages = [{"role": "user", "content": "I feel so ashamed about my credit card debt. Which emotion is this?"}]
    options = ["shame", "hope", "relief and a long tail of words", "anxiety"]
    first = pod_eval.option_loglikelihoods(model, tokenizer, messages, options, batch_size=3)
    second = pod_eval.option_loglikelihoods(model, tokenizer, messages, options, batch_size=3)
    assert first == second  # deterministic
    assert len(first) == 4 and all(x < 0 for x in first)
    for option, got in zip(options, first):
        want, _ = _naive_logprob(model, tokenizer, messages, option)
        assert got == pytest.approx(want, abs=1e-3)
    normalized = pod_eval.option_loglikelihoods(model, tokenizer, messages, options, length_normalized=True)
    counts = [s.n_tokens for s in pod_eval.option_scores(model, tokenizer, messages, options)]
    assert normalized == pytest.approx([f / n for f, n in zip(first, counts)], abs=1e-5)
    assert counts[2] > counts[0]  # the long option has more tokens (end-of-turn included)


def test_choice_items_are_scored_and_correct_option_is_readable(tiny):
    from training.datasets.normalize import parse

    model, tokenizer = tiny
    conversations = parse(SAMPLE_FILE.read_bytes()).conversations[:2]
    emotion = pod_eval.emotion_recognition_items(conversations)
    knowledge = pod_eval.knowledge_items()[:3]
    assert emotion and all(i.kind == "emotion" for i in emotion)
    results = pod_eval.score_choice_items(model, tokenizer, emotion[:2] + knowledge, batch_size=8)
    again = pod_eval.score_choice_items(model, tokenizer, emotion[:2] + knowledge, batch_size=5)
    for r, r2, item in zip(results, again, emotion[:2] + knowledge):
        assert len(r.scores) == len(item.options)
        assert r.answer == item.answer
        assert r.scores[r.answer].logprob == pytest.approx(r2.scores[r.answer].logprob, abs=1e-4)
        assert isinstance(r.correct(), bool) and isinstance(r.correct(normalized=True), bool)
    assert 0.0 <= pod_eval.accuracy(results) <= 1.0


def test_generate_replies_is_deterministic(tiny):
    from training.datasets.normalize import parse

    model, tokenizer = tiny
    items = pod_eval.reply_items(parse(SAMPLE_FILE.read_bytes()).conversations[:1])[:3]
    assert items and items[0].prompt_messages[0]["role"] == "system"
    a = pod_eval.generate_replies(model, tokenizer, items, max_new_tokens=12, seed=7, batch_size=2)
    b = pod_eval.generate_replies(model, tokenizer, items, max_new_tokens=12, seed=7, batch_size=2)
    assert [r.text for r in a] == [r.text for r in b]
    assert [r.item_id for r in a] == [i.item_id for i in items]
    assert all(0 < r.n_new_tokens <= 12 or r.finished for r in a)


def test_shared_prompt_scoring_matches_the_batched_scores(tiny):
    """Emotion items (17 options after one transcript) run the prompt once and continue each option
    from a copy of its cache; the numbers match the batched full-sequence computation."""
    from training.datasets.normalize import parse

    model, tokenizer = tiny
    conversations = parse(SAMPLE_FILE.read_bytes()).conversations[:2]
    item = pod_eval.emotion_recognition_items(conversations)[0]
    assert len(item.options) > pod_eval.SHARED_PREFIX_MIN_OPTIONS
    shared = pod_eval.score_choice_items(model, tokenizer, [item])[0].scores
    batched = pod_eval.option_scores(model, tokenizer, item.prompt_messages, item.options, batch_size=4)
    assert [s.n_tokens for s in shared] == [s.n_tokens for s in batched]
    for a, b in zip(shared, batched):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-3)
