"""Parse training files and normalize them to the canonical form (docs/dataset-format.md).

Two input formats:
- Bright Run `brightrun-lora-v4` JSON: conversations of training pairs, where every pair repeats
  the whole earlier conversation. The transcript is rebuilt once per conversation: client-turn
  pairs (`target_response: null`) contribute their user message, consultant pairs their reply, and
  the user message each consultant pair repeats in `current_user_input` is not added twice.
- OpenAI-style chat JSONL: one `{"messages": [...]}` per line.

Every error names its place (JSON path, conversation and pair id, or JSONL line) and says what to do.
"""
from __future__ import annotations

import codecs
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from training.errors import DatasetImportError

BRIGHTRUN_FORMAT = "brightrun-lora-v4"
CHAT_JSONL_FORMAT = "chat-jsonl"
SUPPORTED_FORMAT_SPECS = (BRIGHTRUN_FORMAT,)

SKIP_CLIENT_TURN = "client turn: target_response is null (not a training target)"
SKIP_EMPTY_TARGET = "target_response is empty"
SKIP_WEIGHT_ZERO = "assistant message with weight 0 (context only)"


@dataclass
class NormalizedDataset:
    format: str
    conversations: list[dict[str, Any]]
    pairs: int
    trainable_turns: int
    skipped: dict[str, int]
    consultant_profile: dict[str, Any] | None = None
    file_metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- decoding

# Byte-order marks that name an encoding unambiguously. UTF-32 first: its little-endian mark
# begins with UTF-16's. Windows tools ("Unicode" in Excel, PowerShell 5's Out-File) write UTF-16
# with a mark; without a mark a file must be UTF-8 (RFC 8259).
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"), (codecs.BOM_UTF8, "utf-8"))


def _unmarked_wide_encoding(head: bytes) -> str | None:
    """JSON text starts with an ASCII character, so the zero bytes among the first four name a
    UTF-16 or UTF-32 file that has no mark (RFC 4627, section 3)."""
    if len(head) < 4 or not any(head) or head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF16_LE,
                                                          codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)):
        return None
    zeros = tuple(b == 0 for b in head)
    return {(True, True, True, False): "UTF-32 (big-endian)", (False, True, True, True): "UTF-32 (little-endian)",
            (True, False, True, False): "UTF-16 (big-endian)", (False, True, False, True): "UTF-16 (little-endian)",
            }.get(zeros)


def decode_text(raw: bytes) -> str:
    unmarked = _unmarked_wide_encoding(raw[:4])
    if unmarked:
        raise DatasetImportError(
            f"the file looks like {unmarked} without a byte-order mark (a zero byte in every character); save it as "
            "UTF-8 (or as UTF-16 with a byte-order mark) and upload again", location="byte 0", code="not_utf8")
    encoding, body = "utf-8", raw
    for bom, name in _BOMS:
        if raw.startswith(bom):
            encoding, body = name, raw[len(bom):]
            break
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        offset = exc.start + len(raw) - len(body)
        if encoding == "utf-8":
            message = (f"the file is not UTF-8 text (invalid byte 0x{raw[offset]:02x} at byte offset {offset}); "
                       "save it as UTF-8 and upload again")
        else:
            message = (f"the file starts with a {encoding[:6].upper()} byte-order mark but is not valid "
                       f"{encoding[:6].upper()} from byte offset {offset}; save it as UTF-8 and upload again")
        raise DatasetImportError(message, location=f"byte {offset}", code="not_utf8") from exc
    if not text.strip():
        raise DatasetImportError("the file is empty; upload a Bright Run JSON file or chat JSONL", code="empty_file")
    return text


def _ends_cut_off(text: str) -> bool:
    """True when the text ends inside a string or with brackets still open: it looks truncated.
    Only called after a parse error, so its pure-Python scan never slows a good import."""
    depth = 0
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
    return in_string or depth > 0


def _too_deep(where: str) -> DatasetImportError:
    return DatasetImportError("JSON is nested too deeply to be a training file", location=where, code="too_deep")


