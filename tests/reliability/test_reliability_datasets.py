"""Item 9 of issue 10, through the HTTP API: the bad-dataset corpora of tests/training (reused,
not copied) plus a few more, uploaded to POST /api/v1/datasets/ → each refused with a located
message (4xx) or imported whole (201); never a 500, never a partial dataset."""
from __future__ import annotations

import json
import time

import pytest

from accounts.models import Role
from tests.reliability.figures import record, size
from tests.training.test_dataset_bad_input import BAD_INPUTS
from tests.training.test_dataset_corpus import CORPUS, EXPECTED, _chat

pytestmark = pytest.mark.django_db

TINY = size(20_000, 100_000)

EXTRA = {
    # wrong types at the top of a conversation and inside a message
    "messages is null": (b'{"messages": null}', "messages"),
    "role is a number": (b'{"messages": [{"role": 1, "content": "a"}, {"role": "assistant", "content": "b"}]}', "role"),
    "bool content": (b'{"messages": [{"role": "user", "content": true}, {"role": "assistant", "content": "b"}]}',
                     "content"),
    # encodings
    "utf-32 without a mark": (_chat(1).encode("utf-32-le"), "without a byte-order mark"),
    "cp1252 quotes": ('{"messages": [{"role": "user", "content": "\u201chi\u201d"}, {"role": "assistant", '
                      '"content": "b"}]}'.encode("cp1252"), "UTF-8"),
    "lone surrogate escape": (b'{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", '
                              b'"content": "b"}]}\n' + _chat(2).encode(), "surrogate"),
    # deep nesting inside a value that is otherwise fine
    "deep object in metadata": (b'{"metadata": ' + b'{"a": ' * 3000 + b"1" + b"}" * 3000 + b', "messages": []}', None),
    # a huge number and a huge key
    "huge number": (b'{"messages": [{"role": "user", "content": "a", "n": 1' + b"0" * 100_000 + b'},'
                    b' {"role": "assistant", "content": "b"}]}', None),
    "truncated utf-8 sequence": (_chat(1, user="caf\xe9").encode()[:-30], None),
}


def _upload(client, name, raw):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post("/api/v1/datasets/", {"file": SimpleUploadedFile(name, raw)}, format="multipart")


@pytest.mark.slow
def test_bad_datasets_through_the_api(client_as, organization, storage_root):
    from training.models import Dataset

    client = client_as("ds-eng", organization, Role.ENGINEER)
    cases = {}
    for name, raw in CORPUS.items():
        cases[f"corpus: {name}"] = (raw, EXPECTED[name])
    for name, (raw, expected, _where) in BAD_INPUTS.items():
        cases[f"bad input: {name}"] = (raw, expected)
    for name, (raw, expected) in EXTRA.items():
        cases[f"extra: {name}"] = (raw, expected)
    outcomes = {"imported": 0, "refused with a message": 0, "server errors": 0, "partial datasets": 0,
                "unlocated refusals": 0}
    problems = []
    for name, (raw, expected) in cases.items():
        before = Dataset.objects.count()
        response = _upload(client, "data.jsonl" if b"\n{" in raw[:2000] else "data.json", raw)
        after = Dataset.objects.count()
        if response.status_code >= 500:
            outcomes["server errors"] += 1
            problems.append(f"{name}: {response.status_code}")
            continue
        if response.status_code == 201:
            outcomes["imported"] += 1
            body = response.json()
            if after != before + 1 or not body.get("conversation_count"):
                outcomes["partial datasets"] += 1
                problems.append(f"{name}: imported but {after - before} rows")
            if expected not in ("ok", None):
                problems.append(f"{name}: imported, expected a refusal containing {expected!r}")
            continue
        message = json.dumps(response.json())
        outcomes["refused with a message"] += 1
        if after != before:
            outcomes["partial datasets"] += 1
            problems.append(f"{name}: refused but a row was written")
        if expected not in ("ok", None) and expected not in message:
            outcomes["unlocated refusals"] += 1
            problems.append(f"{name}: {response.status_code} {message[:200]} (expected {expected!r})")
        if expected == "ok":
            problems.append(f"{name}: refused, expected an import: {message[:200]}")

    # 10^5 tiny conversations (fast size 2·10^4), through the same endpoint.
    raw = "\n".join(_chat(i) for i in range(TINY)).encode()
    t0 = time.monotonic()
    response = _upload(client, "many.jsonl", raw)
    elapsed = time.monotonic() - t0
    tiny_ok = response.status_code == 201 and response.json()["conversation_count"] == TINY
    label = "9 bad datasets (HTTP)"
    record(label, "files uploaded: imported / refused with a message", f"{len(cases)}: {outcomes['imported']} / "
           f"{outcomes['refused with a message']}", size=f"{len(cases)} files")
    record(label, "server errors / partial datasets / refusal not naming the problem",
           f"{outcomes['server errors']} / {outcomes['partial datasets']} / {outcomes['unlocated refusals']}",
           target="0 / 0 / 0")
    record(label, f"{TINY:,} tiny conversations ({len(raw) / 1e6:.1f} MB) through the API",
           f"{response.status_code}, {'all imported' if tiny_ok else response.content[:120]}, {elapsed:.1f} s",
           size=f"{TINY:,}")
    assert not problems, "\n".join(problems)
    assert tiny_ok
