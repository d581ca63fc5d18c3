"""Brute-force references for the metric rollups and the downsampled series, written from the
rule in docs/api.md and not from the code under test (shared with the SQLite subprocess)."""
from __future__ import annotations

import math

from training.services.metric_rollups import BLOCK_SIZES, ROLLUP_KEYS, STAT_FIELDS


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def expected_rollups(points: dict[int, dict], keys=ROLLUP_KEYS) -> dict[tuple, tuple]:
    """{(key, size, block): (count, total, min_value, min_step, max_value, max_step, first_step,
    first_value, last_step, last_value)} of {step: values}."""
    groups: dict[tuple, list] = {}
    for step in sorted(points):
        for key in keys:
            value = _number((points[step] or {}).get(key))
            if value is None:
                continue
            for size in BLOCK_SIZES:
                groups.setdefault((key, size, step // size), []).append((step, value))
    out = {}
    for k, pts in groups.items():
        low = min(pts, key=lambda p: (p[1], p[0]))
        high = min(pts, key=lambda p: (-p[1], p[0]))
        out[k] = (len(pts), math.fsum(v for _, v in pts), low[1], low[0], high[1], high[0],
                  pts[0][0], pts[0][1], pts[-1][0], pts[-1][1])
    return out


def stored_rollups(job_id) -> dict[tuple, tuple]:
    from training.models import MetricRollup

    return {(r[0], r[1], r[2]): tuple(r[3:]) for r in
            MetricRollup.objects.filter(job_id=job_id).values_list("key", "size", "block", *STAT_FIELDS)}


def rollups_match(stored: dict, expected: dict) -> bool:
    """Equal, the sum to rounding (it is added up block by block, not point by point)."""
    if stored.keys() != expected.keys():
        return False
    for k, want in expected.items():
        got = stored[k]
        if got[0] != want[0] or got[2:] != want[2:] or not math.isclose(got[1], want[1], rel_tol=1e-9, abs_tol=1e-9):
            return False
    return True


def expected_series(points: dict[int, dict], keys, max_points: int, after_step=None) -> dict[str, list]:
    """The downsampled answer (the job holds more than max_points points in the range): blocks of
    the largest size giving at least (max_points - 2) / 2 blocks (else single steps), shared into
    that many equal buckets, each bucket's lowest and highest point (ties: earliest step), plus
    the first and the last point of each series."""
    steps = sorted(s for s in points if after_step is None or s > after_step)
    lo, hi = steps[0], steps[-1]
    buckets = max(1, (max_points - 2) // 2)
    size = next((s for s in reversed(BLOCK_SIZES) if hi // s - lo // s + 1 >= buckets), 1)
    blocks = hi // size - lo // size + 1
    out = {}
    for key in keys:
        per_bucket: dict[int, list] = {}
        for step in steps:
            value = _number((points[step] or {}).get(key))
            if value is not None:
                per_bucket.setdefault((step // size - lo // size) * buckets // blocks, []).append((step, value))
        picked = {}
        for pts in per_bucket.values():
            for step, value in (min(pts, key=lambda p: (p[1], p[0])), min(pts, key=lambda p: (-p[1], p[0]))):
                picked[step] = value
        every = [p for pts in per_bucket.values() for p in pts]
        if every:
            for step, value in (min(every), max(every)):
                picked[step] = value
        out[key] = [[s, picked[s]] for s in sorted(picked)]
    return out
