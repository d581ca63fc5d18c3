"""Evaluation sets written for the project and shipped with it (package data, no download).

- knowledge.jsonl: multiple-choice personal-finance questions for the knowledge-retention metric
  (catastrophic forgetting). One JSON object per line: id, category, question, options (4),
  answer (index of the correct option).
- emotions.json: the option list and prompt of the emotion-recognition question, with the aliases
  that fold the datasets' variant spellings onto the options.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
KNOWLEDGE_FILE = HERE / "knowledge.jsonl"
EMOTIONS_FILE = HERE / "emotions.json"

KNOWLEDGE_CATEGORIES = ("retirement_accounts", "taxes", "budgeting", "debt", "insurance", "investing_basics",
                        "estate_basics")


@dataclass(frozen=True)
class KnowledgeQuestion:
    id: str
    category: str
    question: str
    options: tuple[str, ...]
    answer: int


@dataclass(frozen=True)
class EmotionLabels:
    version: str
    options: tuple[str, ...]
    aliases: dict[str, str]
    question: str
    transcript_roles: dict[str, str]

    def canonical(self, label: str | None) -> str | None:
        """The option a dataset label stands for ("Cautious_Hope" -> "hope"); None when it maps to none."""
        if not label:
            return None
        key = re.sub(r"[\s_\-]+", " ", str(label)).strip().lower()
        key = self.aliases.get(key, key)
        return key if key in self.options else None


def load_knowledge(path: Path = KNOWLEDGE_FILE) -> list[KnowledgeQuestion]:
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            out.append(KnowledgeQuestion(id=row["id"], category=row["category"], question=row["question"],
                                         options=tuple(row["options"]), answer=int(row["answer"])))
    return out


@lru_cache(maxsize=1)
def load_emotion_labels(path: Path = EMOTIONS_FILE) -> EmotionLabels:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return EmotionLabels(version=data["version"], options=tuple(data["options"]), aliases=dict(data["aliases"]),
                         question=data["question"], transcript_roles=dict(data["transcript_roles"]))
