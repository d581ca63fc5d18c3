"""Parse training files and normalize them to the canonical form (docs/dataset-format.md).

Input formats (docs/dataset-format.md, "Accepted input formats"):
- Bright Run `brightrun-lora-v4` JSON: conversations of training pairs, where every pair repeats
  the whole earlier conversation. The transcript is rebuilt once per conversation: client-turn
  pairs (`target_response: null`) contribute their user message, consultant pairs their reply, and
  the user message each consultant pair repeats in `current_user_input` is not added twice.
- the app's per-conversation v4 file (dataset_metadata + consultant_profile + training_pairs);
- the app's training.jsonl (optional {"_meta"} line, then one pair per line, client turns left out);
- OpenAI-style chat JSONL: one `{"messages": [...]}` per line.

Imperfect conversations the app lets through (consultant first, two turns of one role in a row)
are shaped by `tidy_turns` and counted. Every error names its place (JSON path, conversation and
pair id, or JSONL line), the format the file was read as, and says what to do.
"""
from __future__ import annotations

import codecs
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from core.json_scan import json_nesting
from training.errors import DatasetImportError

BRIGHTRUN_FORMAT = "brightrun-lora-v4"
BRIGHTRUN_JSONL_FORMAT = "brightrun-jsonl"  # the app's training.jsonl: optional {"_meta": ...}, one pair per line
BRIGHTRUN_CONVERSATION_FORMAT = "brightrun-conversation"  # the app's per-conversation v4 file
CHAT_JSONL_FORMAT = "chat-jsonl"
MIXED_FORMAT = "mixed"  # several files of different formats imported as one dataset
SUPPORTED_FORMAT_SPECS = (BRIGHTRUN_FORMAT,)
ON_ERROR_CHOICES = ("fail", "skip")
FORMAT_NAMES = {
    BRIGHTRUN_FORMAT: "a Bright Run training file (brightrun-lora-v4)",
    BRIGHTRUN_JSONL_FORMAT: "the Bright Run app's training.jsonl (one training pair per line)",
    BRIGHTRUN_CONVERSATION_FORMAT: "a Bright Run single-conversation file (dataset_metadata + training_pairs)",
    CHAT_JSONL_FORMAT: "chat JSONL (one {\"messages\": [...]} per line)",
}

SKIP_CLIENT_TURN = "client turn: target_response is null (not a training target)"
SKIP_EMPTY_TARGET = "target_response is empty"
SKIP_WEIGHT_ZERO = "assistant message with weight 0 (context only)"
SKIP_CONSULTANT_OPENING = "consultant turn before any client message (context only)"

# Imperfect conversations the app lets through, counted in stats["imperfect"] (tidy_turns).
FIX_CONSULTANT_FIRST = "consultant_first"
FIX_MERGED_USER = "merged_consecutive_client_turns"
FIX_MERGED_ASSISTANT = "merged_consecutive_consultant_turns"
FIX_KEPT_ASSISTANT = "kept_consecutive_consultant_turns"


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
    # Imperfect shapes handled (FIX_* → count) and conversations left out with on_error="skip".
    fixes: dict[str, int] = field(default_factory=dict)
    skipped_conversations: list[dict[str, str]] = field(default_factory=list)
    duplicates_removed: int = 0


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
    nesting = json_nesting(text)
    return nesting.in_string or nesting.open > 0


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


