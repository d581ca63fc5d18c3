"""The history & analysis page: every job of the organization as one row (dataset, preset, key
settings, final losses, validation headline figure and gates, cost, duration, who started it),
sortable, filterable, exportable as CSV, and a quality-vs-cost scatter.

A constant number of queries whatever the number of jobs: the jobs with their dataset, creator and
cost (training.selectors.job_list), then the latest completed validation run of each, reading only
the primary endpoint and the gates out of their JSON (DISTINCT ON, no per-row query)."""
from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from dashboard.selectors import human
from training import selectors as training_selectors
from training import states

KEY_SETTINGS = ("num_epochs", "learning_rate", "lora_r", "max_seq_len")
SORT_KEYS = ("created_at", "name", "status", "dataset", "preset", "train_loss", "val_loss", "quality", "cost",
             "duration_s", "created_by")
MAX_ROWS = 5000


def _latest_validations(*, organization, job_ids: list) -> dict:
    from validation import report
    from validation.models import RunStatus, ValidationRun
    from validation.scoring import WIN_RATE

    runs = (ValidationRun.objects.filter(organization=organization, status=RunStatus.COMPLETED, job_id__in=job_ids)
            .order_by("job_id", "-created_at").distinct("job_id")
            .values("job_id", "verdict", "summary__gates", f"metrics__{WIN_RATE}"))
    out = {}
    for run in runs:
        primary = run[f"metrics__{WIN_RATE}"]
        row = report.metric_row(primary) if isinstance(primary, dict) and "key" in primary else None
        gates = [report.gate_row(g) for g in run["summary__gates"] or []]
        out[run["job_id"]] = {
            "verdict": run["verdict"], "verdict_label": report.VERDICT_LABELS.get(run["verdict"], run["verdict"] or "–"),
            "quality": row["value"] if row and row["computed"] else None,
            "quality_text": (f"{row['value_text']} {row['ci_text']}, n={row['n']}" if row and row["computed"]
                             else "not computed"),
            "gates_text": "; ".join(f"{g['name']}: {g['verdict_label']}" for g in gates) or "–",
        }
    return out


def history_rows(*, organization, status=None, dataset=None, preset=None, client=None, created_by=None,
                 search=None, sort: str = "-created_at") -> list[dict[str, Any]]:
    # values(): only the columns shown, the validation loss read out of the result JSON by
    # PostgreSQL, so 1,000 rows cost one light query (see benchmarks/dashboard_history.py).
    jobs = list(training_selectors.job_list(organization=organization, status=status, dataset=dataset, preset=preset,
                                            client=client, created_by=created_by, search=search)
                .values("id", "name", "status", "dataset_id", "dataset__name", "preset", "client", "hyperparameters",
                        "last_loss", "result__final_metrics__valid_loss", "launched_at", "finished_at", "created_at",
                        "created_by__username", "cost_spent")[:MAX_ROWS])
    validations = _latest_validations(organization=organization, job_ids=[j["id"] for j in jobs])
    labels = dict(states.CHOICES)
    rows = []
    for job in jobs:
        hp = job["hyperparameters"] or {}
        valid_loss = job["result__final_metrics__valid_loss"]
        valid_loss = valid_loss if isinstance(valid_loss, (int, float)) else None
        started = job["launched_at"] or job["created_at"]
        duration = (job["finished_at"] - started).total_seconds() if job["finished_at"] and started else None
        v = validations.get(job["id"]) or {}
        cost = job["cost_spent"]
        rows.append({
            "id": str(job["id"]), "name": job["name"], "status": job["status"],
            "status_label": labels.get(job["status"], job["status"]),
            "dataset": job["dataset__name"], "dataset_id": str(job["dataset_id"]), "preset": job["preset"],
            "client": job["client"],
            "settings": {k: hp.get(k) for k in KEY_SETTINGS},
            "settings_text": ", ".join(f"{k.replace('_', ' ')} {human(hp[k])}" for k in KEY_SETTINGS if k in hp) or "–",
            "train_loss": job["last_loss"], "val_loss": valid_loss,
            "quality": v.get("quality"), "quality_text": v.get("quality_text", "no validation"),
            "verdict": v.get("verdict"), "verdict_label": v.get("verdict_label", "–"),
            "gates_text": v.get("gates_text", "–"),
            "cost": Decimal(cost) if cost is not None else None, "duration_s": duration,
            "cost_text": "–" if cost is None else f"${Decimal(cost):.2f}", "duration_text": duration_text(duration),
            "train_loss_text": human(job["last_loss"]), "val_loss_text": human(valid_loss),
            "created_by": job["created_by__username"] or "",
            "created_at": job["created_at"],
        })
    return sort_rows(rows, sort)


def duration_text(seconds) -> str:
    if seconds is None:
        return "–"
    s = max(0, round(seconds))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def sort_rows(rows: list[dict], sort: str) -> list[dict]:
    """Sorted by one column; rows without a value go last whichever the direction."""
    key = sort.lstrip("-")
    if key not in SORT_KEYS:
        key, sort = "created_at", "-created_at"
    present = [r for r in rows if r[key] is not None and r[key] != ""]
    missing = [r for r in rows if r[key] is None or r[key] == ""]
    present.sort(key=lambda r: r[key], reverse=sort.startswith("-"))
    return present + missing


CSV_COLUMNS = ["id", "name", "status", "dataset", "preset", "client", *KEY_SETTINGS, "train_loss", "val_loss",
               "win_rate", "win_rate_text", "verdict", "gates", "cost_usd", "duration_s", "created_by", "created_at"]


def history_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([r["id"], r["name"], r["status"], r["dataset"], r["preset"], r["client"],
                         *("" if r["settings"][k] is None else r["settings"][k] for k in KEY_SETTINGS),
                         _num(r["train_loss"]), _num(r["val_loss"]), _num(r["quality"]),
                         r["quality_text"], r["verdict"] or "", r["gates_text"],
                         "" if r["cost"] is None else f"{r['cost']:.2f}",
                         "" if r["duration_s"] is None else round(r["duration_s"]),
                         r["created_by"], r["created_at"].isoformat()])
    return out.getvalue()


def _num(x) -> str:
    return "" if x is None else f"{x:.6g}"


def scatter(rows: list[dict], *, width: int = 560, height: int = 300, pad: int = 44) -> dict[str, Any]:
    """Points of the jobs with both a validation win rate and a cost: x = cost ($), y = win rate,
    in SVG coordinates, with the axis ticks. The template draws it; no chart library."""
    points = [r for r in rows if r["quality"] is not None and r["cost"] is not None]
    if not points:
        return {"points": [], "width": width, "height": height}
    max_cost = float(max(r["cost"] for r in points)) or 1.0

    def x(cost):
        return pad + (width - 2 * pad) * float(cost) / max_cost

    def y(q):
        return height - pad - (height - 2 * pad) * q

    return {
        "width": width, "height": height, "pad": pad, "x0": pad, "x1": width - pad, "y0": height - pad, "y1": pad,
        "points": [{"x": round(x(r["cost"]), 1), "y": round(y(r["quality"]), 1), "id": r["id"],
                    "label": f"{r['name']}: {r['quality_text']}, ${r['cost']:.2f}",
                    "cls": r["verdict"] or ""} for r in points],
        "xticks": [{"x": round(x(max_cost * k / 4), 1), "label": f"${max_cost * k / 4:.2f}"} for k in range(5)],
        "yticks": [{"y": round(y(k / 4), 1), "label": f"{25 * k}%"} for k in range(5)],
    }
