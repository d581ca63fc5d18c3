"""Judges of generated replies: one interface, one module per implementation.

- `OfflineJudge` (validation.judges.offline): the default; no network; an automatic proxy.
- `LLMJudge` (validation.judges.llm): any OpenAI-compatible chat-completions endpoint.

Importing this package imports neither torch nor requests' network; the offline judge loads its
embedding model on first use.
"""
from validation.judges.base import (ADAPTED, BASE, TIE, Judge, JudgeItem, JudgeResult, PairwiseOutcome,
                                    ReplyScore)

__all__ = ["ADAPTED", "BASE", "TIE", "Judge", "JudgeItem", "JudgeResult", "PairwiseOutcome", "ReplyScore",
           "OfflineJudge", "LLMJudge"]


def __getattr__(name):
    # Lazy, so `import validation.judges` stays cheap and torch-free.
    if name == "OfflineJudge":
        from validation.judges.offline import OfflineJudge
        return OfflineJudge
    if name == "LLMJudge":
        from validation.judges.llm import LLMJudge
        return LLMJudge
    raise AttributeError(name)
