"""JSON parsed with limits, for every JSON body the control plane accepts (the API's parser,
pod events): no NaN or Infinity, nesting at most MAX_DEPTH levels, integers within PostgreSQL's
bigint. Each violation is a ValueError with a sentence the sender can act on (answered 400), never a
RecursionError (500)."""
from __future__ import annotations

import json
from typing import Any

from core.json_scan import json_nesting

MAX_DEPTH = 32
INT_MIN, INT_MAX = -(2 ** 63), 2 ** 63 - 1
INT32_MAX = 2 ** 31 - 1


def _no_constant(name: str):
    raise ValueError(f"{name} is not allowed in JSON here; send a finite number or null")


def _int(text: str) -> int:
    if len(text) > 20:
        raise ValueError(f"integer {text[:24]}... is out of range (at most {INT_MAX})")
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"integer {value} is out of range (at most {INT_MAX})")
    return value


def _float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:24]} is out of range (not a finite double)")
    return value


def _depth_ok(text: str, max_depth: int) -> bool:
    """Bracket depth outside strings, counted before parsing (the parser recurses)."""
    return json_nesting(text, limit=max_depth).deepest <= max_depth


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    # Quick reject without scanning: fewer opening brackets than the limit cannot be too deep.
    if text.count("[") + text.count("{") > max_depth and not _depth_ok(text, max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_no_constant, parse_int=_int, parse_float=_float)
    except RecursionError as exc:  # pragma: no cover - the depth check comes first
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from exc
