// The job page's speed-over-time chart, drawn with the vendored uPlot (static/vendor/uplot, loaded as
// a global before this module): the worker's samples (JobSample, in #job-samples) on load, then one
// point per ~2 s from the job's live progress messages.
const EVERY_S = 2;
const MAX_POINTS = 5000;
const holder = document.getElementById("job-chart");
const empty = document.getElementById("job-chart-empty");
const samples = JSON.parse(document.getElementById("job-samples").textContent);
const xs = samples.map((s) => s[0]); // [epoch seconds, bytes per second]
const ys = samples.map((s) => s[1]);
let chart = null;

function units(bytes) {
  const names = ["B/s", "KB/s", "MB/s", "GB/s"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < names.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(value < 10 && unit ? 1 : 0)} ${names[unit]}`;
}

function draw() {
  if (typeof uPlot === "undefined" || xs.length === 0) return;
  empty.hidden = true;
  if (chart) { chart.setData([xs, ys]); return; }
  chart = new uPlot({
    width: Math.max(300, holder.clientWidth - 8),
    height: 220,
    series: [{}, { label: "speed", stroke: "#1f6feb", width: 2, fill: "rgba(31,111,235,.08)", value: (u, v) => v == null ? "—" : units(v) }],
    axes: [{}, { values: (u, ticks) => ticks.map(units), size: 80 }],
    scales: { y: { range: (u, min, max) => [0, Math.max(1024, max * 1.1)] } },
  }, [xs, ys], holder);
  holder.dataset.points = String(xs.length);
}

// A live progress message (job.progress): its measurement time and speed, one point every EVERY_S.
export function addSpeed(message) {
  const at = message.figures_at ?? Date.now() / 1000;
  if (xs.length && at < xs[xs.length - 1] + EVERY_S) return;
  xs.push(at);
  ys.push(message.speed);
  if (xs.length > MAX_POINTS) { xs.splice(0, xs.length - MAX_POINTS); ys.splice(0, ys.length - MAX_POINTS); }
  draw();
  holder.dataset.points = String(xs.length);
}

draw();
