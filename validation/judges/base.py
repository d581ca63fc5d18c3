"""The Judge interface: score base and adapted replies per criterion, and compare them pairwise.

Plain dataclasses, no framework imports, so the control plane can store a `JudgeResult` as JSON
(`to_dict`) and the report can read it back without knowing which judge produced it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

BASE = "base"
ADAPTED = "adapted"
TIE = "tie"
MODELS = (BASE, ADAPTED)


@dataclass(frozen=True)
class JudgeItem:
    """One held-out client turn with both models' replies and the dataset's reference reply."""

    item_id: str
    client_message: str
    base_reply: str | None
    adapted_reply: str | None
    reference: str | None = None
    context: tuple[dict[str, str], ...] = ()  # earlier messages (role, content), oldest first

    def reply(self, model: str) -> str | None:
        return self.base_reply if model == BASE else self.adapted_reply


@dataclass
class ReplyScore:
    """The judge's reading of one reply. `criteria` maps criterion id -> score in [0, 1].
    When the judge could not score the reply, `criteria` is empty and `not_computed` says why."""

    item_id: str
    model: str  # "base" or "adapted"
    criteria: dict[str, float] = field(default_factory=dict)
    on_voice: bool | None = None
    overall: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    not_computed: str | None = None

    @property
    def computed(self) -> bool:
        return self.not_computed is None


@dataclass
class PairwiseOutcome:
    """Adapted-vs-base comparison of one item. `winner` is "adapted", "base" or "tie";
    None with `not_computed` set when the comparison failed."""

    item_id: str
    winner: str | None
    details: dict[str, Any] = field(default_factory=dict)
    not_computed: str | None = None

    @property
    def outcome(self) -> str | None:
        """From the adapted model's side: "win", "tie" or "loss" (None when not computed)."""
        return {ADAPTED: "win", TIE: "tie", BASE: "loss"}.get(self.winner) if self.winner else None


@dataclass
class JudgeResult:
    judge: str  # "offline" or "llm"
    label: str  # how the report names it, e.g. "Automatic proxy (sentence embeddings + rule detectors)"
    criteria: list[str]
    replies: list[ReplyScore]
    pairwise: list[PairwiseOutcome]
    settings: dict[str, Any] = field(default_factory=dict)  # model, endpoint, versions: never the key

    def scores_for(self, model: str) -> dict[str, ReplyScore]:
        return {r.item_id: r for r in self.replies if r.model == model}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JudgeResult":
        return cls(judge=data["judge"], label=data["label"], criteria=list(data["criteria"]),
                   replies=[ReplyScore(**r) for r in data["replies"]],
                   pairwise=[PairwiseOutcome(**p) for p in data["pairwise"]],
                   settings=dict(data.get("settings") or {}))


class Judge(ABC):
    """Scores replies against a rubric. Implementations never raise for one bad item: that item is
    reported as not computed with the reason, and the rest are still scored."""

    name: str = "judge"
    label: str = ""

    @abstractmethod
    def score(self, items: Sequence[JudgeItem]) -> JudgeResult:
        """Score every base and adapted reply on every rubric criterion, and compare each pair."""