def parse(raw: bytes, *, on_error: str = "fail") -> NormalizedDataset:
    """Detect the format of `raw` and normalize it. Raises DatasetImportError.

    Formats: a Bright Run training file (brightrun-lora-v4 JSON), the app's per-conversation v4
    file, the app's training.jsonl (optional {"_meta"} line, then one pair per line), chat JSONL.
    `on_error="skip"` leaves out conversations that cannot be read and lists them
    (`skipped_conversations`); the default refuses the file."""
    text = decode_text(raw)
    stripped = text.lstrip()
    if not stripped.startswith("{"):
        found = "a JSON array" if stripped.startswith("[") else f"text starting with {stripped[:12]!r}"
        raise DatasetImportError(
            f"found {found}, which is neither a JSON object nor JSON Lines of objects; "
            "upload a Bright Run training file (.json), the app's training.jsonl, or chat JSONL "
            "(one {\"messages\": [...]} per line)",
            location="line 1",
            code="unknown_format",
        )
    first_line = stripped.split("\n", 1)[0].strip()
    # A one-line first record with "messages" means JSONL even if the whole file is one line.
    first = None
    try:
        first = _loads(first_line, "line 1")
    except json.JSONDecodeError:
        pass
    if isinstance(first, dict):
        if "messages" in first:
            return _read_as(CHAT_JSONL_FORMAT, normalize_chat_jsonl, text, on_error)
        if set(first) == {"_meta"} or _looks_like_pair(first):
            return _read_as(BRIGHTRUN_JSONL_FORMAT, normalize_brightrun_jsonl, text, on_error)
    try:
        data = _loads(text, "document")
    except json.JSONDecodeError as exc:
        if isinstance(first, dict) and exc.msg == "Extra data":
            keys = ", ".join(sorted(map(str, first))[:8]) or "none"
            raise DatasetImportError(
                f"the file is JSON Lines (one JSON object per line) but its first line is an object with the keys "
                f"{keys}, which is neither a training pair of the app's training.jsonl, its {{\"_meta\"}} line, nor "
                "a chat record with \"messages\"; export training.jsonl again or convert the file to chat JSONL",
                location="line 1", code="unknown_format") from exc
        raise _json_error(exc, text) from exc
    if not isinstance(data, dict):
        raise DatasetImportError(f"the top level must be a JSON object (found {_type_name(data)})", location="$",
                                 code="unknown_format")
    if "training_file_metadata" in data:
        return _read_as(BRIGHTRUN_FORMAT, normalize_brightrun, data, on_error)
    if "training_pairs" in data and "conversations" not in data:
        if "dataset_metadata" not in data:
            data = {**data, "dataset_metadata": {}}
        return _read_as(BRIGHTRUN_CONVERSATION_FORMAT, normalize_brightrun_conversation, data, on_error)
    raise DatasetImportError(_unknown_object_message(data), location="$", code="unknown_format")


def _read_as(fmt: str, normalize, content, on_error: str) -> NormalizedDataset:
    """Normalize `content` in format `fmt`; an error says which format the file was read as, so
    that one message names the format found, the place and what to do."""
    try:
        return normalize(content, on_error=on_error)
    except DatasetImportError as exc:
        if exc.code == "unknown_format" or "the file was read as" in exc.message:
            raise
        bare = exc.message[len(exc.location) + 2:] if exc.location else exc.message
        raise type(exc)(f"{bare} (the file was read as {FORMAT_NAMES[fmt]})", location=exc.location,
                        code=exc.code) from exc


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


def _check_format_spec(meta: dict[str, Any], where: str) -> None:
    spec = meta.get("format_spec")
    _require(spec is not None, "format_spec is missing; export the file again from Bright Run (brightrun-lora-v4)",
             f"{where}.format_spec", "unknown_format_spec")
    _require(spec in SUPPORTED_FORMAT_SPECS,
             f"format_spec {spec!r} is not supported; supported: {', '.join(SUPPORTED_FORMAT_SPECS)}. "
             "Export the file again in that format", f"{where}.format_spec", "unknown_format_spec")


def _profile(data: dict[str, Any], where: str) -> dict[str, Any] | None:
    profile = data.get("consultant_profile")
    if profile is not None and not isinstance(profile, dict):
        raise DatasetImportError("consultant_profile must be an object", location=f"{where}.consultant_profile")
    return profile


