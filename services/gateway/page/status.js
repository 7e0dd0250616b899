// The gateway's live status page: polls /status.json (cumulative counters of every gateway
// worker) and charts the differences between polls over the last few minutes. No libraries.
"use strict";

const POLL_MS = 2000;
const WINDOW_S = 300;
const WIDTH = 240, HEIGHT = 60;
const SVG = "http://www.w3.org/2000/svg";
const CHARTS = [
  { key: "rate", title: "requests/s", format: (v) => v.toFixed(1) },
  { key: "errors", title: "5xx %", format: (v) => v.toFixed(1) },
  { key: "p99", title: "upstream p99 ms", format: (v) => v.toFixed(1) },
];

const cards = new Map();   // model name -> {root, canary, replicas, charts}
const series = new Map();  // model name -> [{t, rate, errors, p99}]
let previous = null;       // the last snapshot, by model name
let polls = 0;

function element(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

function sum(values) { return values.reduce((a, b) => a + b, 0); }

// Prometheus' histogram_quantile over cumulative [upper bound, count] pairs.
function quantile(q, buckets) {
  if (!buckets.length) return null;
  const total = buckets[buckets.length - 1][1];
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0, below = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Infinity) return lower;  // past the last finite bound: that bound
      return lower + (le - lower) * (rank - below) / Math.max(count - below, 1e-12);
    }
    lower = le; below = count;
  }
  return lower;
}

// One chart point from two snapshots of a model; null when the counters went back (a restart).
function point(before, after, seconds) {
  const total = (m) => sum(Object.values(m.requests));
  const failed = (m) => sum(Object.entries(m.requests).filter(([s]) => Number(s) >= 500).map(([, n]) => n));
  const requests = total(after) - total(before);
  const errors = failed(after) - failed(before);
  const old = new Map(before.latency_buckets.map(([le, n]) => [le, n]));
  const deltas = after.latency_buckets.map(([le, n]) => [le === "+Inf" ? Infinity : Number(le), n - (old.get(le) || 0)]);
  if (requests < 0 || errors < 0 || deltas.some(([, n]) => n < 0)) return null;
  const p99 = quantile(0.99, deltas);
  return { rate: requests / seconds, errors: requests > 0 ? 100 * errors / requests : 0, p99: p99 === null ? 0 : 1000 * p99 };
}

function card(name) {
  let found = cards.get(name);
  if (found) return found;
  const root = element("section", { class: "model", "data-model": name });
  root.append(element("h2", {}, name));
  const canary = element("p", { class: "canary" });
  const table = element("table", { class: "replicas" });
  const head = element("tr");
  for (const label of ["replica", "state", "default version"]) head.append(element("th", {}, label));
  const replicas = element("tbody");
  table.append(element("thead"), replicas);
  table.tHead.append(head);
  const charts = {};
  const row = element("div", { class: "charts" });
  for (const { key, title } of CHARTS) {
    const figure = element("figure", { class: "chart", "data-metric": key, "data-points": "0" });
    const caption = element("figcaption", {}, title + " ");
    const value = element("b", {}, "–");
    caption.append(value);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("width", WIDTH); svg.setAttribute("height", HEIGHT);
    svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
    const line = document.createElementNS(SVG, "polyline");
    svg.append(line);
    figure.append(caption, svg);
    row.append(figure);
    charts[key] = { figure, value, line };
  }
  root.append(canary, table, row);
  document.getElementById("models").append(root);
  found = { root, canary, replicas, charts };
  cards.set(name, found);
  return found;
}

function drawChart(chart, points, key, format, now) {
  const max = Math.max(1e-9, ...points.map((p) => p[key]));
  chart.line.setAttribute("points", points.map((p) => {
    const x = WIDTH - (now - p.t) / WINDOW_S * WIDTH;
    const y = HEIGHT - 2 - (p[key] / max) * (HEIGHT - 4);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  }).join(" "));
  const last = points.length ? points[points.length - 1][key] : null;
  chart.value.textContent = last === null ? "–" : format(last);
  chart.figure.dataset.points = String(points.length);
  chart.figure.dataset.last = last === null ? "" : String(last);
}

function render(model, now) {
  const view = card(model.name);
  const weights = model.canary ? Object.entries(model.canary).map(([v, w]) => `v${v}: ${w}`).join(", ") : "";
  view.canary.textContent = weights ? `canary weights: ${weights}` : "no canary: each replica's default version";
  view.replicas.replaceChildren(...model.replicas.map((r) => {
    const tr = element("tr", { class: "replica", "data-state": r.state });
    tr.append(element("td", {}, r.address), element("td", { class: "state-" + r.state.replace(" ", "-") }, r.state),
              element("td", {}, r.version || "–"));
    return tr;
  }));
  const points = (series.get(model.name) || []).filter((p) => now - p.t <= WINDOW_S);
  series.set(model.name, points);
  for (const { key, format } of CHARTS) drawChart(view.charts[key], points, key, format, now);
}

async function poll() {
  const status = document.getElementById("updated");
  try {
    const response = await fetch("/status.json", { cache: "no-store" });
    if (!response.ok) throw new Error(`status ${response.status}`);
    const snapshot = await response.json();
    const now = snapshot.time;
    for (const model of snapshot.models) {
      const before = previous && previous.models.get(model.name);
      if (before && now > previous.time) {
        const p = point(before, model, now - previous.time);
        if (p) {
          if (!series.has(model.name)) series.set(model.name, []);
          series.get(model.name).push({ t: now, ...p });
        }
      }
      render(model, now);
    }
    const routed = new Set(snapshot.models.map((m) => m.name));
    for (const [name, view] of cards) if (!routed.has(name)) { view.root.remove(); cards.delete(name); series.delete(name); }
    previous = { time: now, models: new Map(snapshot.models.map((m) => [m.name, m])) };
    polls += 1;
    document.body.dataset.polls = String(polls);
    status.className = "";
    status.textContent = `updated ${new Date(now * 1000).toLocaleTimeString()} · every ${POLL_MS / 1000} s · last ${WINDOW_S / 60} min`;
  } catch (error) {
    status.className = "failing";
    status.textContent = `cannot read /status.json: ${error.message}`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
