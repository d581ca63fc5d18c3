/* Compare: overlay the loss curves of the picked jobs on one step axis. */
(function () {
  "use strict";
  const data = document.getElementById("compare-data");
  if (!data) return;
  const rows = JSON.parse(data.textContent);
  const COLORS = ["#c2410c", "#2563eb", "#15803d", "#7c3aed", "#db2777", "#0891b2", "#ca8a04", "#4b5563"];
  const steps = Array.from(new Set(rows.flatMap((r) => r.loss.map((p) => p[0])))).sort((a, b) => a - b);
  const columns = rows.map((r) => { const m = new Map(r.loss); return steps.map((s) => (m.has(s) ? m.get(s) : null)); });
  const el = document.getElementById("chart-compare");
  new uPlot({
    width: Math.max(300, el.clientWidth), height: 320, scales: {x: {time: false}},
    series: [{label: "step"}, ...rows.map((r, i) => ({label: r.name, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true, points: {show: false}}))],
    axes: [{label: "step"}, {label: "loss", size: 60}],
  }, [steps, ...columns], el);
})();