# A \\uD800-\\uDFFF escape without its partner: valid JSON, but no UTF-8 text can hold it.
_LONE_SURROGATE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
                             r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def _loads(text: str, where: str):
    """json.loads that turns the C parser's RecursionError on hostile nesting, and strings that
    cannot be stored as UTF-8 (lone surrogate escapes), into located errors."""
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise _too_deep(where) from exc
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # an integer of more than sys.get_int_max_str_digits() digits
        raise DatasetImportError(f"a number in the file is too long to read ({exc}); a training file has no such "
                                 "numbers: fix or remove it", location=where, code="invalid_json") from exc
    lone = _LONE_SURROGATE.search(text) if "\\u" in text else None
    if lone is not None:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            line = text.count("\n", 0, lone.start()) + 1
            raise DatasetImportError(
                f"the escape {lone.group(0)} is half of a UTF-16 surrogate pair and is not a character; "
                "fix the text or export the file again as UTF-8",
                location=where if where.startswith("line") else
                f"line {line} column {lone.start() - text.rfind(chr(10), 0, lone.start())}",
                code="invalid_text") from exc
    return value


def _json_error(exc: json.JSONDecodeError, text: str, where_prefix: str = "") -> DatasetImportError:
    truncated = exc.pos >= len(text.rstrip()) or _ends_cut_off(text)
    place = f"{where_prefix}line {exc.lineno} column {exc.colno}"
    if truncated:
        return DatasetImportError(
            f"the JSON ends unexpectedly ({exc.msg}); the file looks truncated: upload the complete file",
            location=place,
            code="truncated",
        )
    return DatasetImportError(f"invalid JSON: {exc.msg}; fix the file or export it again", location=place, code="invalid_json")


def parse(raw: bytes) -> NormalizedDataset:
    """Detect the format of `raw` and normalize it. Raises DatasetImportError."""
    text = decode_text(raw)
    stripped = text.lstrip()
    if not stripped.startswith("{"):
        raise DatasetImportError(
            "the file is neither a JSON object nor JSON Lines of objects "
            "(expected a Bright Run training file or one {\"messages\": [...]} per line)",
            location="line 1",
            code="unknown_format",
        )
    first_line = stripped.split("\n", 1)[0].strip()
    # A one-line first record with "messages" means JSONL even if the whole file is one line.
    looks_jsonl = False
    try:
        first = _loads(first_line, "line 1")
        looks_jsonl = isinstance(first, dict) and "messages" in first
    except json.JSONDecodeError:
        pass
    if looks_jsonl:
        return normalize_chat_jsonl(text)
    try:
        data = _loads(text, "document")
    except json.JSONDecodeError as exc:
        raise _json_error(exc, text) from exc
    if not isinstance(data, dict):
        raise DatasetImportError("the top level must be a JSON object", location="$", code="unknown_format")
    return normalize_brightrun(data)


# --------------------------------------------------------------------------- Bright Run

def _require(cond: bool, message: str, location: str, code: str = "invalid_field") -> None:
    if not cond:
        raise DatasetImportError(message, location=location, code=code)


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", type(None): "null", bool: "boolean"}.get(type(value), type(value).__name__)


def _emotion(state: Any) -> dict[str, Any] | None:
    if not isinstance(state, dict):
        return None
    out = {k: state.get(k) for k in ("primary", "secondary", "intensity") if state.get(k) is not None}
    return out or None