class _Collector:
    """Gathers the conversations of one file. With on_error="skip" a conversation that cannot be
    read is left out and listed (location and reason); with "fail" (the default) it refuses the file."""

    def __init__(self, on_error: str):
        if on_error not in ON_ERROR_CHOICES:
            raise DatasetImportError(f"on_error must be one of {', '.join(ON_ERROR_CHOICES)} (got {on_error!r})",
                                     location="on_error", code="invalid_option")
        self.on_error = on_error
        self.conversations: list[dict[str, Any]] = []
        self.skipped: Counter[str] = Counter()
        self.fixes: Counter[str] = Counter()
        self.pairs = 0
        self.trainable = 0
        self.warnings: list[str] = []
        self.refused: list[dict[str, str]] = []
        self.seen_ids: set[str] = set()

    def add_brightrun(self, ci: int, cpath: str, conv: Any, default_id: str | None = None,
                      pair_paths: list[str] | None = None) -> None:
        try:
            _require(isinstance(conv, dict), f"a conversation must be an object (got {_type_name(conv)})", cpath)
            cmeta = conv.get("conversation_metadata") or {}
            _require(isinstance(cmeta, dict), "conversation_metadata must be an object", f"{cpath}.conversation_metadata")
            conv_id = str(cmeta.get("conversation_id") or default_id or f"conversation-{ci + 1}")
            where = f"{cpath} (conversation {conv_id})"
            if conv_id in self.seen_ids:
                raise DatasetImportError(f"conversation id {conv_id} appears twice; each conversation needs its own id",
                                         location=where, code="duplicate_conversation")
            pairs = conv.get("training_pairs")
            _require(isinstance(pairs, list), f"training_pairs must be an array (got {_type_name(pairs)})",
                     f"{where}.training_pairs")
            _require(len(pairs) > 0, "the conversation has no training_pairs", f"{where}.training_pairs", "empty_conversation")
            warnings: list[str] = []
            conversation, n_pairs, n_trainable, skipped, fixes = _brightrun_conversation(
                conv_id, cpath, cmeta, pairs, warnings, pair_paths)
        except DatasetImportError as exc:
            self.refuse(exc)
            return
        self.seen_ids.add(conv_id)
        self.pairs += n_pairs
        self.trainable += n_trainable
        self.skipped.update(skipped)
        self.fixes.update(fixes)
        self.warnings.extend(warnings)
        self.conversations.append(conversation)

    def refuse(self, exc: DatasetImportError) -> None:
        if self.on_error != "skip":
            raise exc
        self.refused.append({"location": exc.location or "", "reason": exc.message, "code": exc.code})

    def result(self, fmt: str, *, profile=None, file_metadata=None, where: str = "$.conversations") -> NormalizedDataset:
        if not self.conversations:
            if self.refused:
                first = self.refused[0]
                raise DatasetImportError(
                    f"every conversation of the file was refused ({len(self.refused)}); the first: {first['reason']}",
                    location=first["location"] or where, code="no_conversations")
            raise DatasetImportError("the file has no conversations", location=where, code="no_conversations")
        return NormalizedDataset(
            format=fmt, conversations=self.conversations, pairs=self.pairs, trainable_turns=self.trainable,
            skipped=dict(self.skipped), consultant_profile=profile, file_metadata=file_metadata or {},
            warnings=self.warnings, fixes=dict(self.fixes), skipped_conversations=self.refused)


def _file_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta.get(k) for k in ("file_name", "version", "created_date", "format_spec", "vertical", "target_model")
            if meta.get(k) is not None}


def normalize_brightrun(data: dict[str, Any], *, on_error: str = "fail") -> NormalizedDataset:
    """A whole Bright Run training file: training_file_metadata, consultant_profile, conversations[]."""
    meta = data.get("training_file_metadata")
    if not isinstance(meta, dict):
        raise DatasetImportError(_unknown_object_message(data), location="$", code="unknown_format")
    _check_format_spec(meta, "$.training_file_metadata")
    conversations_in = data.get("conversations")
    _require(isinstance(conversations_in, list), f"conversations must be an array (got {_type_name(conversations_in)})",
             "$.conversations")
    _require(len(conversations_in) > 0, "the file has no conversations", "$.conversations", "no_conversations")
    profile = _profile(data, "$")
    collector = _Collector(on_error)
    for ci, conv in enumerate(conversations_in):
        collector.add_brightrun(ci, f"$.conversations[{ci}]", conv)
    out = collector.result(BRIGHTRUN_FORMAT, profile=profile, file_metadata=_file_metadata(meta))

    declared_convs = meta.get("total_conversations")
    declared_pairs = meta.get("total_training_pairs")
    if not out.skipped_conversations:
        if isinstance(declared_convs, int) and declared_convs != len(out.conversations):
            out.warnings.append(f"training_file_metadata.total_conversations says {declared_convs}, "
                                f"the file has {len(out.conversations)}")
        if isinstance(declared_pairs, int) and declared_pairs != out.pairs:
            out.warnings.append(f"training_file_metadata.total_training_pairs says {declared_pairs}, the file has {out.pairs}")
    return out


