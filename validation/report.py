"""The validation report of a run, as one JSON document, and its HTML and PDF renderings.

`report_document(run)` is the single source: the API returns it, the HTML template and the PDF
read it, and it is stored as the job's `validation.json` artifact (the deployment package's model
card reads its `summary` and `metrics` rows). Figures are formatted once here, so the three
formats always agree.
"""
from __future__ import annotations

import math
from typing import Any

from django.template.loader import render_to_string

from validation import scoring

SCHEMA = "brightrun.validation-report/1"
PERCENT_KEYS = {scoring.EMOTION, scoring.RETENTION, scoring.BRAND_VOICE, scoring.WIN_RATE}
LIMITATIONS = (
    "Every interval is a 95% percentile bootstrap over the held-out items; below about 20 items it is "
    "too narrow, and when all items agree it collapses to a point (marked 'degenerate').",
    "The offline judge is an automatic proxy (rule-based rubric detectors plus sentence-embedding "
    "similarity), not a human or LLM rating; read brand voice against the reference replies' own rate.",
    "Perplexity, emotion recognition and replies come from the dataset's validation split, which is small "
    "for a small dataset; knowledge retention uses the shipped 161-question set.",
    "A report of a tiny test model says nothing about quality: its numbers only show the pipeline works.",
)
CURVE_KEYS = ("loss", "learning_rate")
CURVE_MAX_POINTS = 200


# --------------------------------------------------------------------------- formatting


