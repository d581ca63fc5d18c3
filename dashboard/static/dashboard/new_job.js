/* New job: the preset's explanation, the live estimate (POST /api/v1/estimates/ as fields change)
 * and the start (POST /api/v1/jobs/), showing the reason when it is refused. */
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const presets = Object.fromEntries(JSON.parse($("presets-data").textContent).map((p) => [p.name, p]));
  const templates = Object.fromEntries(JSON.parse($("templates-data").textContent).map((t) => [String(t.id), t]));

  const fields = Array.from(document.querySelectorAll(".hp-field"));
  // The preset's values are each field's placeholder: an empty field keeps them.
  function showPreset() {
    const p = presets[$("f-preset").value];
    $("preset-explanation").textContent = p ? p.when_to_choose : "";
    if (!p) return;
    for (const f of fields) {
      const input = $(`hp-${f.dataset.name}`), value = p.hyperparameters[f.dataset.name];
      const text = Array.isArray(value) ? value.join(", ") : String(value);
      if (input.tagName === "SELECT") input.options[0].textContent = `preset (${text})`;
      else input.placeholder = text;
    }
  }
  function fieldValue(f) {
    const raw = $(`hp-${f.dataset.name}`).value.trim();
    if (raw === "") return undefined;
    if (f.dataset.kind === "list") return raw.split(",").map((x) => x.trim()).filter(Boolean);
    if (f.dataset.kind === "int" || f.dataset.kind === "float") return Number(raw);
    return raw;
  }
  function overrides() {
    const text = $("f-overrides").value.trim();
    $("overrides-error").hidden = true;
    let o = {};
    if (text) {
      try { o = JSON.parse(text); } catch (e) { o = null; }
      if (o === null || typeof o !== "object" || Array.isArray(o)) {
        $("overrides-error").hidden = false;
        $("overrides-error").textContent = "Overrides must be a JSON object, e.g. {\"num_epochs\": 1}";
        return null;
      }
    }
    for (const f of fields) { const v = fieldValue(f); if (v !== undefined) o[f.dataset.name] = v; }
    return o;
  }
  /* The messages are the API's own (the estimate runs the same validation as a job start): each
   * sentence names its hyperparameter first, so it goes under that field; the rest go below. */
  function showConfigErrors(errors) {
    const rest = [];
    for (const f of fields) {
      $(`hp-${f.dataset.name}-error`).hidden = true;
      $(`hp-${f.dataset.name}`).removeAttribute("aria-invalid");
    }
    for (const sentence of errors) {
      const f = fields.find((x) => sentence.startsWith(x.dataset.name + " "));
      if (!f) { rest.push(sentence); continue; }
      const el = $(`hp-${f.dataset.name}-error`);
      el.hidden = false; el.textContent = sentence;
      $(`hp-${f.dataset.name}`).setAttribute("aria-invalid", "true");
      if (f.closest("#hp-advanced")) $("hp-advanced").open = true;
    }
    $("config-errors").hidden = !rest.length;
    $("config-errors").textContent = rest.join("; ");
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
      showConfigErrors([]);
    } catch (err) {
      const errors = err.error && err.error.detail && err.error.detail.errors;
      showConfigErrors(Array.isArray(errors) ? errors : []);
      $("estimate").className = "estimate error";
      $("estimate").textContent = err.status === 404 ? "Estimates are not available on this server." : err.message;
    }
  }
  function applyTemplate() {
    const t = templates[$("f-template").value];
    if (!t) return;
    $("f-preset").value = t.preset;
    const rest = {...(t.overrides || {})};
    for (const f of fields) {
      const v = rest[f.dataset.name];
      $(`hp-${f.dataset.name}`).value = v === undefined ? "" : Array.isArray(v) ? v.join(", ") : String(v);
      delete rest[f.dataset.name];
    }
    $("f-overrides").value = Object.keys(rest).length ? JSON.stringify(rest) : "";
    if (t.base_model) $("f-base-model").value = t.base_model;
    if (t.gpu_type) $("f-gpu").value = t.gpu_type;
    $("f-cloud").value = t.cloud_type;
    document.querySelector(`input[name=spot][value="${t.spot}"]`).checked = true;
    showPreset(); scheduleEstimate();
  }
  async function saveTemplate() {
    const b = body();
    const name = $("f-template-name").value.trim();
    if (!b) return;
    if (!name) { $("template-message").textContent = "Give the template a name first."; return; }
    try {
      const t = await BR.api("POST", "/api/v1/templates/", {name, preset: b.preset, overrides: b.overrides,
        base_model: b.base_model || "", gpu_type: b.gpu_type, cloud_type: b.cloud_type, spot: b.spot});
      templates[String(t.id)] = t;
      const option = document.createElement("option");
      option.value = t.id; option.textContent = t.name;
      $("f-template").appendChild(option);
      $("f-template").value = String(t.id);
      $("template-message").textContent = `Saved "${t.name}".`;
    } catch (err) { $("template-message").textContent = err.message; }
  }
  $("btn-save-template").addEventListener("click", saveTemplate);
  // Enter in the template name saves the template; it must not start a job.
  $("f-template-name").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); saveTemplate(); } });
  $("job-form").addEventListener("input", scheduleEstimate);
  $("job-form").addEventListener("change", scheduleEstimate);
  $("f-preset").addEventListener("change", showPreset);
  $("f-template").addEventListener("change", applyTemplate);
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