def normalize_brightrun_conversation(data: dict[str, Any], *, on_error: str = "fail") -> NormalizedDataset:
    """The app's per-conversation file: dataset_metadata, consultant_profile and the one
    conversation's training_pairs (no training_file_metadata, no conversations[])."""
    dmeta = data.get("dataset_metadata")
    _require(isinstance(dmeta, dict), f"dataset_metadata must be an object (got {_type_name(dmeta)})",
             "$.dataset_metadata", "unknown_format")
    if dmeta.get("format_spec") is not None:
        _check_format_spec(dmeta, "$.dataset_metadata")
    profile = _profile(data, "$")
    cmeta = dict(data.get("conversation_metadata") or {}) if isinstance(data.get("conversation_metadata"), dict) else {}
    for key in ("conversation_id", "quality_tier", "scaffolding"):
        if cmeta.get(key) is None and dmeta.get(key) is not None:
            cmeta[key] = dmeta[key]
    collector = _Collector(on_error)
    collector.add_brightrun(0, "$", {"conversation_metadata": cmeta, "training_pairs": data.get("training_pairs")},
                            default_id=_text(dmeta.get("file_name")) and str(dmeta["file_name"]).strip())
    return collector.result(BRIGHTRUN_CONVERSATION_FORMAT, profile=profile, file_metadata=_file_metadata(dmeta), where="$")


def _unknown_object_message(data: dict[str, Any]) -> str:
    keys = ", ".join(sorted(map(str, data))[:8]) or "none"
    return (f"found a JSON object with the top-level keys {keys}, which is none of the accepted formats; "
            "is this a Bright Run training file? Upload a Bright Run training file (training_file_metadata and "
            "conversations), a single-conversation file (dataset_metadata and training_pairs), the app's "
            "training.jsonl, or chat JSONL (one {\"messages\": [...]} per line)")


def _text(value: Any) -> str | None:
    """A scaffolding value, or None when it is missing or blank (an empty name is no name)."""
    return value.strip() if isinstance(value, str) and value.strip() else None


def _scaffolding(cmeta: dict[str, Any], pairs: list[Any]) -> dict[str, Any]:
    """Persona, arc and topic of a conversation: the conversation's scaffolding, and where a name
    there is missing or empty, the same fact as the pairs' own conversation_metadata gives it."""
    scaffolding = cmeta.get("scaffolding") if isinstance(cmeta.get("scaffolding"), dict) else {}
    pair_meta: dict[str, Any] = {}
    for pair in pairs:
        pm = pair.get("conversation_metadata") if isinstance(pair, dict) else None
        if isinstance(pm, dict):
            for key, value in pm.items():
                if _text(value) and key not in pair_meta:
                    pair_meta[key] = value
    client = _text(pair_meta.get("client_persona"))
    metadata = {
        "persona": _text(scaffolding.get("persona_key")) or _text(pair_meta.get("persona_archetype")),
        "persona_name": _text(scaffolding.get("persona_name")) or (client.split(" - ")[0].strip() if client else None),
        "emotional_arc": _text(scaffolding.get("emotional_arc_key")) or _text(pair_meta.get("emotional_arc_key")),
        "topic": _text(scaffolding.get("training_topic_key")) or _text(pair_meta.get("training_topic_key")),
        "quality_tier": _text(cmeta.get("quality_tier")),
    }
    return metadata


