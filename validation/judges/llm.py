"""The LLM judge: any OpenAI-compatible chat-completions endpoint (OpenAI, a local vLLM, ...).

- A fixed rubric prompt (`PROMPT_VERSION`), built from the consultant profile's rubric.
- Structured output: `response_format` json_schema (strict) by default; if the server answers 400
  to that, the judge falls back to json_object for the rest of the run (older vLLM builds), and
  validates the JSON itself either way.
- Pointwise: every reply gets a 1-5 score per criterion (mapped to [0, 1]) and an on-voice verdict.
- Pairwise: base vs adapted is asked twice, once in each order. A model wins only when both orders
  agree; any disagreement is a tie, so a judge that always prefers the first position yields ties.
- Output that is not valid JSON of the right shape is retried up to `max_retries` times; then that
  reply or pair is reported as not computed, with the reason. A 401/403/404 stops the run: every
  remaining item is not computed with that reason (the key, URL or model is wrong).

Uses `requests` (a base dependency) with a timeout; the key is sent as a Bearer token and never
appears in results, logs or repr.
"""
from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import requests

from validation.judges.base import (ADAPTED, BASE, MODELS, TIE, Judge, JudgeItem, JudgeResult, PairwiseOutcome,
                                    ReplyScore)
from validation.rubric import Rubric, build_rubric, clean_text

PROMPT_VERSION = "rubric-v2-empathy-pairwise"
SCORE_MIN, SCORE_MAX = 1, 5
MAX_CONTEXT_MESSAGES = 6


class JudgeCallFailed(Exception):
    """One judge request gave no usable answer after its retries."""


class JudgeEndpointRefused(JudgeCallFailed):
    """The endpoint refused the request (bad key, URL or model): retrying cannot help."""


def _fence_free(content: str) -> str:
    text = content.strip()
    match = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.DOTALL)
    return match.group(1) if match else text