def normalize_brightrun(data: dict[str, Any]) -> NormalizedDataset:
    meta = data.get("training_file_metadata")
    _require(isinstance(meta, dict), "training_file_metadata is missing or not an object; is this a Bright Run training file?",
             "$.training_file_metadata", "unknown_format")
    spec = meta.get("format_spec")
    _require(spec is not None, "format_spec is missing; export the file again from Bright Run (brightrun-lora-v4)",
             "$.training_file_metadata.format_spec", "unknown_format_spec")
    _require(spec in SUPPORTED_FORMAT_SPECS,
             f"format_spec {spec!r} is not supported; supported: {', '.join(SUPPORTED_FORMAT_SPECS)}. "
             "Export the file again in that format", "$.training_file_metadata.format_spec", "unknown_format_spec")
    conversations_in = data.get("conversations")
    _require(isinstance(conversations_in, list), f"conversations must be an array (got {_type_name(conversations_in)})",
             "$.conversations")
    _require(len(conversations_in) > 0, "the file has no conversations", "$.conversations", "no_conversations")
    profile = data.get("consultant_profile")
    if profile is not None and not isinstance(profile, dict):
        raise DatasetImportError("consultant_profile must be an object", location="$.consultant_profile")

    skipped: Counter[str] = Counter()
    conversations: list[dict[str, Any]] = []
    pairs_total = 0
    trainable = 0
    seen_ids: set[str] = set()
    warnings: list[str] = []

    for ci, conv in enumerate(conversations_in):
        cpath = f"$.conversations[{ci}]"
        _require(isinstance(conv, dict), f"a conversation must be an object (got {_type_name(conv)})", cpath)
        cmeta = conv.get("conversation_metadata") or {}
        _require(isinstance(cmeta, dict), "conversation_metadata must be an object", f"{cpath}.conversation_metadata")
        conv_id = str(cmeta.get("conversation_id") or f"conversation-{ci + 1}")
        where = f"{cpath} (conversation {conv_id})"
        if conv_id in seen_ids:
            raise DatasetImportError(f"conversation id {conv_id} appears twice; each conversation needs its own id",
                                     location=where, code="duplicate_conversation")
        seen_ids.add(conv_id)
        pairs = conv.get("training_pairs")
        _require(isinstance(pairs, list), f"training_pairs must be an array (got {_type_name(pairs)})", f"{where}.training_pairs")
        _require(len(pairs) > 0, "the conversation has no training_pairs", f"{where}.training_pairs", "empty_conversation")
        conversation, conv_pairs, conv_trainable, conv_skipped = _brightrun_conversation(conv_id, cpath, cmeta, pairs)
        pairs_total += conv_pairs
        trainable += conv_trainable
        skipped.update(conv_skipped)
        conversations.append(conversation)

    declared_convs = meta.get("total_conversations")
    declared_pairs = meta.get("total_training_pairs")
    if isinstance(declared_convs, int) and declared_convs != len(conversations):
        warnings.append(f"training_file_metadata.total_conversations says {declared_convs}, the file has {len(conversations)}")
    if isinstance(declared_pairs, int) and declared_pairs != pairs_total:
        warnings.append(f"training_file_metadata.total_training_pairs says {declared_pairs}, the file has {pairs_total}")

    file_metadata = {k: meta.get(k) for k in ("file_name", "version", "created_date", "format_spec", "vertical", "target_model")
                     if meta.get(k) is not None}
    return NormalizedDataset(
        format=BRIGHTRUN_FORMAT,
        conversations=conversations,
        pairs=pairs_total,
        trainable_turns=trainable,
        skipped=dict(skipped),
        consultant_profile=profile,
        file_metadata=file_metadata,
        warnings=warnings,
    )


