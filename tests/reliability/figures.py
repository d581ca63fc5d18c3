"""What the reliability tests measured, printed as one table at the end of the run
(conftest.py's pytest_terminal_summary). Sizes: fast in `make test`, full with RELIABILITY_FULL=1
(`make reliability`)."""
from __future__ import annotations

import os
from dataclasses import dataclass

FULL = os.environ.get("RELIABILITY_FULL", "") not in ("", "0")


def size(fast, full):
    """The fast size in `make test`, the full size in `make reliability`."""
    return full if FULL else fast


@dataclass
class Figure:
    item: str
    name: str
    value: str
    target: str = ""
    size: str = ""


FIGURES: list[Figure] = []


def record(item: str, name: str, value, *, target: str = "", size: str = "") -> None:
    FIGURES.append(Figure(item, name, str(value), target, size))