class LLMJudge(Judge):
    name = "llm"

    def __init__(self, *, base_url: str, model: str, api_key: str | None = None, rubric: Rubric | None = None,
                 timeout: float = 60.0, max_retries: int = 2, response_format: str = "json_schema",
                 temperature: float = 0.0, seed: int = 0, max_workers: int = 4, retry_backoff: float = 1.0):
        if response_format not in ("json_schema", "json_object"):
            raise ValueError("response_format must be json_schema or json_object")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.rubric = rubric or build_rubric(None)
        self.timeout = timeout
        self.max_retries = max_retries
        self.response_format = response_format
        self.temperature = temperature
        self.seed = seed
        self.max_workers = max(1, max_workers)
        self.retry_backoff = retry_backoff
        self.label = f"LLM judge ({model} via an OpenAI-compatible endpoint), rubric prompt {PROMPT_VERSION}"
        self._local = threading.local()
        self._refused: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LLMJudge(base_url={self.base_url!r}, model={self.model!r}, api_key={'***' if self._api_key else None})"

    # ------------------------------------------------------------------ prompts

    @property
    def criteria(self) -> list[str]:
        return list(self.rubric.criterion_ids)

    def system_prompt(self) -> str:
        r = self.rubric
        criteria = "\n".join(f"- {c.id}: {c.title}. {c.description}" for c in r.criteria)
        avoid = "\n".join(f"- {a.text}" for a in r.avoid_rules) or "- (none given)"
        techniques = "; ".join(r.techniques) or "(none given)"
        principles = "\n".join(f"- {p}" for p in r.principles) or "- (none given)"
        return (
            f"You are a strict, impartial evaluator of replies written by a financial-planning assistant that "
            f"speaks for {r.consultant}.\n\nThe consultant's principles:\n{principles}\n"
            f"Tone: {r.tone}\nTechniques: {techniques}\nThe consultant avoids:\n{avoid}\n\n"
            f"Rubric criteria:\n{criteria}\n\n"
            "Judge only the reply's content. Ignore its length except where it overwhelms the client. "
            "Respond with JSON only."
        )

    def _conversation(self, item: JudgeItem) -> str:
        lines = []
        for m in list(item.context)[-MAX_CONTEXT_MESSAGES:]:
            if m.get("role") in ("user", "assistant"):
                who = "Client" if m["role"] == "user" else "Assistant"
                lines.append(f"{who}: {clean_text(m.get('content'))}")
        earlier = ("Earlier conversation (oldest first):\n" + "\n".join(lines) + "\n\n") if lines else ""
        return f"{earlier}Client's latest message:\n{clean_text(item.client_message)}\n\n"

    def pointwise_messages(self, item: JudgeItem, reply: str) -> list[dict[str, str]]:
        keys = ", ".join(f'"{c}": <integer {SCORE_MIN}-{SCORE_MAX}>' for c in self.criteria)
        user = (
            self._conversation(item)
            + f"Reply to evaluate:\n<<<\n{clean_text(reply)}\n>>>\n\n"
            f"Score the reply on each criterion from {SCORE_MIN} (absent or violated) to {SCORE_MAX} (fully met), "
            "and say whether it is on-voice for the consultant (tone, techniques, and nothing from the avoid list). "
            f'Answer as JSON: {{"scores": {{{keys}}}, "on_voice": <true|false>, "reason": "<one sentence>"}}'
        )
        return [{"role": "system", "content": self.system_prompt()}, {"role": "user", "content": user}]

    def pairwise_messages(self, item: JudgeItem, first: str, second: str) -> list[dict[str, str]]:
        """The primary endpoint's question: which reply is more empathic for this client. The
        judge writes its reasoning before its verdict (the schema orders "reasoning" first), so the
        verdict follows from the comparison instead of being rationalised afterwards."""
        user = (
            self._conversation(item)
            + f"Reply A:\n<<<\n{clean_text(first)}\n>>>\n\nReply B:\n<<<\n{clean_text(second)}\n>>>\n\n"
            "Compare the two replies on empathy only: does the reply notice and name what this client feels, "
            "validate it without judgment, and respond to this client's situation (not a generic script)? "
            "Ignore length and position: a longer reply or the one shown first is not better for that. "
            "First write your reasoning (two or three sentences comparing the replies), then your verdict. "
            "Answer \"tie\" when neither is clearly more empathic. Answer as JSON: "
            "{\"reasoning\": \"<your comparison>\", \"preferred\": \"A\" | \"B\" | \"tie\"}"
        )
        return [{"role": "system", "content": self.system_prompt()}, {"role": "user", "content": user}]

    def pointwise_schema(self) -> dict[str, Any]:
        score = {"type": "integer", "minimum": SCORE_MIN, "maximum": SCORE_MAX}
        return {
            "type": "object",
            "properties": {
                "scores": {"type": "object", "properties": {c: score for c in self.criteria},
                           "required": self.criteria, "additionalProperties": False},
                "on_voice": {"type": "boolean"},
                "reason": {"type": "string"},
            },
            "required": ["scores", "on_voice", "reason"],
            "additionalProperties": False,
        }

    PAIRWISE_SCHEMA = {
        "type": "object",
        # Reasoning first: structured output is generated in property order.
        "properties": {"reasoning": {"type": "string"}, "preferred": {"type": "string", "enum": ["A", "B", "tie"]}},
        "required": ["reasoning", "preferred"],
        "additionalProperties": False,
    }

    # ------------------------------------------------------------------ validation of answers

    def parse_pointwise(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("scores"), dict):
            raise ValueError('expected an object with "scores"')
        scores = {}
        for c in self.criteria:
            value = data["scores"].get(c)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
                raise ValueError(f"score for {c!r} is not an integer: {value!r}")
            if not SCORE_MIN <= value <= SCORE_MAX:
                raise ValueError(f"score for {c!r} is outside {SCORE_MIN}-{SCORE_MAX}: {value!r}")
            scores[c] = (int(value) - SCORE_MIN) / (SCORE_MAX - SCORE_MIN)
        if not isinstance(data.get("on_voice"), bool):
            raise ValueError(f'"on_voice" must be true or false, got {data.get("on_voice")!r}')
        return {"scores": scores, "on_voice": data["on_voice"], "reason": str(data.get("reason", ""))}

    @staticmethod
    def parse_pairwise(data: Any) -> dict[str, Any]:
        preferred = data.get("preferred") if isinstance(data, dict) else None
        if isinstance(preferred, str) and preferred.strip().lower() in ("a", "b", "tie"):
            value = preferred.strip().lower()
            reasoning = data.get("reasoning", data.get("reason", ""))
            return {"preferred": "tie" if value == "tie" else value.upper(), "reason": str(reasoning)}
        raise ValueError(f'"preferred" must be "A", "B" or "tie", got {preferred!r}')

    # ------------------------------------------------------------------ transport

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _body(self, messages, schema_name: str, schema: dict) -> dict[str, Any]:
        if self.response_format == "json_schema":
            fmt = {"type": "json_schema", "json_schema": {"name": schema_name, "strict": True, "schema": schema}}
        else:
            fmt = {"type": "json_object"}
        return {"model": self.model, "messages": messages, "temperature": self.temperature, "seed": self.seed,
                "response_format": fmt}

    def call(self, messages, schema_name: str, schema: dict, parse: Callable[[Any], dict]) -> tuple[dict, int]:
        """Ask the endpoint; return (parsed answer, attempts used). Raises JudgeCallFailed."""
        if self._refused:
            raise JudgeEndpointRefused(self._refused)
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        errors: list[str] = []
        attempts = 1 + self.max_retries
        for attempt in range(1, attempts + 1):
            try:
                resp = self._session().post(f"{self.base_url}/chat/completions", headers=headers,
                                            json=self._body(messages, schema_name, schema), timeout=self.timeout)
            except requests.RequestException as exc:
                errors.append(f"attempt {attempt}: request failed ({type(exc).__name__}: {exc})")
                self._sleep(attempt)
                continue
            if resp.status_code in (401, 403, 404):
                with self._lock:
                    self._refused = (f"the judge endpoint answered HTTP {resp.status_code} ({resp.text[:200]!r}); "
                                     "check the judge base URL, model name and API key")
                raise JudgeEndpointRefused(self._refused)
            if resp.status_code == 400 and self.response_format == "json_schema":
                # Older OpenAI-compatible servers reject json_schema; json_object is validated the same way.
                with self._lock:
                    self.response_format = "json_object"
                errors.append(f"attempt {attempt}: HTTP 400 with json_schema; switched to json_object")
                continue
            if resp.status_code >= 400:
                errors.append(f"attempt {attempt}: HTTP {resp.status_code} ({resp.text[:200]!r})")
                self._sleep(attempt)
                continue
            try:
                content = resp.json()["choices"][0]["message"]["content"]
                if not isinstance(content, str):
                    raise TypeError("message content is not text")
                return parse(json.loads(_fence_free(content))), attempt
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                errors.append(f"attempt {attempt}: malformed judge output ({exc})")
        raise JudgeCallFailed(f"no usable judge answer after {attempts} attempts: " + "; ".join(errors))

    def _sleep(self, attempt: int) -> None:
        if self.retry_backoff:
            time.sleep(self.retry_backoff * 2 ** (attempt - 1))

    # ------------------------------------------------------------------ scoring

    def _score_reply(self, item: JudgeItem, model: str) -> ReplyScore:
        reply = item.reply(model)
        if reply is None:
            return ReplyScore(item.item_id, model, not_computed=f"no {model} reply was generated")
        try:
            answer, attempts = self.call(self.pointwise_messages(item, reply), "reply_scores",
                                         self.pointwise_schema(), self.parse_pointwise)
        except JudgeCallFailed as exc:
            return ReplyScore(item.item_id, model, not_computed=str(exc))
        scores = answer["scores"]
        return ReplyScore(item.item_id, model, criteria=scores, on_voice=answer["on_voice"],
                          overall=sum(scores.values()) / len(scores),
                          details={"reason": answer["reason"], "attempts": attempts})

    def _one_order(self, item: JudgeItem, first_model: str) -> tuple[str, str]:
        second_model = ADAPTED if first_model == BASE else BASE
        answer, _ = self.call(self.pairwise_messages(item, item.reply(first_model), item.reply(second_model)),
                              "pairwise_preference", self.PAIRWISE_SCHEMA, self.parse_pairwise)
        return {"A": first_model, "B": second_model, "tie": TIE}[answer["preferred"]], answer["reason"]

    def _compare(self, item: JudgeItem) -> PairwiseOutcome:
        if item.base_reply is None or item.adapted_reply is None:
            return PairwiseOutcome(item.item_id, None, not_computed="a reply is missing")
        try:
            base_first, why_base_first = self._one_order(item, BASE)
            adapted_first, why_adapted_first = self._one_order(item, ADAPTED)
        except JudgeCallFailed as exc:
            return PairwiseOutcome(item.item_id, None, not_computed=str(exc))
        # A verdict that flips with the order is position bias, not a preference: a tie.
        winner = base_first if base_first == adapted_first else TIE
        return PairwiseOutcome(item.item_id, winner, details={
            "criterion": "empathy", "base_shown_first": base_first, "adapted_shown_first": adapted_first,
            "consistent": base_first == adapted_first,
            "reasoning": {"base_shown_first": why_base_first, "adapted_shown_first": why_adapted_first}})

    def score(self, items: Sequence[JudgeItem]) -> JudgeResult:
        items = list(items)
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            reply_futures = [pool.submit(self._score_reply, item, m) for item in items for m in MODELS]
            pair_futures = [pool.submit(self._compare, item) for item in items]
            replies = [f.result() for f in reply_futures]
            pairwise = [f.result() for f in pair_futures]
        settings = {"base_url": self.base_url, "model": self.model, "prompt_version": PROMPT_VERSION,
                    "response_format": self.response_format, "temperature": self.temperature, "seed": self.seed,
                    "max_retries": self.max_retries, "timeout_s": self.timeout, "rubric": self.rubric.to_dict(),
                    "system_prompt": self.system_prompt()}
        return JudgeResult(self.name, self.label, self.criteria, replies, pairwise, settings)