def _brightrun_conversation(conv_id, cpath, cmeta, pairs):
    scaffolding = cmeta.get("scaffolding") if isinstance(cmeta.get("scaffolding"), dict) else {}
    messages: list[dict[str, Any]] = []  # user/assistant only; the system prompt is added at the end
    system_prompt: str | None = None
    skipped: Counter[str] = Counter()
    trainable = 0

    indexed = []
    for pi, pair in enumerate(pairs):
        ppath = f"{cpath}.training_pairs[{pi}]"
        _require(isinstance(pair, dict), f"a training pair must be an object (got {_type_name(pair)})", ppath)
        pair_id = str(pair.get("id") or f"pair-{pi + 1}")
        where = f"{ppath} (conversation {conv_id}, pair {pair_id})"
        turn = pair.get("turn_number", pi + 1)
        _require(isinstance(turn, int) and not isinstance(turn, bool),
                 f"turn_number must be an integer (got {_type_name(turn)})", f"{where}.turn_number")
        indexed.append((turn, pi, pair_id, where, pair))
    indexed.sort(key=lambda item: (item[0], item[1]))

    for turn, _pi, pair_id, where, pair in indexed:
        sp = pair.get("system_prompt")
        _require(isinstance(sp, str) and sp.strip() != "",
                 "system_prompt is missing or empty; every pair needs the system prompt it was written for",
                 f"{where}.system_prompt", "missing_system_prompt")
        if system_prompt is None:
            system_prompt = sp
        history = pair.get("conversation_history")
        _require(isinstance(history, list),
                 f"conversation_history must be an array of earlier turns (got {_type_name(history)})",
                 f"{where}.conversation_history", "invalid_history")
        for hi, entry in enumerate(history):
            hpath = f"{where}.conversation_history[{hi}]"
            _require(isinstance(entry, dict), f"a history entry must be an object (got {_type_name(entry)})", hpath, "invalid_history")
            role = entry.get("role")
            content = entry.get("content")
            _require(role in ("user", "assistant"), f"role must be 'user' or 'assistant' (got {role!r})", f"{hpath}.role", "invalid_role")
            _require(isinstance(content, str), f"content must be a string (got {_type_name(content)})", f"{hpath}.content", "invalid_history")
            if hi < len(messages):
                known = messages[hi]
                _require(known["role"] == role and known["content"] == content,
                         f"this history entry differs from turn {hi + 1} as earlier pairs of the conversation gave it; "
                         "the pairs of one conversation must share their history",
                         hpath, "inconsistent_history")
            else:
                msg = {"role": role, "content": content}
                if role == "user" and _emotion(entry.get("emotional_state")):
                    msg["emotion"] = _emotion(entry.get("emotional_state"))
                _append(messages, msg, hpath)

        user_input = pair.get("current_user_input")
        target = pair.get("target_response")
        _require(user_input is None or isinstance(user_input, str),
                 f"current_user_input must be a string (got {_type_name(user_input)})", f"{where}.current_user_input")
        _require(target is None or isinstance(target, str),
                 f"target_response must be a string or null (got {_type_name(target)})", f"{where}.target_response")
        emotion = None
        ctx = pair.get("emotional_context")
        if isinstance(ctx, dict):
            emotion = _emotion(ctx.get("detected_emotions"))
        if user_input and user_input.strip():
            # A consultant pair repeats the client's last message as current_user_input; that
            # message is already the last one of the transcript and must not appear twice.
            last = messages[-1] if messages else None
            if not (last and last["role"] == "user" and last["content"] == user_input):
                msg = {"role": "user", "content": user_input}
                if emotion and target is None:
                    msg["emotion"] = emotion
                _append(messages, msg, f"{where}.current_user_input")
            elif target is None and emotion and "emotion" not in last:
                last["emotion"] = emotion
        if target is None:
            skipped[SKIP_CLIENT_TURN] += 1
            continue
        if not target.strip():
            skipped[SKIP_EMPTY_TARGET] += 1
            continue
        tmeta = pair.get("training_metadata") if isinstance(pair.get("training_metadata"), dict) else {}
        reply = {"role": "assistant", "content": target, "train": True, "pair_id": pair_id}
        quality = tmeta.get("quality_criteria")
        if isinstance(quality, dict):
            reply["quality"] = quality
        if tmeta.get("quality_score") is not None:
            reply["quality_score"] = tmeta.get("quality_score")
        _append(messages, reply, f"{where}.target_response")
        trainable += 1

    if trainable == 0:
        raise DatasetImportError(
            "the conversation has no consultant reply with a target_response, so there is nothing to train on; "
            "add the replies or remove the conversation",
            location=f"{cpath} (conversation {conv_id})",
            code="no_assistant_turn",
        )
    canonical = [{"role": "system", "content": system_prompt}] + messages
    metadata = {
        "persona": scaffolding.get("persona_key"),
        "persona_name": scaffolding.get("persona_name"),
        "emotional_arc": scaffolding.get("emotional_arc_key"),
        "topic": scaffolding.get("training_topic_key"),
        "quality_tier": cmeta.get("quality_tier"),
        "source_pairs": len(pairs),
    }
    return (
        {"conversation_id": conv_id, "messages": canonical, "metadata": {k: v for k, v in metadata.items() if v is not None}},
        len(pairs),
        trainable,
        skipped,
    )


def _append(messages: list[dict[str, Any]], msg: dict[str, Any], location: str) -> None:
    """Append keeping the user/assistant alternation, starting with the user."""
    expected = "user" if not messages or messages[-1]["role"] == "assistant" else "assistant"
    if msg["role"] != expected:
        previous = messages[-1]["role"] if messages else "the start"
        raise DatasetImportError(
            f"roles out of order: a {msg['role']} message follows {previous}; turns must alternate "
            "user, assistant, user, ... starting with the user",
            location=location,
            code="roles_out_of_order",
        )
    messages.append(msg)


