"""The shipped evaluation sets: the knowledge questions and the emotion label set."""
import json
from collections import Counter

import pytest

from gpu_worker.evaluation import pod_eval
from gpu_worker.evaluation.datasets import KNOWLEDGE_CATEGORIES, load_emotion_labels, load_knowledge


def test_knowledge_set_structure_and_balance():
    questions = load_knowledge()
    assert len(questions) >= 150
    assert len({q.id for q in questions}) == len(questions)
    assert len({q.question for q in questions}) == len(questions)
    by_category = Counter(q.category for q in questions)
    assert set(by_category) == set(KNOWLEDGE_CATEGORIES)
    assert min(by_category.values()) >= 20
    for q in questions:
        assert len(q.options) == 4 and len(set(q.options)) == 4, q.id
        assert all(isinstance(o, str) and o.strip() for o in q.options), q.id
        assert 0 <= q.answer < 4 and q.question.strip(), q.id
    positions = Counter(q.answer for q in questions)
    expected = len(questions) / 4
    assert all(abs(positions[p] - expected) <= 0.1 * expected for p in range(4)), positions
    for category in KNOWLEDGE_CATEGORIES:
        per = Counter(q.answer for q in questions if q.category == category)
        assert len(per) == 4 and max(per.values()) - min(per.values()) <= 2, (category, per)


def test_knowledge_items_list_the_options_in_the_prompt():
    items = pod_eval.knowledge_items()
    assert len(items) == len(load_knowledge())
    first = items[0]
    assert first.kind == "knowledge" and first.prompt_messages[0]["role"] == "user"
    for letter, option in zip("ABCD", first.options):
        assert f"{letter}. {option}" in first.prompt_messages[0]["content"]
    assert pod_eval.ChoiceItem.from_dict(json.loads(json.dumps(first.to_dict()))) == first


@pytest.mark.parametrize("path_fixture", ["real_file", "sample_file"])
def test_every_primary_emotion_in_the_datasets_maps_to_an_option(path_fixture, request):
    from training.datasets.normalize import parse

    conversations = parse(request.getfixturevalue(path_fixture).read_bytes()).conversations
    labels = load_emotion_labels()
    assert pod_eval.unmapped_emotion_labels(conversations) == {}
    items = pod_eval.emotion_recognition_items(conversations)
    labelled = sum(1 for c in conversations for m in c["messages"] if m["role"] == "user" and m.get("emotion"))
    assert len(items) == labelled
    used = {i.options[i.answer] for i in items}
    assert len(used) >= 10
    item = items[1]
    text = item.prompt_messages[-1]["content"]
    # Options are shuffled per item with a fixed seed; the question lists them in the shuffled order.
    assert "Client:" in text and "Which one emotion" in text and ", ".join(item.options) in text
    assert sorted(item.options) == sorted(labels.options) and item.options[item.answer] == item.meta["canonical_label"]
    again = pod_eval.emotion_recognition_items(conversations)
    assert [i.options for i in again] == [i.options for i in items]  # same seed, same order
    assert len({i.options for i in items}) > 1 and sum(i.options == labels.options for i in items) <= 1
    assert [i.options for i in pod_eval.emotion_recognition_items(conversations, seed=None)][0] == labels.options


def test_emotion_label_canonical_spellings():
    labels = load_emotion_labels()
    assert labels.canonical("Cautious_Hope") == "hope"
    assert labels.canonical("analytical engagement") == "curiosity"
    assert labels.canonical("shame") == "shame"
    assert labels.canonical("ennui") is None and labels.canonical(None) is None
    assert len(set(labels.options)) == len(labels.options)
    assert set(labels.aliases.values()) <= set(labels.options)


def test_emotion_item_is_the_conversation_up_to_that_turn():
    conv = {"conversation_id": "c1", "messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "first words", "emotion": {"primary": "shame"}},
        {"role": "assistant", "content": "reply one", "train": True},
        {"role": "user", "content": "second words", "emotion": {"primary": "cautious_hope"}},
        {"role": "assistant", "content": "reply two", "train": True},
        {"role": "user", "content": "last words", "emotion": {"primary": "something unknown"}},
    ]}
    items = pod_eval.emotion_recognition_items([conv])
    assert [i.item_id for i in items] == ["c1#1", "c1#3"]
    second = items[1].prompt_messages[0]["content"]
    assert "first words" in second and "reply one" in second and "second words" in second
    assert "reply two" not in second and "sys" not in second.split("\n\n")[1]
    assert items[1].options[items[1].answer] == "hope"
    assert pod_eval.unmapped_emotion_labels([conv]) == {"something unknown": 1}
    replies = pod_eval.reply_items([conv])
    assert [r.reference for r in replies] == ["reply one", "reply two"]
    assert replies[1].client_message == "second words" and replies[1].prompt_messages[-1]["content"] == "second words"


def test_knowledge_option_lengths_carry_no_answer_signal():
    """A scorer that picks the longest (or shortest) option must not beat chance by much."""
    questions = load_knowledge()
    n = len(questions)
    lengths = [[len(o) for o in q.options] for q in questions]
    correct_longest = sum(ls[q.answer] == max(ls) for q, ls in zip(questions, lengths))
    correct_shortest = sum(ls[q.answer] == min(ls) for q, ls in zip(questions, lengths))
    assert correct_longest <= 0.35 * n, (correct_longest, n)
    assert correct_shortest >= 0.15 * n, (correct_shortest, n)
    for q, ls in zip(questions, lengths):
        mean = sum(ls) / len(ls)
        assert all(abs(length - mean) <= 0.5 * mean for length in ls), (q.id, ls)
    positions = Counter(q.answer for q in questions)
    expected = n / 4
    assert all(abs(positions[p] - expected) <= 0.1 * expected for p in range(4)), positions
