"""Test/benchmark helper: Bright Run `brightrun-lora-v4` JSON -> normalized conversations.

Uses the control plane's importer (`training.datasets.normalize.normalize_brightrun`) when it
exists, else this small equivalent, so the worker's tests do not wait on the control plane.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
REAL_FILE = REPO.parent / "shared" / "data" / "brightrun-72-conversations.json"


def _own_normalize(data: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for conv in data["conversations"]:
        pairs = sorted(conv["training_pairs"], key=lambda p: p["turn_number"])
        last = pairs[-1]
        targets = {p["target_response"]: p for p in pairs if p.get("target_response")}
        messages: list[dict[str, Any]] = []
        if last.get("system_prompt"):
            messages.append({"role": "system", "content": last["system_prompt"]})
        history = [(h["role"], h["content"]) for h in last["conversation_history"]]
        if last.get("target_response"):
            # The history already ends with the current user input; do not repeat it.
            if not history or history[-1] != ("user", last["current_user_input"]):
                history.append(("user", last["current_user_input"]))
            history.append(("assistant", last["target_response"]))
        elif last.get("current_user_input"):
            if not history or history[-1] != ("user", last["current_user_input"]):
                history.append(("user", last["current_user_input"]))
        for role, content in history:
            msg: dict[str, Any] = {"role": role, "content": content}
            if role == "assistant":
                pair = targets.get(content)
                msg["train"] = pair is not None
                if pair is not None:
                    msg["pair_id"] = pair["id"]
            messages.append(msg)
        meta = conv["conversation_metadata"]
        out.append({
            "conversation_id": meta["conversation_id"],
            "messages": messages,
            "metadata": {"source_pairs": len(pairs)},
        })
    return out


def normalize_brightrun(data: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        from training.datasets.normalize import normalize_brightrun as real

        result = real(data)
        conversations = getattr(result, "conversations", result)
        if isinstance(conversations, list) and conversations:
            return conversations
    except Exception:  # not written yet, changing, or the control plane's deps are missing
        pass
    return _own_normalize(data)


def load_real_conversations() -> list[dict[str, Any]]:
    return normalize_brightrun(json.loads(REAL_FILE.read_text(encoding="utf-8")))


def pair_texts(data: dict[str, Any]) -> list[list[dict[str, str]]]:
    """Each pair with a target as its own chat (system, history, target): pair-by-pair training."""
    chats = []
    for conv in data["conversations"]:
        for p in conv["training_pairs"]:
            if not p.get("target_response"):
                continue
            msgs = [{"role": "system", "content": p["system_prompt"]}] if p.get("system_prompt") else []
            hist = [{"role": h["role"], "content": h["content"]} for h in p["conversation_history"]]
            if not hist or hist[-1] != {"role": "user", "content": p["current_user_input"]}:
                hist.append({"role": "user", "content": p["current_user_input"]})
            chats.append(msgs + hist + [{"role": "assistant", "content": p["target_response"]}])
    return chats


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