# --------------------------------------------------------------------------- chat JSONL

def _content_text(content: Any, location: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise DatasetImportError("only text content parts are supported", location=f"{location}.content[{i}]",
                                         code="invalid_content")
        return "".join(parts)
    raise DatasetImportError(f"content must be a string (got {_type_name(content)})", location=f"{location}.content",
                             code="invalid_content")


def normalize_chat_jsonl(text: str) -> NormalizedDataset:
    conversations: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    pairs = 0
    trainable = 0
    lines = text.split("\n")
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        try:
            record = _loads(line, where)
        except json.JSONDecodeError as exc:
            is_last = all(not rest.strip() for rest in lines[lineno:])
            if is_last and (exc.pos >= len(line.rstrip()) or _ends_cut_off(line)):
                raise DatasetImportError(f"the last line ends unexpectedly ({exc.msg}); the file looks truncated",
                                         location=where, code="truncated") from exc
            raise DatasetImportError(f"invalid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object",
                                     location=where, code="invalid_json") from exc
        _require(isinstance(record, dict), f"each line must be a JSON object (got {_type_name(record)})", where)
        msgs_in = record.get("messages")
        _require(isinstance(msgs_in, list) and msgs_in, "\"messages\" must be a non-empty array", f"{where}: $.messages")
        messages: list[dict[str, Any]] = []
        system = None
        conv_trainable = 0
        for mi, m in enumerate(msgs_in):
            mpath = f"{where}: $.messages[{mi}]"
            _require(isinstance(m, dict), f"a message must be an object (got {_type_name(m)})", mpath)
            role = m.get("role")
            content = _content_text(m.get("content"), mpath)
            if role == "system":
                _require(mi == 0, "a system message is only allowed first", f"{mpath}.role", "roles_out_of_order")
                system = content
                continue
            _require(role in ("user", "assistant"), f"role {role!r} is not supported (use system, user or assistant)",
                     f"{mpath}.role", "invalid_role")
            msg: dict[str, Any] = {"role": role, "content": content}
            if role == "assistant":
                weight = m.get("weight", 1)
                _require(weight in (0, 1), f"weight must be 0 or 1 (got {weight!r})", f"{mpath}.weight")
                msg["train"] = weight == 1 and bool(content.strip())
                pairs += 1
                if msg["train"]:
                    conv_trainable += 1
                else:
                    skipped[SKIP_WEIGHT_ZERO if weight == 0 else SKIP_EMPTY_TARGET] += 1
            _append(messages, msg, mpath)
        if not any(m["role"] == "assistant" for m in messages):
            raise DatasetImportError("the conversation has no assistant message, so there is nothing to train on",
                                     location=where, code="no_assistant_turn")
        if conv_trainable == 0:
            raise DatasetImportError("every assistant message has weight 0, so there is nothing to train on",
                                     location=where, code="no_assistant_turn")
        trainable += conv_trainable
        canonical = ([{"role": "system", "content": system}] if system is not None else []) + messages
        conv_id = str(record.get("id") or record.get("conversation_id") or f"line-{lineno}")
        metadata = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
        conversations.append({"conversation_id": conv_id, "messages": canonical, "metadata": metadata})
    _require(bool(conversations), "the file has no conversations", "$", "no_conversations")
    ids = Counter(c["conversation_id"] for c in conversations)
    dupes = [i for i, n in ids.items() if n > 1]
    _require(not dupes, f"conversation id {dupes[0] if dupes else ''} appears more than once", "$", "duplicate_conversation")
    return NormalizedDataset(format=CHAT_JSONL_FORMAT, conversations=conversations, pairs=pairs,
                             trainable_turns=trainable, skipped=dict(skipped))


def to_jsonl(conversations: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(c, ensure_ascii=False, sort_keys=True).encode() + b"\n" for c in conversations)


def content_hash(normalized: NormalizedDataset) -> str:
    """Identity of a dataset: the normalized conversations and the consultant profile.
    Re-serialized or re-indented copies of one file hash the same."""
    import hashlib

    digest = hashlib.sha256()
    digest.update(normalized.format.encode())
    digest.update(json.dumps(normalized.consultant_profile, sort_keys=True).encode())
    digest.update(to_jsonl(normalized.conversations))
    return digest.hexdigest()
