"""Building the deployment zip from plain inputs (no Django, no torch).

Layout of `<name>.zip` (everything under one folder `<name>/`):

    adapter/      adapter_model.safetensors, adapter_config.json
    tokenizer/    tokenizer.json, tokenizer_config.json, chat template, ...
    inference.py  transformers + peft, optional 4-bit, chat template, command-line prompt
    README.md     quick start and vLLM LoRA serving
    MODEL_CARD.md base model, dataset, hyperparameters, training curve, validation, intended use
    requirements.txt  pinned versions inference.py was tested with
    SHA256SUMS    `sha256sum -c` format, every other file

Entries carry a fixed timestamp, so the same inputs give the same zip, byte for byte.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"
ZIP_DATE = (2024, 1, 1, 0, 0, 0)
CHECKSUMS = "SHA256SUMS"

# The versions inference.py is tested with (tests/artifacts run it with exactly these; a test
# fails when the environment's versions drift from this table, so update both together).
PINNED_REQUIREMENTS = {
    "torch": "2.13.0",
    "transformers": "5.24.0",
    "peft": "0.21.2",
    "accelerate": "1.16.0",
    "safetensors": "0.8.0",
    "tokenizers": "0.23.3",
    "jinja2": "3.1.6",
    "bitsandbytes": "0.50.2",
}
REQUIREMENT_MARKERS = {"bitsandbytes": 'platform_system == "Linux"'}

DEFAULT_SYSTEM_PROMPT = ""

INTENDED_USE = """\
- **Intended use**: generating replies in the style and with the emotional attunement of the
  training conversations, for the client named above, inside a product where a person reviews or
  can take over the conversation.
- **Out of scope**: medical, legal, financial or crisis advice; diagnosing anyone; any use where
  a reply is acted on without a person able to intervene; languages and domains absent from the
  training data.