def _num(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def fmt(value, key: str = "", *, signed: bool = False) -> str:
    v = _num(value)
    if v is None:
        return "–"
    if key in PERCENT_KEYS or key == "percent":
        return f"{v:+.1%}" if signed else f"{v:.1%}"
    if key == scoring.PERPLEXITY and not signed:
        return f"{v:,.2f}"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def _interval(est: dict | None, key: str) -> str:
    if not est:
        return "–"
    return f"[{fmt(est.get('low'), key)}, {fmt(est.get('high'), key)}]"


def metric_row(m: dict[str, Any]) -> dict[str, Any]:
    """One metric as the report shows it (and as the model card reads it)."""
    key = m["key"]
    row = {"key": key, "name": m["title"], "computed": bool(m.get("computed"))}
    if not row["computed"]:
        row.update({"status": "not computed", "reason": m.get("reason", ""), "value": None, "ci_low": None,
                    "ci_high": None, "n": None, "value_text": "not computed", "ci_text": "–", "notes": []})
        return row
    value = m["value"]
    rel = m.get("relative_improvement")
    rel_text = "–"
    if isinstance(rel, dict) and rel.get("computed") is False:
        rel_text = "not computed: " + rel.get("reason", "")
    elif isinstance(rel, dict):
        rel_text = f"{fmt(rel.get('value'), 'percent', signed=True)} {_interval(rel, 'percent')}"
    passed = m.get("passed")
    row.update({
        "status": "measured" if passed is None else ("pass" if passed else "fail"),
        "value": value["value"], "ci_low": value["low"], "ci_high": value["high"], "n": value["n"],
        "confidence": value.get("confidence", 0.95), "degenerate": value.get("degenerate", False),
        "value_text": fmt(value["value"], key), "ci_text": _interval(value, key),
        "base_text": f"{fmt((m.get('base') or {}).get('value'), key)} {_interval(m.get('base'), key)}" if m.get("base") else "–",
        "adapted_text": (f"{fmt((m.get('adapted') or {}).get('value'), key)} {_interval(m.get('adapted'), key)}"
                         if m.get("adapted") else "–"),
        "difference_text": (f"{fmt(m['difference']['value'], key, signed=True)} {_interval(m['difference'], key)}"
                            if m.get("difference") else "–"),
        "relative_text": rel_text,
        "threshold": m.get("threshold"), "threshold_text": fmt(m.get("threshold"), key) if m.get("threshold") is not None else "–",
        "passed": passed, "conclusive": m.get("conclusive"), "higher_is_better": m.get("higher_is_better", True),
        "notes": list(m.get("notes") or []), "extra": m.get("extra") or {},
    })
    wtl = (m.get("extra") or {}).get("win_tie_loss")
    if wtl:
        row["notes"].append("win / tie / loss: " + ", ".join(
            f"{name} {fmt(wtl[name]['value'], 'percent')} {_interval(wtl[name], 'percent')}" for name in ("win", "tie", "loss")
            if isinstance(wtl.get(name), dict)))
    if passed is not None and not m.get("conclusive"):
        row["notes"].append("borderline: the interval crosses the threshold")
    return row


VERDICT_LABELS = {"pass": "Pass", "fail": "Fail", "incomplete": "Incomplete", "inconclusive": "Inconclusive",
                  "not_valid": "Not valid for this dataset"}
GATE_NAMES = {"brand_voice": "Brand voice", "forgetting": "Forgetting (knowledge lost)"}


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def gate_row(g: dict[str, Any]) -> dict[str, Any]:
    """A gate (validation.gates.GateResult.to_dict()) as the report shows it."""
    ci = g.get("ci")
    return {**g, "name": GATE_NAMES.get(g["gate"], g["gate"]), "who": g.get("control") or "adapted model",
            "verdict_label": VERDICT_LABELS.get(g["verdict"], g["verdict"]),
            "value_text": _pct(g.get("value")), "ci_text": f"[{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "",
            "checks_text": "; ".join(
                f"{c['check'].replace('_', ' ')}: {c['verdict']}"
                + ("" if c.get("value") is None else f" ({c['value']:.2f} vs {c['threshold']:.2f})")
                for c in g.get("checks") or []),
            "reasons_text": "; ".join(g.get("reasons") or [])}


def headline(rows: list[dict]) -> str:
    """The report's one headline sentence, computed from the primary endpoint (pairwise,
    order-swapped empathy comparison of adapted vs base replies) and nothing else."""
    r = {row["key"]: row for row in rows}.get(scoring.WIN_RATE)
    if r is None or not r["computed"]:
        return ("No headline: the pairwise empathy comparison of adapted and base replies was not computed"
                + (f" ({r['reason']})." if r else "."))
    extra = r.get("extra") or {}
    text = (f"Adapted replies judged more empathic than the base model's in {r['value_text']} {r['ci_text']} of "
            f"{r['n']} held-out client turns")
    ref = extra.get("reference_win_tie_loss")
    if ref:
        text += f"; the dataset's own replies in {_pct(ref['win']['value'])}"
    text += "."
    if r.get("difference_text") and r["difference_text"] != "–":
        text += f" Net difference (turns won minus turns lost): {r['difference_text']}"
        mde = extra.get("minimal_detectable_effect")
        text += (f"; at this n only a difference of {_pct(mde)} or more is reliably detectable." if mde is not None
                 else ".")
    return text


def _summary_text(verdict: dict[str, Any], rows: list[dict]) -> str:
    label = VERDICT_LABELS.get(verdict.get("verdict"), "?").upper()
    parts = [headline(rows), f"Verdict: {label}."]
    for g in verdict.get("gates") or []:
        row = gate_row(g)
        parts.append(f"{row['name']}: {row['verdict_label']}"
                     + (f", {row['value_text']} {row['ci_text']} (n={row['n']})" if g.get("value") is not None else "")
                     + (f": {row['reasons_text']}" if row["reasons_text"] else "") + ".")
    if verdict.get("gates"):
        return " ".join(parts)
    by_key = {r["key"]: r for r in rows}
    for key in scoring.GATED:
        r = by_key.get(key)
        if r is None:
            continue
        if r["computed"]:
            parts.append(f"{r['name']}: {r['value_text']} {r['ci_text']} (n={r['n']}, {r['status']}, "
                         f"threshold {r['threshold_text']}).")
        else:
            parts.append(f"{r['name']}: not computed ({r['reason']}).")
    if verdict.get("inconclusive"):
        parts.append("Borderline (interval crosses the threshold): " + ", ".join(verdict["inconclusive"]) + ".")
    return " ".join(parts)


# --------------------------------------------------------------------------- document


def training_curve(job) -> dict[str, Any]:
    points = list(job.metrics.order_by("step", "attempt").values_list("step", "values"))
    latest: dict[int, dict] = {}
    for step, values in points:  # a resumed job re-does steps: the last attempt's value wins
        latest[step] = values or {}
    steps = sorted(latest)
    if len(steps) > CURVE_MAX_POINTS:
        stride = len(steps) / CURVE_MAX_POINTS
        steps = sorted({steps[int(i * stride)] for i in range(CURVE_MAX_POINTS)} | {steps[-1]})
    series = {k: [[s, latest[s][k]] for s in steps if _num(latest[s].get(k)) is not None] for k in CURVE_KEYS}
    return {"points": len(latest), "series": series,
            "svg": {k: svg_polyline(v, title=k.replace("_", " ")) for k, v in series.items() if v}}


def svg_polyline(points: list[list[float]], *, title: str, width: int = 560, height: int = 150) -> str:
    """A small self-contained SVG line chart (no script, no external file)."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    pad = 30
    sx = (width - 2 * pad) / ((x1 - x0) or 1)
    sy = (height - 2 * pad) / ((y1 - y0) or 1)
    coords = " ".join(f"{pad + (x - x0) * sx:.1f},{height - pad - (y - y0) * sy:.1f}" for x, y in points)
    label = lambda v: f"{v:.3g}"  # noqa: E731
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="{title}">'
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>'
            f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>'
            f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#999"/>'
            f'<polyline fill="none" stroke="#2563eb" stroke-width="1.5" points="{coords}"/>'
            f'<text x="{pad}" y="{pad - 8}" font-size="11" fill="#333">{title} (step {label(x0)}–{label(x1)})</text>'
            f'<text x="2" y="{pad + 4}" font-size="10" fill="#666">{label(y1)}</text>'
            f'<text x="2" y="{height - pad}" font-size="10" fill="#666">{label(y0)}</text></svg>')


def job_cost(job) -> dict[str, Any]:
    try:
        cost = job.cost  # billing.JobCost (one row per job), when billing recorded one
    except Exception:  # noqa: BLE001 - no row (or no billing app): say so
        return {"available": False, "reason": "billing recorded no cost for this job"}
    return {"available": True, "cost": str(cost.cost), "estimate": str(cost.est_cost),
            "estimate_low": str(cost.est_cost_low), "estimate_high": str(cost.est_cost_high),
            "gpu_seconds": getattr(cost, "gpu_seconds", None), "provider": job.provider, "gpu_type": job.gpu_type,
            "spot": job.spot}


CONTROL_NAMES = {"reference": "the dataset's own replies", "canned": "one canned reply",
                 "shuffled": "replies shuffled across clients", "word_salad": "word salad (the reference's words "
                 "in random order)"}


def judge_validation(controls: list[dict] | None, judge_label: str = "") -> dict[str, Any] | None:
    """How far the judge can be trusted on this dataset, from its verdicts on the controls of the
    brand-voice gate: agreement with the references (the share of the dataset's own replies it
    rates on-voice) and the share of each useless control it rates on-voice. A judge that passes a
    useless control (word salad above all) makes the gates it decides not valid."""
    rows = [g for g in controls or [] if g.get("gate") == "brand_voice" and g.get("control")]
    if not rows:
        return None
    by = {g["control"]: g for g in rows}
    ref = by.get("reference")
    lines = []
    if ref is not None:
        lines.append(f"Agreement with the references: the judge rated {_pct(ref.get('value'))} "
                     f"{gate_row(ref)['ci_text']} of the dataset's own replies on-voice (n={ref.get('n')}); "
                     f"their gate: {VERDICT_LABELS.get(ref['verdict'], ref['verdict'])}.")
    fooled = []
    for name in ("canned", "shuffled", "word_salad"):
        g = by.get(name)
        if g is None:
            continue
        lines.append(f"On {CONTROL_NAMES[name]}: {_pct(g.get('value'))} rated on-voice; gate "
                     f"{VERDICT_LABELS.get(g['verdict'], g['verdict'])}.")
        if g["verdict"] == "pass":
            fooled.append(name)
    trusted = not fooled and (ref is None or ref["verdict"] == "pass")
    if fooled:
        lines.append("The judge passes " + ", ".join(CONTROL_NAMES[f] for f in fooled)
                     + ": the gates it decides are not valid for this dataset.")
    elif ref is not None and ref["verdict"] != "pass":
        lines.append("The judge does not pass the dataset's own replies: the gates it decides are not valid.")
    else:
        lines.append("The judge passes the dataset's own replies and no useless control: its gates can be read.")
    return {"judge": judge_label, "trusted": trusted, "fooled_by": fooled, "lines": lines}


def report_document(run) -> dict[str, Any]:
    job = run.job
    rows = [metric_row(m) for m in (run.metrics or {}).values()]
    verdict = dict(run.summary or {"verdict": run.verdict or "incomplete"})
    verdict["label"] = VERDICT_LABELS.get(verdict.get("verdict"), "–")
    result = job.result or {}
    doc = {
        "schema": SCHEMA,
        "summary": _summary_text(verdict, rows) if run.status == "completed" else f"Validation run {run.status}.",
        "verdict": verdict,
        "headline": headline(rows),
        "gates": [gate_row(g) for g in verdict.get("gates") or []],
        "controls": [gate_row(g) for g in verdict.get("controls") or []],
        "judge_validation": judge_validation(verdict.get("controls"), (run.judge or {}).get("label", "")),
        "metrics": rows,
        "metric_details": run.metrics,
        "run": {"id": str(run.pk), "status": run.status, "trigger": run.trigger,
                "requested_by": getattr(run.requested_by, "username", None),
                "created_at": run.created_at.isoformat() if run.created_at else None,
                "finished_at": run.finished_at.isoformat() if run.finished_at else None},
        "job": {"id": str(job.pk), "name": job.name, "client": job.client, "status": job.status,
                "base_model": job.base_model, "adapter_uri": job.adapter_uri, "dataset": job.dataset.name,
                "dataset_id": str(job.dataset_id),
                "validation_data": ((run.inputs or {}).get("dataset") or {}).get("description"),
                "created_at": job.created_at.isoformat(),
                "finished_at": job.finished_at.isoformat() if job.finished_at else None},
        "configuration": {"preset": job.preset, "hyperparameters": job.hyperparameters, "gpu_type": job.gpu_type,
                          "provider": job.provider, "spot": job.spot, "device": result.get("device"),
                          "quantized_4bit": result.get("quantized_4bit"),
                          "train_seconds": result.get("train_seconds"), "train_tokens": result.get("train_tokens"),
                          "evaluation": (run.inputs or {}).get("pod_settings")},
        "cost": job_cost(job),
        "training_curve": training_curve(job),
        "examples": run.examples or [],
        "examples_rule": (run.inputs or {}).get("examples_rule", ""),
        "judge": {k: v for k, v in (run.judge or {}).items() if k != "settings"}
        | {"settings": {k: v for k, v in ((run.judge or {}).get("settings") or {}).items() if k != "rubric"}},
        "thresholds": run.thresholds,
        "inputs": run.inputs,
        "versions": run.versions,
        "errors": run.errors,
        "limitations": list(LIMITATIONS),
    }
    return doc


# --------------------------------------------------------------------------- HTML


def render_html(document: dict[str, Any]) -> str:
    """A standalone page (inline CSS and SVG; no script, no external file)."""
    return render_to_string("dashboard/report_document.html", {"report": document})


# --------------------------------------------------------------------------- PDF

_PDF_REPLACEMENTS = {"–": "-", "—": "-", "’": "'", "‘": "'", "“": '"', "”": '"', "÷": "/", "…": "...", "≥": ">=",
                     "≤": "<=", "×": "x", "•": "*", "→": "->", "\u00a0": " "}


def _latin1(text: Any) -> str:
    s = str(text if text is not None else "–")
    for a, b in _PDF_REPLACEMENTS.items():
        s = s.replace(a, b)
    return s.encode("latin-1", "replace").decode("latin-1")


def primary_chart_bars(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The page-1 chart's data: for the adapted model (and the dataset's own replies, when judged)
    against the base, the share of turns won, tied and lost on the primary endpoint."""
    row = {r["key"]: r for r in document.get("metrics") or []}.get(scoring.WIN_RATE)
    if not row or not row.get("computed"):
        return []
    extra = row.get("extra") or {}
    bars = []
    for label, wtl in (("Adapted model vs base", extra.get("win_tie_loss")),
                       ("Dataset's own replies vs base", extra.get("reference_win_tie_loss"))):
        if wtl and all(isinstance(wtl.get(k), dict) for k in ("win", "tie", "loss")):
            bars.append({"label": label, "win": wtl["win"]["value"], "tie": wtl["tie"]["value"],
                         "loss": wtl["loss"]["value"], "win_ci": [wtl["win"]["low"], wtl["win"]["high"]]})
    return bars


def _pdf_primary_chart(pdf, bars: list[dict[str, Any]], w: float, latin1) -> None:
    """Horizontal stacked bars (won / tie / lost, share of client turns) with a labelled 0-100% axis
    and the 95% interval of the win share drawn as a whisker."""
    label_w, chart_w, bar_h, gap = 52.0, w - 60.0, 6.0, 4.0
    x0 = pdf.l_margin + label_w
    pdf.ln(2)
    pdf.set_font("Helvetica", "B", 8)
    pdf.cell(w, 5, "Which reply was judged more empathic? Share of held-out client turns", new_x="LMARGIN", new_y="NEXT")
    y = pdf.get_y() + 1
    colors = {"win": (46, 125, 50), "tie": (189, 189, 189), "loss": (198, 40, 40)}
    pdf.set_font("Helvetica", "", 7.5)
    for bar in bars:
        pdf.set_xy(pdf.l_margin, y)
        pdf.cell(label_w - 2, bar_h, latin1(bar["label"]), align="R")
        x = x0
        for part in ("win", "tie", "loss"):
            width = max(0.0, bar[part]) * chart_w
            if width > 0:
                pdf.set_fill_color(*colors[part])
                pdf.rect(x, y, width, bar_h, style="F")
                if width > 9:
                    pdf.set_xy(x, y)
                    pdf.set_text_color(255, 255, 255) if part != "tie" else pdf.set_text_color(0, 0, 0)
                    pdf.cell(width, bar_h, f"{100 * bar[part]:.0f}%", align="C")
                    pdf.set_text_color(0, 0, 0)
            x += width
        lo, hi = bar["win_ci"]
        pdf.set_draw_color(0, 0, 0)
        yc = y + bar_h / 2
        pdf.line(x0 + lo * chart_w, yc, x0 + hi * chart_w, yc)
        pdf.line(x0 + lo * chart_w, yc - 1.5, x0 + lo * chart_w, yc + 1.5)
        pdf.line(x0 + hi * chart_w, yc - 1.5, x0 + hi * chart_w, yc + 1.5)
        y += bar_h + gap
    # The axis: 0-100% with ticks every 25%, and its title.
    pdf.line(x0, y - gap / 2, x0 + chart_w, y - gap / 2)
    for tick in (0, 25, 50, 75, 100):
        tx = x0 + tick / 100 * chart_w
        pdf.line(tx, y - gap / 2, tx, y - gap / 2 + 1.2)
        pdf.set_xy(tx - 6, y - gap / 2 + 1.2)
        pdf.cell(12, 3.5, f"{tick}%", align="C")
    pdf.set_xy(x0, y + 2.5)
    pdf.cell(chart_w, 4, "share of client turns (green: judged more empathic, grey: tie, red: base preferred; "
             "line: 95% interval of the green share)", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)


def render_pdf(document: dict[str, Any]) -> bytes:
    """The report as a PDF (fpdf2: pure Python, core fonts, no system libraries)."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_title(_latin1(f"Validation report: {document['job']['name']}"))
    pdf.add_page()
    w = pdf.epw

    def heading(text, size=13):
        pdf.ln(2)
        pdf.set_font("Helvetica", "B", size)
        pdf.multi_cell(w, 7, _latin1(text), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 9)

    def para(text, size=9, style=""):
        pdf.set_font("Helvetica", style, size)
        pdf.multi_cell(w, 4.6, _latin1(text), new_x="LMARGIN", new_y="NEXT")

    job = document["job"]
    heading(f"Validation report - {job['name']}", 16)
    para(f"Job {job['id']} - base model {job['base_model']} - dataset {job['dataset']}"
         f"{' - client ' + job['client'] if job['client'] else ''}")
    if job.get("validation_data"):
        para(f"Validation data: {job['validation_data']}")
    para(f"Run {document['run']['id']} ({document['run']['trigger']}), finished {document['run']['finished_at']}")
    heading(f"Verdict: {document['verdict'].get('label')}")
    para(document.get("headline", ""), 10, "B")
    bars = primary_chart_bars(document)
    if bars:
        _pdf_primary_chart(pdf, bars, w, _latin1)
    para(document["summary"])
    if document.get("gates") or document.get("controls"):
        heading("Gates and controls")
        para("A gate passes only when its 95% interval clears the bar with enough evidence; it is 'not valid' when "
             "the dataset's own replies fail it or a useless control (one canned reply, replies shuffled across "
             "clients, word salad) passes it.", 8)
        gcols = (0.22, 0.16, 0.16, 0.22, 0.08, 0.16)
        pdf.set_font("Helvetica", "B", 8)
        for title, c in zip(("Gate", "Replies", "Verdict", "Value [95% CI]", "n", ""), gcols):
            pdf.cell(w * c, 5, title, border="B")
        pdf.ln()
        pdf.set_font("Helvetica", "", 8)
        for g in list(document.get("gates") or []) + list(document.get("controls") or []):
            for text, c in zip((g["name"], g["who"], g["verdict_label"], f"{g['value_text']} {g['ci_text']}",
                                str(g["n"]), ""), gcols):
                pdf.cell(w * c, 5, _latin1(text)[:40])
            pdf.ln()
            if g["checks_text"]:
                para("    " + g["checks_text"], 7)

    if document.get("judge_validation"):
        heading("Can the judge be trusted here?")
        for line in document["judge_validation"]["lines"]:
            para(line, 8)

    heading("Metrics")
    cols = (0.36, 0.14, 0.22, 0.08, 0.2)
    pdf.set_font("Helvetica", "B", 8)
    for text, c in zip(("metric", "value", "95% CI", "n", "result"), cols):
        pdf.cell(w * c, 6, text, border=1)
    pdf.ln()
    pdf.set_font("Helvetica", "", 8)
    for r in document["metrics"]:
        cells = (r["name"], r["value_text"], r["ci_text"], r["n"] if r["n"] is not None else "–", r["status"])
        for text, c in zip(cells, cols):
            pdf.cell(w * c, 6, _latin1(text)[:int(c * 120)], border=1)
        pdf.ln()
        extra = []
        if not r["computed"]:
            extra.append("not computed: " + r["reason"])
        else:
            extra.append(f"base {r['base_text']}; adapted {r['adapted_text']}; relative {r['relative_text']}")
        extra += r.get("notes") or []
        pdf.set_font("Helvetica", "I", 7)
        pdf.multi_cell(w, 3.8, _latin1("   " + " | ".join(extra)), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 8)

    curve = document["training_curve"]["series"]
    for key, points in curve.items():
        if len(points) < 2:
            continue
        heading(f"Training curve: {key.replace('_', ' ')}", 11)
        x0, y_top, cw, ch = pdf.l_margin, pdf.get_y() + 2, w, 38
        if y_top + ch > pdf.h - 20:
            pdf.add_page()
            y_top = pdf.get_y() + 2
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        sx = cw / ((max(xs) - min(xs)) or 1)
        sy = ch / ((max(ys) - min(ys)) or 1)
        pdf.set_draw_color(150, 150, 150)
        pdf.rect(x0, y_top, cw, ch)
        pdf.set_draw_color(37, 99, 235)
        pdf.polyline([(x0 + (x - min(xs)) * sx, y_top + ch - (y - min(ys)) * sy) for x, y in points])
        pdf.set_draw_color(0, 0, 0)
        pdf.set_y(y_top + ch + 1)
        para(f"steps {min(xs)}-{max(xs)}; min {min(ys):.4g}, max {max(ys):.4g}", 7)

    heading("Configuration")
    config = document["configuration"]
    para(f"preset {config['preset']}; device {config.get('device')}; GPU {config['gpu_type']} ({config['provider']})")
    para("hyperparameters: " + ", ".join(f"{k}={v}" for k, v in (config["hyperparameters"] or {}).items()), 8)
    para("evaluation: " + ", ".join(f"{k}={v}" for k, v in (config.get("evaluation") or {}).items()), 8)
    judge = document["judge"]
    para(f"judge: {judge.get('kind')} - {judge.get('label', '')}", 8)
    para("thresholds: " + ", ".join(f"{k}={v}" for k, v in (document["thresholds"] or {}).items()), 8)
    cost = document["cost"]
    heading("Cost")
    para(f"${cost['cost']} (estimate ${cost['estimate']}, range ${cost['estimate_low']}-${cost['estimate_high']})"
         if cost.get("available") else cost.get("reason", "not available"))

    heading("Side-by-side examples")
    para(document["examples_rule"], 8, "I")
    if not document["examples"]:
        para("No examples: no reply was scored on both models.")
    for ex in document["examples"]:
        pdf.ln(1)
        para(f"{ex['kind'].upper()} (judged gain {ex['judged_gain']:+.3f}) - item {ex['item_id']}", 9, "B")
        for label, key in (("Client", "client_message"), ("Base", "base_reply"), ("Adapted", "adapted_reply"),
                           ("Reference", "reference")):
            para(f"{label}: {(ex.get(key) or '')[:1200]}", 8)

    heading("Limitations")
    for item in document["limitations"]:
        para("- " + item, 8)
    if document.get("errors"):
        heading("Errors")
        for e in document["errors"]:
            para(e, 8)
    return bytes(pdf.output())
