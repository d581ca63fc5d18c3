/* New job: the preset's explanation, the live estimate (POST /api/v1/estimates/ as fields change)
 * and the start (POST /api/v1/jobs/), showing the reason when it is refused. */
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const presets = Object.fromEntries(JSON.parse($("presets-data").textContent).map((p) => [p.name, p]));
  const templates = Object.fromEntries(JSON.parse($("templates-data").textContent).map((t) => [String(t.id), t]));

  function showPreset() {
    const p = presets[$("f-preset").value];
    $("preset-explanation").textContent = p ? p.when_to_choose : "";
    $("preset-values").innerHTML = "";
    if (!p) return;
    for (const [k, v] of Object.entries(p.hyperparameters)) {
      const tr = document.createElement("tr");
      tr.innerHTML = "<th></th><td></td>";
      tr.children[0].textContent = k; tr.children[1].textContent = v;
      $("preset-values").appendChild(tr);
    }
  }
  function overrides() {
    const text = $("f-overrides").value.trim();
    $("overrides-error").hidden = true;
    if (!text) return {};
    try { return JSON.parse(text); } catch (e) {
      $("overrides-error").hidden = false;
      $("overrides-error").textContent = "Overrides must be a JSON object, e.g. {\"num_epochs\": 1}";
      return null;
    }
  }
  function body() {
    const o = overrides();
    if (o === null) return null;
    const b = {dataset: $("f-dataset").value, preset: $("f-preset").value, overrides: o,
      gpu_type: $("f-gpu").value, cloud_type: $("f-cloud").value,
      spot: document.querySelector("input[name=spot]:checked").value === "true",
      client: $("f-client").value, name: $("f-name").value};
    if ($("f-base-model").value) b.base_model = $("f-base-model").value;
    return b;
  }
  let timer = null;
  function scheduleEstimate() { clearTimeout(timer); timer = setTimeout(estimate, 300); }
  async function estimate() {
    const b = body();
    if (!b || !b.dataset) return;
    try {
      const e = await BR.api("POST", "/api/v1/estimates/", b);
      const warn = (e.warnings || []).length ? ` · ${e.warnings.join("; ")}` : "";
      $("estimate").className = "estimate";
      $("estimate").textContent = `$${e.cost.point} (between $${e.cost.low} and $${e.cost.high}), ` +
        `${BR.duration(e.duration_s.point)} (${BR.duration(e.duration_s.low)}–${BR.duration(e.duration_s.high)}) at $${e.rate_per_hour}/h${warn}`;
      $("estimate-accuracy").textContent = e.accuracy ? e.accuracy.text : "";
    } catch (err) {
      $("estimate").className = "estimate error";
      $("estimate").textContent = err.status === 404 ? "Estimates are not available on this server." : err.message;
    }
  }
  function applyTemplate() {
    const t = templates[$("f-template").value];
    if (!t) return;
    $("f-preset").value = t.preset;
    $("f-overrides").value = Object.keys(t.overrides || {}).length ? JSON.stringify(t.overrides) : "";
    if (t.base_model) $("f-base-model").value = t.base_model;
    if (t.gpu_type) $("f-gpu").value = t.gpu_type;
    $("f-cloud").value = t.cloud_type;
    document.querySelector(`input[name=spot][value="${t.spot}"]`).checked = true;
    showPreset(); scheduleEstimate();
  }
  $("job-form").addEventListener("input", scheduleEstimate);
  $("f-preset").addEventListener("change", showPreset);
  if ($("f-template")) $("f-template").addEventListener("change", applyTemplate);
  $("job-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const b = body();
    if (!b) return;
    $("refusal").hidden = true;
    $("btn-start").disabled = true;
    try {
      const job = await BR.api("POST", "/api/v1/jobs/", b);
      location.href = `/jobs/${job.id}/`;
    } catch (err) {
      $("refusal").hidden = false;
      let text = err.message;
      const alts = err.error && err.error.detail && err.error.detail.alternatives;
      if (alts && alts.length) text += " Options: " + alts.map((a) => a.description || a.message || JSON.stringify(a)).join("; ");
      $("refusal").textContent = text;
    } finally { $("btn-start").disabled = false; }
  });
  showPreset(); scheduleEstimate();
})();