- **Limitations**: a LoRA adapter inherits the base model's knowledge, biases and failure modes.
  The training set is small (see the dataset section): the adapter imitates its conversations and
  can be confidently wrong outside them. Perplexity measures fit to held-out conversations from
  the same source, not helpfulness or safety. Evaluate on your own traffic before relying on it,
  and keep a way for users to reach a person."""


@dataclass
class PackageInputs:
    name: str
    base_model: str
    adapter_dir: Path                 # local folder holding the adapter files
    adapter_files: list[str]
    tokenizer_dir: Path               # local folder holding the tokenizer files
    tokenizer_files: list[str]
    job: dict[str, Any] = field(default_factory=dict)        # id, client, organization, status, dates, gpu, ...
    dataset: dict[str, Any] = field(default_factory=dict)    # name, format, counts, tokens, sha256, stats
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)  # [{step, loss, learning_rate, ...}]
    eval: dict[str, Any] | None = None     # the pod's perplexities (job.result["eval"])
    report: dict[str, Any] | None = None   # a validation report, when one exists
    version: int | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT


@dataclass(frozen=True)
class PackageResult:
    path: Path
    bytes: int
    sha256: str
    checksums: dict[str, str]   # path inside the zip -> sha256
    seconds: float


def slugify(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")[:80] or "adapter"


def requirements_txt() -> str:
    lines = ["# Pinned: the versions inference.py was tested with (Bright Run deployment package)."]
    for name, version in PINNED_REQUIREMENTS.items():
        marker = REQUIREMENT_MARKERS.get(name)
        lines.append(f"{name}=={version}" + (f"; {marker}" if marker else ""))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- training curve

def _num(value) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def curve_summary(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Loss at the start, quarter marks and end, the minimum, and the mean of the first and last
    tenth of the steps (a noisy curve's honest trend)."""
    rows = sorted((p for p in points if _num(p.get("loss")) is not None), key=lambda p: int(p["step"]))
    if not rows:
        return {"steps": 0}
    losses = [float(p["loss"]) for p in rows]
    n = len(rows)
    tenth = max(1, n // 10)
    marks = {}
    for label, frac in (("0%", 0.0), ("25%", 0.25), ("50%", 0.5), ("75%", 0.75), ("100%", 1.0)):
        p = rows[min(n - 1, round(frac * (n - 1)))]
        marks[label] = {"step": int(p["step"]), "loss": round(float(p["loss"]), 4)}
    best = min(range(n), key=losses.__getitem__)
    first_mean, last_mean = sum(losses[:tenth]) / tenth, sum(losses[-tenth:]) / tenth
    tps = [v for v in (_num(p.get("tokens_per_s")) for p in rows) if v]
    return {
        "steps": n,
        "first_step": int(rows[0]["step"]),
        "last_step": int(rows[-1]["step"]),
        "marks": marks,
        "min_loss": round(losses[best], 4),
        "min_loss_step": int(rows[best]["step"]),
        "first_tenth_mean": round(first_mean, 4),
        "last_tenth_mean": round(last_mean, 4),
        "relative_change": round((last_mean - first_mean) / first_mean, 4) if first_mean else None,
        "tokens_per_s_mean": round(sum(tps) / len(tps), 1) if tps else None,
        "sparkline": _sparkline(losses),
    }


def _sparkline(values: list[float], width: int = 40) -> str:
    if not values:
        return ""
    if len(values) > width:  # mean of equal buckets
        step = len(values) / width
        values = [sum(values[int(i * step):max(int(i * step) + 1, int((i + 1) * step))])
                  / max(1, int((i + 1) * step) - int(i * step)) for i in range(width)]
    lo, hi = min(values), max(values)
    bars = "▁▂▃▄▅▆▇█"
    return "".join(bars[0 if hi == lo else min(7, int((v - lo) / (hi - lo) * 7.999))] for v in values)


# ----------------------------------------------------------------------------- model card

def _fmt(value, digits: int = 4) -> str:
    f = _num(value)
    if f is None:
        return "—" if value in (None, "") else str(value)
    if float(f).is_integer() and abs(f) < 1e15:
        return f"{int(f):,}"
    return f"{f:.{digits}g}"


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(out)


def _report_section(report: dict[str, Any]) -> str:
    """Validation report from the validation app. Known shape: {summary, metrics: [{name, value,
    ci_low, ci_high, n, confidence}]}; anything else is shown as JSON."""
    parts = []
    if report.get("summary"):
        parts.append(str(report["summary"]))
    metrics = report.get("metrics")
    if isinstance(metrics, dict):  # {name: {value, ci_low, ci_high, n}} works too
        metrics = [{"name": k, **(v if isinstance(v, dict) else {"value": v})} for k, v in metrics.items()]
    if isinstance(metrics, list) and metrics:
        rows = []
        for m in metrics:
            lo, hi = m.get("ci_low"), m.get("ci_high")
            interval = f"[{_fmt(lo)}, {_fmt(hi)}]" if lo is not None and hi is not None else "—"
            conf = m.get("confidence")
            rows.append([m.get("name", "?"), _fmt(m.get("value")), interval,
                         f"{round(float(conf) * 100)}%" if _num(conf) else "95%" if lo is not None else "—",
                         _fmt(m.get("n"))])
        parts.append(_table(["metric", "value", "interval", "level", "n"], rows))
    shown = {"summary", "metrics"}
    rest = {k: v for k, v in report.items() if k not in shown}
    if rest:
        parts.append("<details><summary>full report</summary>\n\n```json\n"
                     + json.dumps(rest, indent=1, default=str)[:20000] + "\n```\n</details>")
    return "\n\n".join(parts)


def render_model_card(inputs: PackageInputs) -> str:
    job, ds, hp = inputs.job, inputs.dataset, inputs.hyperparameters
    lines = [
        f"# Model card: {inputs.name}",
        "",
        f"LoRA adapter for **{inputs.base_model}**"
        + (f", version {inputs.version}" if inputs.version else "")
        + (f", for {job['client']}" if job.get("client") else "") + ".",
        "",
        "## Model",
        "",
        _table(["", ""], [
            ["base model", f"`{inputs.base_model}`"],
            ["method", f"LoRA (r={hp.get('lora_r', '?')}, alpha={hp.get('lora_alpha', '?')}) "
                       + ("on 4-bit NF4 base weights (QLoRA)" if job.get("quantized_4bit") else "on full-precision base weights")],
            ["adapter version", inputs.version or "—"],
            ["training job", f"`{job.get('id', '?')}`"],
            ["organization", job.get("organization", "—")],
            ["trained", f"{job.get('finished_at', '—')} on {job.get('gpu_type', '—')} ({job.get('provider', '—')})"],
            ["stopped early", "yes" if job.get("stopped_early") else "no"],
        ]),
        "",
        "## Dataset",
        "",
    ]
    if ds:
        tokens = ds.get("tokens") or {}
        lines += [_table(["", ""], [
            ["name", ds.get("name", "—")],
            ["format", ds.get("format", "—")],
            ["conversations", f"{_fmt(ds.get('conversations'))} ({_fmt(ds.get('train_conversations'))} train, "
                              f"{_fmt(ds.get('val_conversations'))} validation, split by conversation)"],
            ["training pairs", _fmt(ds.get("pairs"))],
            ["trainable assistant turns", _fmt(ds.get("trainable_turns"))],
            ["tokens per epoch", f"{_fmt(tokens.get('per_epoch'))} ({tokens.get('method', 'estimate')})"],
            ["file SHA-256", f"`{ds.get('sha256', '—')}`"],
        ])]
        dists = ds.get("distributions") or {}
        for key in ("persona", "emotional_arc", "topic"):
            if dists.get(key):
                top = sorted(dists[key].items(), key=lambda kv: -kv[1])[:8]
                lines += ["", f"- {key.replace('_', ' ')}: " + ", ".join(f"{k} ({v})" for k, v in top)]
    else:
        lines.append("No dataset details recorded.")
    lines += ["", "## Hyperparameters", ""]
    lines.append(_table(["name", "value"], [[k, f"`{v}`" if isinstance(v, (list, tuple)) else _fmt(v, 6)]
                                           for k, v in sorted(hp.items())]) if hp else "—")
    lines += ["", "## Training curve", ""]
    curve = curve_summary(inputs.curve)
    if curve["steps"]:
        lines += [
            f"{curve['steps']} logged steps (step {curve['first_step']} to {curve['last_step']}). Loss: "
            f"`{curve['sparkline']}`",
            "",
            _table(["point", "step", "loss"], [[k, v["step"], v["loss"]] for k, v in curve["marks"].items()]),
            "",
            f"- lowest loss {curve['min_loss']} at step {curve['min_loss_step']}",
            f"- mean loss of the first tenth of steps {curve['first_tenth_mean']}, of the last tenth "
            f"{curve['last_tenth_mean']} (change {_fmt((curve['relative_change'] or 0) * 100, 3)}%)",
        ]
        if curve.get("tokens_per_s_mean"):
            lines.append(f"- throughput {curve['tokens_per_s_mean']} tokens/s on average")
    else:
        lines.append("No training metrics were recorded.")
    lines += ["", "## Validation", ""]
    ev = inputs.eval or {}
    if _num(ev.get("base_perplexity")) is not None:
        change = _num(ev.get("relative_change"))
        lines += [
            "Perplexity on the held-out validation conversations (assistant tokens only; lower is better):",
            "",
            _table(["model", "perplexity"], [["base model", _fmt(ev.get("base_perplexity"))],
                                              ["with this adapter", _fmt(ev.get("adapted_perplexity"))]]),
            "",
            f"Relative change: {_fmt(change * 100, 3)}% over {_fmt(ev.get('tokens'))} tokens."
            if change is not None else "",
        ]
    else:
        lines.append("Perplexity was not measured (no validation split).")
    if inputs.report:
        lines += ["", "### Validation report", "", _report_section(inputs.report)]
    else:
        lines += ["", "No validation report was attached when this package was built; intervals for "
                      "rubric scores appear here once one exists (rebuild the package)."]
    lines += ["", "## Intended use and limitations", "", INTENDED_USE, ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the zip

def _render(template: str, **values) -> str:
    return Template((TEMPLATES / template).read_text(encoding="utf-8")).substitute(**values)


def _lora_rank_ceiling(rank: int) -> int:
    for allowed in (8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= allowed:
            return allowed
    return rank


def build_package(inputs: PackageInputs, dest_dir: Path) -> PackageResult:
    """Write `<dest_dir>/<name>.zip`. Raises FileNotFoundError when an input file is missing."""
    started = time.perf_counter()
    root = slugify(inputs.name)
    hp = inputs.hyperparameters
    adapter_config = json.loads((Path(inputs.adapter_dir) / "adapter_config.json").read_text())
    rank = int(adapter_config.get("r") or hp.get("lora_r") or 16)
    values = {
        "title": inputs.name,
        "base_model": inputs.base_model,
        "job_id": inputs.job.get("id", ""),
        "version": inputs.version or "—",
        "adapter_name": root,
        "lora_r": rank,
        "max_lora_rank": _lora_rank_ceiling(rank),
        "max_model_len": int(hp.get("max_seq_len") or 4096),
        "base_model_literal": repr(inputs.base_model),
        "system_prompt_literal": repr(inputs.system_prompt),
    }
    texts = {
        "inference.py": _render("inference.py.txt", **values),
        "README.md": _render("README.md", **values),
        "MODEL_CARD.md": render_model_card(inputs),
        "requirements.txt": requirements_txt(),
    }
    members: list[tuple[str, Path | bytes]] = []
    members += [(f"adapter/{f}", Path(inputs.adapter_dir) / f) for f in sorted(inputs.adapter_files)]
    members += [(f"tokenizer/{f}", Path(inputs.tokenizer_dir) / f) for f in sorted(inputs.tokenizer_files)]
    members += [(name, text.encode()) for name, text in texts.items()]

    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"{root}.zip"
    checksums: dict[str, str] = {}
    with zipfile.ZipFile(path, "w") as zf:
        for arc, src in members:
            digest = hashlib.sha256()
            info = zipfile.ZipInfo(f"{root}/{arc}", date_time=ZIP_DATE)
            info.external_attr = (0o755 if arc == "inference.py" else 0o644) << 16
            # Weights barely compress; storing them saves minutes on a multi-GB adapter.
            info.compress_type = zipfile.ZIP_STORED if arc.endswith((".safetensors", ".bin")) else zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as out:
                if isinstance(src, bytes):
                    digest.update(src)
                    out.write(src)
                else:
                    with open(src, "rb") as fh:
                        for block in iter(lambda: fh.read(1 << 20), b""):
                            digest.update(block)
                            out.write(block)
            checksums[arc] = digest.hexdigest()
        listing = "".join(f"{sha}  {arc}\n" for arc, sha in sorted(checksums.items()))
        info = zipfile.ZipInfo(f"{root}/{CHECKSUMS}", date_time=ZIP_DATE)
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, listing)
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return PackageResult(path=path, bytes=path.stat().st_size, sha256=sha.hexdigest(), checksums=checksums,
                         seconds=round(time.perf_counter() - started, 3))
