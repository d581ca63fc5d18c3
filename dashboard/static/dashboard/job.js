/* Job page: draws the snapshot, then applies live messages from /ws/jobs/<id>/. */
(function () {
  "use strict";
  const jobId = document.getElementById("job-script").dataset.job;
  const $ = (id) => document.getElementById(id);
  const STAGES = Array.from(document.querySelectorAll("#stages li")).map((li) => li.dataset.stage);
  const TERMINAL = ["completed", "failed", "cancelled"];
  const series = {loss: new Map(), valid_loss: new Map(), learning_rate: new Map()};
  const charts = {};
  let status = null;

  const fmt = (v) => (v === null || v === undefined ? "--" : Math.abs(v) < 1e-2 && v !== 0 ? v.toExponential(1) : +v.toFixed(4));
  // One chart per element; `lines` are [series key, label, colour]. The loss chart carries the
  // validation loss too (measured every few steps: drawn as points joined across the gaps).
  const CHARTS = {
    loss: {el: "chart-loss", lines: [["loss", "train loss", "#c2410c"], ["valid_loss", "validation loss", "#047857"]]},
    learning_rate: {el: "chart-lr", lines: [["learning_rate", "learning rate", "#2563eb"]]},
  };
  const chartOf = {loss: "loss", valid_loss: "loss", learning_rate: "learning_rate"};
  function makeChart(el, lines) {
    const width = Math.max(280, el.clientWidth || 480);
    return new uPlot({
      width, height: 240,
      scales: {x: {time: false}},
      axes: [{label: "step"}, {size: 70, values: (u, vals) => vals.map(fmt)}],
      series: [{label: "step"}, ...lines.map(([key, label, stroke]) => ({
        label, stroke, width: 2, spanGaps: true, points: {show: key === "valid_loss"}, value: (u, v) => fmt(v),
      }))],
    }, [[], ...lines.map(() => [])], el);
  }
  for (const [name, c] of Object.entries(CHARTS)) charts[name] = makeChart($(c.el), c.lines);

  function redraw(key) {
    const name = chartOf[key];
    const keys = CHARTS[name].lines.map((l) => l[0]);
    const stepSet = new Set();
    keys.forEach((k) => series[k].forEach((v, s) => stepSet.add(s)));
    const steps = Array.from(stepSet).sort((a, b) => a - b);
    charts[name].setData([steps, ...keys.map((k) => steps.map((s) => (series[k].has(s) ? series[k].get(s) : null)))]);
    const el = $(CHARTS[name].el);
    el.dataset.points = String(series[keys[0]].size);
    el.dataset.lastStep = steps.length ? String(steps[steps.length - 1]) : "";
    if (name === "loss") el.dataset.validPoints = String(series.valid_loss.size);
  }

  function setProgress(p) {
    if (p.status) setStatus(p.status);
    if (p.stage) setStage(p.stage);
    const total = p.total_steps || 0, step = p.step || 0;
    if (total) $("job-step").textContent = `step ${step} / ${total}`;
    const progress = p.progress !== undefined ? p.progress : (total ? step / total : 0);
    $("job-progress").style.width = `${Math.round(Math.min(1, progress) * 100)}%`;
    if (p.loss !== undefined && p.loss !== null) $("job-loss").textContent = BR.num(p.loss);
    if (p.tokens_per_s) $("job-tps").textContent = BR.num(p.tokens_per_s, 0);
    if (p.eta_s !== undefined) $("job-eta").textContent = TERMINAL.includes(status) ? "–" : BR.duration(p.eta_s);
  }

  function setStatus(s) {
    status = s;
    const el = $("job-status");
    el.textContent = (s.charAt(0).toUpperCase() + s.slice(1)).replace(/_/g, " ");
    el.className = `status status-${s}`;
    const terminal = TERMINAL.includes(s);
    for (const id of ["btn-stop", "btn-cancel"]) if ($(id)) $(id).hidden = terminal;
    if ($("btn-retry")) $("btn-retry").hidden = !terminal;
    if (s === "completed") $("job-progress").style.width = "100%";
    if (terminal) $("job-eta").textContent = "–";
    if (STAGES.includes(s)) setStage(s);
    else if (s === "failed" || s === "cancelled") setStage(null);
    if (s === "completed") document.querySelectorAll("#stages li").forEach((li) => { if (!/done/.test(li.className)) li.className = "done"; });
  }

  let stageAt = STAGES.findIndex((s, i) => /current|failed|cancelled/.test(document.querySelectorAll("#stages li")[i].className));
  // The strip is exact for final states too: a failed or cancelled job keeps the stage it ended in
  // marked so (the server drew it first; live messages only move a running job along).
  function setStage(stage) {
    const index = STAGES.indexOf(stage);
    if (index >= 0) stageAt = index;
    if (status === "completed") return;
    const mark = status === "failed" || status === "cancelled" ? status : "current";
    document.querySelectorAll("#stages li").forEach((li, i) => {
      li.className = i < stageAt ? "done" : i === stageAt ? mark : "";
    });
  }

  function setCost(cost) {
    if (!cost) return;
    const rate = Number(cost.rate_per_hour) > 0 ? ` ($${Number(cost.rate_per_hour).toFixed(2)}/h)` : "";
    const estimate = cost.estimate ? ` of ~$${cost.estimate.point}` : "";
    $("job-cost").textContent = `$${cost.spent}${estimate}${rate}`;
  }

  function addEvent(e) {
    const li = document.createElement("li");
    const when = (e.created_at || new Date().toISOString()).slice(11, 19);
    const text = e.type === "transition" ? `${e.from_status || "·"} → ${e.to_status} ${e.message || ""}`
      : `${e.type}${e.message ? ": " + e.message : ""}`;
    li.innerHTML = `<span class="muted"></span> `;
    li.firstChild.textContent = when;
    li.appendChild(document.createTextNode(text));
    if (e.level === "error" || e.to_status === "failed") li.className = "bad";
    $("events").appendChild(li);
    while ($("events").children.length > 200) $("events").removeChild($("events").firstChild);
    $("events").scrollTop = $("events").scrollHeight;
  }

  // Rows are updated in place: a reconnect's snapshot must not close a file list the user opened.
  function setCheckpoints(rows) {
    const steps = new Set(rows.map((c) => String(c.step)));
    document.querySelectorAll("#checkpoints tr").forEach((tr) => { if (!steps.has(tr.dataset.step)) tr.remove(); });
    rows.forEach(addCheckpoint);
  }
  function addCheckpoint(c) {
    let tr = document.querySelector(`#checkpoints tr[data-step="${c.step}"]`);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.step = c.step;
      tr.innerHTML = "<td></td><td></td><td class='muted'></td>";
      $("checkpoints").appendChild(tr);
    }
    tr.children[0].textContent = c.step;
    tr.children[1].textContent = c.bytes ? BR.bytes(c.bytes) : "–";
    if (!tr.children[2].querySelector("a")) tr.children[2].textContent = c.name || `step-${c.step}`;
    linkCheckpoint(tr);
  }
  // Stored checkpoints (artifacts of kind "checkpoint", keyed by step) become download links; the
  // storage URI is never shown: links are minted per click after the artifacts app's permission check.
  const checkpointArtifacts = new Map();
  function linkCheckpoint(tr) {
    const artifact = checkpointArtifacts.get(Number(tr.dataset.step));
    if (!artifact || tr.querySelector("a")) return;
    const cell = tr.children[2];
    const a = document.createElement("a");
    a.href = `/api/v1/artifacts/${artifact.id}/download/`;
    a.textContent = `Download ${cell.textContent}`;
    a.addEventListener("click", (e) => { e.preventDefault(); download(artifact.id, cell); });
    cell.textContent = "";
    cell.appendChild(a);
  }

  function addPoints(points) {
    const touched = new Set();
    for (const p of points) {
      for (const key of Object.keys(series)) {
        if (p[key] !== undefined && p[key] !== null) { series[key].set(p.step, p[key]); touched.add(key); }
      }
    }
    touched.forEach(redraw);
  }

  function applySnapshot(snap) {
    for (const key of Object.keys(series)) {
      series[key].clear();
      for (const [step, value] of (snap.metrics.series[key] || [])) series[key].set(step, value);
      redraw(key);
    }
    setStatus(snap.job.status);
    setProgress(snap.job);
    setCost(snap.cost);
    $("events").innerHTML = "";
    snap.events.forEach(addEvent);
    setCheckpoints(snap.checkpoints);
    if (snap.job.error) showError(snap.job.error);
  }

  function showError(err) {
    $("job-error").hidden = false;
    $("error-class").textContent = err.class || err.error_class || "";
    $("error-message").textContent = err.message || "";
    $("error-suggestion").textContent = err.suggestion || "–";
    if ($("btn-retry-fix")) $("btn-retry-fix").hidden = !(err.fix && Object.keys(err.fix).length);
  }

  async function refreshJob() {
    try {
      const job = await BR.api("GET", `/api/v1/jobs/${jobId}/`);
      if (job.error_class) showError({class: job.error_class, message: job.error_message, suggestion: job.error_suggestion, fix: job.error_fix});
      loadDownloads();
    } catch (e) { /* the socket keeps the page live; this is only the error panel */ }
  }

  function onMessage(m) {
    switch (m.kind) {
      case "snapshot": applySnapshot(m); break;
      case "metrics": addPoints(m.points || []); if (m.progress) setProgress(m.progress); break;
      case "progress": setProgress(m); break;
      case "status":
        setStatus(m.status);
        addEvent({type: "transition", from_status: m.from, to_status: m.status, message: m.reason});
        if (TERMINAL.includes(m.status)) refreshJob();
        break;
      case "stage": setStage(m.stage); break;
      case "checkpoint": addCheckpoint(m); addEvent({type: "checkpoint", message: `step ${m.step}`}); break;
      case "log": addEvent({type: "log", message: m.message, level: m.level}); break;
      case "cost": setCost(m.cost); break;
      default: break;
    }
  }

  /* Files come from the artifacts app: its list, then short-lived links after its permission check. */
  async function loadDownloads() {
    const ul = $("downloads");
    let rows;
    try {
      const body = await BR.api("GET", `/api/v1/artifacts/?job=${jobId}`);
      rows = body.results || body;
    } catch (e) { ul.innerHTML = "<li>Downloads are not available on this server.</li>"; return; }
    ul.innerHTML = "";
    if (!rows.length) { ul.innerHTML = "<li>No files yet.</li>"; return; }
    checkpointArtifacts.clear();
    for (const r of rows) {
      if (r.kind === "checkpoint") {
        if (!r.pruned_at) checkpointArtifacts.set(Number((r.metadata || {}).step), r);
        continue;
      }
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = `/api/v1/artifacts/${r.id}/download/`;
      a.textContent = `${KIND_LABELS[r.kind] || r.kind}${r.name ? ": " + r.name : ""}${r.version ? " v" + r.version : ""}`;
      a.addEventListener("click", (e) => { e.preventDefault(); download(r.id, li); });
      li.appendChild(a);
      if (r.bytes) li.appendChild(document.createTextNode(` (${BR.bytes(r.bytes)})`));
      ul.appendChild(li);
    }
    if (!ul.children.length) ul.innerHTML = "<li>Only checkpoints so far (linked above).</li>";
    document.querySelectorAll("#checkpoints tr").forEach(linkCheckpoint);
  }
  const KIND_LABELS = {adapter: "LoRA adapter", tokenizer: "Tokenizer", metrics: "Metrics", report: "Validation report",
    package: "Deployment package", merged: "Merged model"};
  async function download(artifactId, li) {
    try {
      const links = await BR.api("GET", `/api/v1/artifacts/${artifactId}/download/`);
      if (links.url) { location.href = links.url; return; }
      const stale = li.querySelector("ul.files");
      if (stale) stale.remove();
      const list = document.createElement("ul");
      list.className = "files";
      for (const f of links.files || []) {
        const a = document.createElement("a");
        a.href = f.url; a.textContent = f.path;
        a.setAttribute("download", f.path.replace(/\//g, "_"));
        const item = document.createElement("li"); item.appendChild(a); list.appendChild(item);
      }
      li.appendChild(list);
    } catch (e) { message(e.message, true); }
  }

  function message(text, bad) {
    const el = $("action-message");
    el.hidden = false; el.textContent = text; el.className = bad ? "notice error" : "notice";
  }
  async function act(label, method, url, body, after) {
    try {
      const result = await BR.api(method, url, body);
      message(label);
      if (after) after(result);
    } catch (e) { message(e.message, true); }
  }
  const bind = (id, fn) => { if ($(id)) $(id).addEventListener("click", fn); };
  bind("btn-cancel", () => { if (confirm("Cancel this job? The pod is terminated now.")) act("Cancelled.", "POST", `/api/v1/jobs/${jobId}/cancel/`); });
  bind("btn-stop", () => act("Stopping at the next step; the last checkpoint's adapter is kept.", "POST", `/api/v1/jobs/${jobId}/stop/`));
  bind("btn-retry", () => act("Retry started.", "POST", `/api/v1/jobs/${jobId}/retry/`, {}, (j) => { location.href = `/jobs/${j.id}/`; }));
  bind("btn-retry-fix", () => act("Retry with the fix started.", "POST", `/api/v1/jobs/${jobId}/retry/`, {apply_fix: true}, (j) => { location.href = `/jobs/${j.id}/`; }));
  bind("btn-notes", () => act("Notes saved.", "PATCH", `/api/v1/jobs/${jobId}/`, {notes: $("notes").value}));

  applySnapshot(JSON.parse(document.getElementById("job-snapshot").textContent));
  loadDownloads();
  window.jobPage = {series, socket: BR.liveSocket(`/ws/jobs/${jobId}/`, onMessage, (s) => { document.body.dataset.socket = s; })};
})();
