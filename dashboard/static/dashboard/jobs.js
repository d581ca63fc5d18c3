/* Jobs list: status, progress and cost of each row, live from /ws/jobs/. */
(function () {
  "use strict";
  const TERMINAL = ["completed", "failed", "cancelled"];
  function row(id) { return document.querySelector(`#jobs-table tr[data-job="${id}"]`); }
  function field(tr, name) { return tr.querySelector(`[data-field="${name}"]`); }
  function apply(m) {
    const tr = row(m.job_id || m.id);
    if (!tr) return;
    if (m.status) { const s = field(tr, "status"); s.textContent = m.status; s.className = `status status-${m.status}`; }
    if (m.total_steps) {
      field(tr, "step").textContent = `${m.step}/${m.total_steps}`;
      field(tr, "progress").style.width = `${Math.round(Math.min(1, m.step / m.total_steps) * 100)}%`;
    }
    if (m.status === "completed") field(tr, "progress").style.width = "100%";
    if (m.loss !== undefined && m.loss !== null) field(tr, "loss").textContent = BR.num(m.loss);
    if (m.cost) field(tr, "cost").textContent = `$${typeof m.cost === "object" ? m.cost.spent : m.cost}`;
  }
  BR.liveSocket("/ws/jobs/", (m) => {
    if (m.kind === "snapshot") m.jobs.forEach(apply);
    else if (m.kind === "status" && !row(m.job_id) && !TERMINAL.includes(m.status)) location.reload();
    else apply(m);
  }, (s) => { document.body.dataset.socket = s; });
})();