def _brightrun_conversation(conv_id, cpath, cmeta, pairs, warnings: list[str], pair_paths: list[str] | None = None):
    """One conversation's transcript, rebuilt from its pairs. Returns (conversation, pairs,
    trainable, skipped, fixes); `fixes` counts the imperfect shapes the app lets through
    (consultant first, two turns of one role in a row) and how they were handled."""
    raw: list[dict[str, Any]] = []  # user/assistant in file order, roles not yet checked
    system_prompt: str | None = None
    skipped: Counter[str] = Counter()

    indexed = []
    for pi, pair in enumerate(pairs):
        ppath = pair_paths[pi] if pair_paths else f"{cpath}.training_pairs[{pi}]"
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
        elif sp != system_prompt:
            warnings.append(f"{where}: the system_prompt differs from the one of the conversation's first pair; "
                            "the first one is used for the whole conversation")
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
            state = _emotion(entry.get("emotional_state")) if role == "user" else None
            if hi < len(raw):
                known = raw[hi]
                _require(known["role"] == role and known["content"] == content,
                         f"this history entry differs from turn {hi + 1} as earlier pairs of the conversation gave it; "
                         "the pairs of one conversation must share their history",
                         hpath, "inconsistent_history")
                if state and "emotion" not in known:
                    # The pair of this client turn had no emotional_context; a later pair's
                    # history still carries the label.
                    known["emotion"] = state
            else:
                msg = {"role": role, "content": content}
                if state:
                    msg["emotion"] = state
                raw.append(msg)

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
            # message is already in the transcript (the history's last user entry) and must not
            # appear twice. A client pair's input is new.
            last_user = next((m for m in reversed(raw) if m["role"] == "user"), None)
            repeated = last_user is not None and last_user["content"] == user_input and (
                target is not None or raw[-1] is last_user)
            if not repeated:
                msg = {"role": "user", "content": user_input}
                if emotion and target is None:
                    msg["emotion"] = emotion
                raw.append(msg)
            elif target is None and emotion and "emotion" not in last_user:
                last_user["emotion"] = emotion
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
        raw.append(reply)

    messages, fixes = tidy_turns(raw, skipped)
    trainable = sum(1 for m in messages if m["role"] == "assistant" and m.get("train"))
    if trainable == 0:
        raise DatasetImportError(
            "the conversation has no consultant reply with a target_response after a client message, so there is "
            "nothing to train on; add the replies or remove the conversation",
            location=f"{cpath} (conversation {conv_id})",
            code="no_assistant_turn",
        )
    canonical = [{"role": "system", "content": system_prompt}] + messages
    metadata = _scaffolding(cmeta, pairs)
    metadata["source_pairs"] = len(pairs)
    return (
        {"conversation_id": conv_id, "messages": canonical, "metadata": {k: v for k, v in metadata.items() if v is not None}},
        len(pairs),
        trainable,
        skipped,
        fixes,
    )


