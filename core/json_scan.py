"""One scan of JSON text's bracket structure, outside strings, without parsing it.

Two rules read the same scan: config.json_limits refuses text nested deeper than a limit before
the (recursive) parser sees it, and the dataset importer calls text that ends inside a string or
with brackets still open "cut off" rather than malformed. Both count brackets the same way, so
the counting lives here once.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Nesting:
    deepest: int      # the deepest bracket level reached (stops growing past `limit`)
    open: int         # brackets still open at the end of the text
    in_string: bool   # the text ends inside a string


def json_nesting(text: str, *, limit: int | None = None) -> Nesting:
    """Bracket depth of `text`, strings skipped. With `limit`, the scan stops as soon as the depth
    passes it (the caller only needs to know that it did)."""
    depth = deepest = 0
    in_string = escaped = False
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
            if depth > deepest:
                deepest = depth
                if limit is not None and depth > limit:
                    break
        elif ch in "]}":
            depth -= 1
    return Nesting(deepest=deepest, open=depth, in_string=in_string)