def tidy_turns(raw: list[dict[str, Any]], skipped: Counter[str]) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Shape a transcript the way the Bright Run app lets it through (its validator only warns):

    - consultant first: the opening consultant turns have no client message before them, so they
      are context (`train: false`); training starts at the first reply to a client message;
    - two client messages in a row are merged into one (blank line between; the later emotion
      label wins): every chat template accepts the result;
    - two consultant replies in a row are merged when both are targets (or both context), and kept
      apart when only one is a target, since merging would train on the context reply (chat
      templates such as Llama 3's accept consecutive assistant messages).

    Returns the messages and the count of each case (FIX_* keys)."""
    fixes: Counter[str] = Counter()
    out: list[dict[str, Any]] = []
    for msg in raw:
        msg = dict(msg)
        if not out and msg["role"] == "assistant" or (out and all(m["role"] == "assistant" for m in out)
                                                      and msg["role"] == "assistant"):
            if not out:
                fixes[FIX_CONSULTANT_FIRST] += 1
            if msg.get("train"):
                skipped[SKIP_CONSULTANT_OPENING] += 1
            msg["train"] = False
        prev = out[-1] if out else None
        if prev is not None and prev["role"] == msg["role"] == "user":
            prev["content"] = f"{prev['content']}\n\n{msg['content']}"
            if msg.get("emotion"):
                prev["emotion"] = msg["emotion"]
            fixes[FIX_MERGED_USER] += 1
            continue
        if prev is not None and prev["role"] == msg["role"] == "assistant":
            if bool(prev.get("train")) == bool(msg.get("train")):
                prev["content"] = f"{prev['content']}\n\n{msg['content']}"
                if msg.get("pair_id"):
                    prev["pair_ids"] = prev.get("pair_ids") or ([prev["pair_id"]] if prev.get("pair_id") else [])
                    prev["pair_ids"].append(msg["pair_id"])
                fixes[FIX_MERGED_ASSISTANT] += 1
                continue
            fixes[FIX_KEPT_ASSISTANT] += 1
        out.append(msg)
    return out, fixes


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


def _jsonl_records(text: str, collector: "_Collector", what: str):
    """(line number, object) for every non-empty line; a line that is not a JSON object is refused
    (or, with on_error="skip", listed and left out)."""
    lines = text.split("\n")
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        try:
            try:
                record = _loads(line, where)
            except json.JSONDecodeError as exc:
                is_last = all(not rest.strip() for rest in lines[lineno:])
                if is_last and (exc.pos >= len(line.rstrip()) or _ends_cut_off(line)):
                    raise DatasetImportError(f"the last line ends unexpectedly ({exc.msg}); the file looks truncated",
                                             location=where, code="truncated") from exc
                raise DatasetImportError(f"invalid JSON ({exc.msg} at column {exc.colno}); the file is {what}, "
                                         "where each line must be one JSON object", location=where,
                                         code="invalid_json") from exc
            _require(isinstance(record, dict), f"each line must be a JSON object (got {_type_name(record)}); "
                     f"the file is {what}", where)
        except DatasetImportError as exc:
            collector.refuse(exc)
            continue
        yield lineno, record


def normalize_chat_jsonl(text: str, *, on_error: str = "fail") -> NormalizedDataset:
    collector = _Collector(on_error)
    for lineno, record in _jsonl_records(text, collector, "chat JSONL"):
        where = f"line {lineno}"
        try:
            conv_id = str(record.get("id") or record.get("conversation_id") or f"line-{lineno}")
            if conv_id in collector.seen_ids:
                raise DatasetImportError(f"conversation id {conv_id} appears more than once", location=where,
                                         code="duplicate_conversation")
            conversation, n_pairs, skipped, fixes = _chat_conversation(record, where, conv_id)
        except DatasetImportError as exc:
            collector.refuse(exc)
            continue
        collector.seen_ids.add(conv_id)
        collector.pairs += n_pairs
        collector.trainable += sum(1 for m in conversation["messages"] if m["role"] == "assistant" and m.get("train"))
        collector.skipped.update(skipped)
        collector.fixes.update(fixes)
        collector.conversations.append(conversation)
    return collector.result(CHAT_JSONL_FORMAT, where="$")


def _chat_conversation(record: dict[str, Any], where: str, conv_id: str):
    msgs_in = record.get("messages")
    _require(isinstance(msgs_in, list) and msgs_in, "\"messages\" must be a non-empty array", f"{where}: $.messages")
    raw: list[dict[str, Any]] = []
    system = None
    skipped: Counter[str] = Counter()
    pairs = 0
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
            if not msg["train"]:
                skipped[SKIP_WEIGHT_ZERO if weight == 0 else SKIP_EMPTY_TARGET] += 1
        raw.append(msg)
    messages, fixes = tidy_turns(raw, skipped)
    if not any(m["role"] == "assistant" for m in messages):
        raise DatasetImportError("the conversation has no assistant message, so there is nothing to train on",
                                 location=where, code="no_assistant_turn")
    if not any(m["role"] == "assistant" and m.get("train") for m in messages):
        raise DatasetImportError("no assistant message after a user message has weight 1, so there is nothing to "
                                 "train on", location=where, code="no_assistant_turn")
    canonical = ([{"role": "system", "content": system}] if system is not None else []) + messages
    metadata = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
    return {"conversation_id": conv_id, "messages": canonical, "metadata": metadata}, pairs, skipped, fixes


# --------------------------------------------------------------------------- the app's training.jsonl

_PAIR_KEYS = ("target_response", "current_user_input", "conversation_history", "system_prompt")


def _looks_like_pair(record: Any) -> bool:
    return isinstance(record, dict) and sum(k in record for k in _PAIR_KEYS) >= 2


def normalize_brightrun_jsonl(text: str, *, on_error: str = "fail") -> NormalizedDataset:
    """The app's training.jsonl: an optional first line {"_meta": {...}} (the file's metadata),
    then one training pair per line, client turns (target_response null) left out. A pair's
    `conversation_id` is a conversation type, not an identity, so pairs are grouped by their
    history: a pair continues the conversation whose transcript so far begins its history."""
    collector = _Collector(on_error)
    meta: dict[str, Any] = {}
    groups: list[dict[str, Any]] = []
    by_transcript: dict[tuple, dict[str, Any]] = {}
    first = True
    for lineno, record in _jsonl_records(text, collector, "a Bright Run training.jsonl"):
        if first and "_meta" in record:
            first = False
            meta = record["_meta"] if isinstance(record["_meta"], dict) else {}
            if not isinstance(record["_meta"], dict):
                raise DatasetImportError(f"_meta must be an object (got {_type_name(record['_meta'])})",
                                         location=f"line {lineno}: $._meta", code="invalid_field")
            profile_in_meta = meta.get("consultant_profile")
            if isinstance(meta.get("training_file_metadata"), dict):  # the JSON file's two parts, nested
                meta = {**meta["training_file_metadata"], "consultant_profile": profile_in_meta}
                where_spec = f"line {lineno}: $._meta.training_file_metadata"
            else:
                where_spec = f"line {lineno}: $._meta"
            if meta.get("format_spec") is not None:
                _check_format_spec(meta, where_spec)
            continue
        first = False
        if not _looks_like_pair(record):
            keys = ", ".join(sorted(map(str, record))[:8]) or "none"
            collector.refuse(DatasetImportError(
                f"the file is a Bright Run training.jsonl (one training pair per line) but this line is an object "
                f"with the keys {keys}, not a training pair; remove the line or export the file again",
                location=f"line {lineno}", code="invalid_field"))
            continue
        history = record.get("conversation_history")
        turns = tuple((h.get("role"), h.get("content")) for h in history if isinstance(h, dict)) \
            if isinstance(history, list) else ()
        group = None
        for length in range(len(turns), 0, -1):
            group = by_transcript.get(turns[:length])
            if group is not None:
                break
        if group is None:
            group = {"lines": [], "pairs": []}
            groups.append(group)
        else:
            # this conversation's key moves on to its longer transcript
            by_transcript.pop(group["key"], None)
        group["lines"].append(lineno)
        group["pairs"].append(record)
        user_input = record.get("current_user_input")
        transcript = list(turns)
        if isinstance(user_input, str) and user_input.strip() and (not turns or turns[-1] != ("user", user_input)):
            transcript.append(("user", user_input))
        if isinstance(record.get("target_response"), str):
            transcript.append(("assistant", record["target_response"]))
        group["key"] = tuple(transcript)
        by_transcript[group["key"]] = group
    for gi, group in enumerate(groups):
        lines = group["lines"]
        cmeta: dict[str, Any] = {}
        for pair in group["pairs"]:
            pm = pair.get("conversation_metadata")
            if isinstance(pm, dict) and pm.get("conversation_id"):
                cmeta["conversation_id"] = pm["conversation_id"]
                break
        collector.add_brightrun(gi, f"lines {lines[0]}-{lines[-1]}" if len(lines) > 1 else f"line {lines[0]}",
                                {"conversation_metadata": cmeta, "training_pairs": group["pairs"]},
                                default_id=f"line-{lines[0]}", pair_paths=[f"line {n}" for n in lines])
    profile = meta.get("consultant_profile") if isinstance(meta.get("consultant_profile"), dict) else None
    return collector.result(BRIGHTRUN_JSONL_FORMAT, profile=profile, file_metadata=_file_metadata(meta), where="$")


def to_jsonl(conversations: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(c, ensure_ascii=False, sort_keys=True).encode() + b"\n" for c in conversations)
