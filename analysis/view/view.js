// personahub live view: polls /api/state every second and draws with plain SVG (no network,
// no library). The graph is fetched again only when the run's step or size changes.
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const KIND_COLOURS = {
  instruction: "#1f77b4", npc_dialogue: "#ff7f0e", tool_spec: "#2ca02c", conversation: "#d62728",
  math_problem: "#9467bd", reasoning_problem: "#8c564b", knowledge_text: "#e377c2", idle: "#c7c7c7",
};
const EXTRA = ["#17becf", "#bcbd22", "#7f7f7f", "#aec7e8", "#ffbb78"];
let currentRun = new URLSearchParams(location.search).get("run") || null;
let graphKey = null;
let timer = null;
const fmt = (n) => (n === null || n === undefined) ? "–" : Number(n).toLocaleString("en-US");
// calls per second with one decimal; timestamps to the second, UTC as stored ("2025-01-01 12:00:05")
const rate = (r) => (r === null || r === undefined) ? "–" : Number(r).toFixed(1);
const when = (t) => t ? String(t).replace("T", " ").replace(/\.\d+$/, "") : "–";

function el(tag, attrs, parent, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}
function title(node, text) { el("title", {}, node, text); return node; }
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
function kindColour(kind) {
  if (!(kind in KIND_COLOURS)) KIND_COLOURS[kind] = EXTRA[Object.keys(KIND_COLOURS).length % EXTRA.length];
  return KIND_COLOURS[kind];
}
function legend(div, entries) {
  clear(div);
  for (const [label, colour] of entries) {
    const span = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = colour;
    span.appendChild(swatch);
    span.appendChild(document.createTextNode(label));
    div.appendChild(span);
  }
}
async function api(path) {
  const sep = path.includes("?") ? "&" : "?";
  const url = currentRun ? `${path}${sep}run=${encodeURIComponent(currentRun)}` : path;
  const res = await fetch(url, { cache: "no-store" });
  return res.json();
}

async function loadRuns() {
  const data = await (await fetch("/api/runs", { cache: "no-store" })).json();
  const select = document.getElementById("run-select");
  const chosen = select.value;
  clear(select);
  const follow = document.createElement("option");
  follow.value = ""; follow.textContent = data.default ? `this run (${data.default})` : "newest run";
  select.appendChild(follow);
  for (const run of data.runs) {
    const opt = document.createElement("option");
    opt.value = run.run_id;
    opt.textContent = `${run.run_id} · ${run.scenario} · ${run.status} ${run.steps_done}/${run.steps_planned}`;
    select.appendChild(opt);
  }
  select.value = chosen || currentRun || "";
}

function renderMetrics(run) {
  const set = (id, text) => { document.getElementById(id).textContent = text; };
  set("m-step", `${run.steps_done} / ${run.steps_planned}` +
    (run.waiting_on ? ` · step ${run.steps_done + 1} waiting on ${run.waiting_on}` : ""));
  const status = document.getElementById("m-status");
  status.textContent = run.status; status.className = `v status-${run.status}`;
  set("m-agents", fmt(run.agents));
  set("m-calls", fmt(run.calls) + (run.cached ? ` (${fmt(run.cached)} cached)` : ""));
  set("m-rate", `${rate(run.calls_per_s_recent)} · ${rate(run.calls_per_s)}`);
  set("m-tokens", `${fmt(run.tokens_in)} / ${fmt(run.tokens_out)}`);
  set("m-failures", `${fmt(run.failed_actions)} · ${fmt(run.failed_calls)}`);
  set("m-duplicates", `${fmt(run.duplicates)} (${(100 * run.duplicate_rate).toFixed(1)}%)`);
  set("m-emissions", `${fmt(run.emissions)} · ${fmt(run.messages)} · ${fmt(run.answers)}`);
  document.getElementById("run-line").textContent =
    `run ${run.run_id} · scenario ${run.scenario} · seed ${run.seed} · engine ${run.engine}` +
    ` · started ${when(run.started_at)} UTC` + (run.finished_at ? ` · finished ${when(run.finished_at)} UTC` : "") +
    (run.error ? ` · error: ${run.error}` : "");
  document.body.dataset.stepsDone = run.steps_done;
  document.body.dataset.status = run.status;
}

function renderValidity(validity) {
  // the latest judge's validity rate (personahub judge), shown only once the run was judged
  const box = document.getElementById("m-validity-box");
  box.hidden = !validity;
  if (!validity) return;
  const v = validity.valid, pct = (x) => `${(100 * x).toFixed(1)}%`;
  document.getElementById("m-validity").textContent =
    `${pct(v.rate)} of ${fmt(v.n)} (${pct(v.low)}–${pct(v.high)})`;
  document.getElementById("m-validity-k").textContent =
    `valid (judge ${validity.model}${validity.offline ? ", offline: not a judge of quality" : ""}, 95% CI)`;
  box.title = Object.entries(validity.criteria)
    .map(([name, c]) => `${name}: ${pct(c.rate)} (${pct(c.low)}–${pct(c.high)})`).join("\n");
}

function optionColour(survey, i, n) {
  if (i >= n) return "#999";
  const t = n > 1 ? i / (n - 1) : 0;
  const hue = survey.kind === "scale" ? 130 * t : 130 * (1 - t);  // choices run best-first
  return `hsl(${hue}, 60%, 50%)`;
}

function renderSurvey(survey, eventSteps, stepsPlanned, box) {
  const div = document.createElement("div");
  div.className = "survey";
  div.dataset.survey = survey.id;
  const answered = Object.keys(survey.steps).map(Number).sort((a, b) => a - b);
  div.dataset.steps = answered.join(",");
  div.dataset.counts = JSON.stringify(survey.steps);
  const h = document.createElement("h3");
  h.textContent = `${survey.id}: ${survey.question}`;
  div.appendChild(h);
  const W = 420, H = 190, L = 38, R = 8, T = 20, B = 26;
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `survey ${survey.id}` }, div);
  const last = Math.max(stepsPlanned || 0, ...answered, ...eventSteps, 1);
  const band = (W - L - R) / last, bar = Math.min(band * 0.7, 48);
  const y = (share) => T + (H - T - B) * (1 - share);
  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    el("line", { x1: L, x2: W - R, y1: y(tick), y2: y(tick), stroke: "#eee" }, svg);
    el("text", { x: L - 4, y: y(tick) + 4, "text-anchor": "end", "font-size": 10, fill: "#555" }, svg,
       `${Math.round(tick * 100)}%`);
  }
  const n = survey.options.length;
  for (let step = 1; step <= last; step++) {
    const cx = L + band * (step - 0.5);
    el("text", { x: cx, y: H - 8, "text-anchor": "middle", "font-size": 10, fill: "#555" }, svg, `${step}`);
    if (eventSteps.includes(step)) {
      title(el("text", { x: cx, y: 12, "text-anchor": "middle", "font-size": 12, fill: "#b00",
                         class: "event-mark" }, svg, "▼"), `event at step ${step}`);
    }
    const counts = survey.steps[String(step)];
    if (!counts) {
      if ((survey.steps_planned || []).includes(step)) {
        el("rect", { x: cx - bar / 2, y: y(1), width: bar, height: y(0) - y(1), fill: "none",
                     stroke: "#ccc", "stroke-dasharray": "3 3" }, svg);
      }
      continue;
    }
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    let acc = 0;
    survey.options.forEach((option, i) => {
      const c = counts[option] || 0;
      if (!c) return;
      const share = c / total;
      title(el("rect", { x: cx - bar / 2, y: y(acc + share), width: bar, height: y(acc) - y(acc + share),
                         fill: optionColour(survey, i, n), class: "share" }, svg),
            `step ${step} · ${option}: ${c} of ${total} (${(100 * share).toFixed(0)}%)`);
      acc += share;
    });
  }
  el("text", { x: L, y: H - 8, "text-anchor": "end", "font-size": 10, fill: "#555" }, svg, "step");
  const leg = document.createElement("div");
  leg.className = "legend";
  legend(leg, survey.options.map((o, i) => [o, optionColour(survey, i, n)]));
  div.appendChild(leg);
  box.appendChild(div);
}

function renderSurveys(state) {
  const box = document.getElementById("surveys");
  const eventSteps = [...new Set(state.events.map((e) => e.step))];
  clear(box);
  if (!state.surveys.length) {
    const p = document.createElement("p"); p.className = "muted"; p.textContent = "this scenario asks no survey";
    box.appendChild(p); return;
  }
  for (const survey of state.surveys) renderSurvey(survey, eventSteps, state.run.steps_planned, box);
}

function countTicks(v) {
  // whole-number ticks for counts: a step of 1, 2 or 5 × 10^k giving at most 5 intervals
  const max = Math.max(v, 1);
  let step = 1;
  for (let p = 1; ; p *= 10) {
    const found = [1, 2, 5].map((m) => m * p).find((c) => Math.ceil(max / c) <= 5);
    if (found) { step = found; break; }
  }
  const top = step * Math.ceil(max / step);
  const ticks = [];
  for (let t = 0; t <= top; t += step) ticks.push(t);
  return { top, ticks };
}

function renderActivity(steps, stepsPlanned) {
  const svg = document.getElementById("activity");
  clear(svg);
  const series = [["emissions", "n_emissions", "#1f77b4"], ["messages", "n_messages", "#ff7f0e"],
                  ["failed actions", "n_failed", "#d62728"], ["near-duplicates", "duplicates", "#9467bd"]];
  legend(document.getElementById("activity-legend"), series.map(([l, , c]) => [l, c]));
  const W = 420, H = 220, L = 38, R = 8, T = 10, B = 26;
  const last = Math.max(stepsPlanned || 0, ...steps.map((s) => s.step), 1);
  const { top, ticks } = countTicks(Math.max(0, ...steps.flatMap((s) => series.map(([, k]) => s[k] || 0))));
  const y = (v) => T + (H - T - B) * (1 - v / top);
  for (const v of ticks) {
    el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#eee" }, svg);
    el("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end", "font-size": 10, fill: "#555",
                 class: "count-tick" }, svg, fmt(v));
  }
  const band = (W - L - R) / last, w = Math.min((band * 0.8) / series.length, 14);
  for (let step = 1; step <= last; step++) {
    const cx = L + band * (step - 0.5);
    el("text", { x: cx, y: H - 8, "text-anchor": "middle", "font-size": 10, fill: "#555" }, svg, `${step}`);
  }
  for (const s of steps) {
    const cx = L + band * (s.step - 0.5);
    series.forEach(([label, key, colour], i) => {
      const v = s[key] || 0;
      title(el("rect", { x: cx + (i - series.length / 2) * w, y: y(v), width: w - 1, height: y(0) - y(v),
                         fill: colour }, svg), `step ${s.step} · ${label}: ${v}`);
    });
  }
}

function renderGraph(graph, running) {
  const svg = document.getElementById("graph");
  clear(svg);
  const W = 420, H = 380, P = 12;
  const xs = graph.nodes.map((n) => n.x), ys = graph.nodes.map((n) => n.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (x) => P + (W - 2 * P) * (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5);
  const sy = (v) => P + (H - 2 * P) * (y1 > y0 ? (v - y0) / (y1 - y0) : 0.5);
  const at = new Map(graph.nodes.map((n) => [n.id, n]));
  for (const [a, b] of graph.edges) {
    const p = at.get(a), q = at.get(b);
    el("line", { x1: sx(p.x), y1: sy(p.y), x2: sx(q.x), y2: sy(q.y), stroke: "#ccc", "stroke-width": 0.8 }, svg);
  }
  const kinds = new Map();
  for (const n of graph.nodes) {
    kinds.set(n.kind, (kinds.get(n.kind) || 0) + 1);
    title(el("circle", { cx: sx(n.x), cy: sy(n.y), r: 3 + Math.min(4, Math.sqrt(n.emissions)),
                         fill: kindColour(n.kind), stroke: "#fff", "stroke-width": 0.6, class: "node" }, svg),
          `agent ${n.id}: ${n.kind} (${n.emissions} emissions)`);
  }
  const entries = [...kinds.entries()].sort((a, b) => (a[0] === "idle") - (b[0] === "idle") || b[1] - a[1]);
  legend(document.getElementById("graph-legend"),
         entries.map(([k, c]) => [`${k === "idle" ? (running ? "no emission yet" : "no emission") : k} (${c})`,
                                  kindColour(k)]));
  document.getElementById("graph-note").textContent = graph.sampled
    ? `(a neighbourhood: ${graph.nodes.length} of ${fmt(graph.total_nodes)} agents; colour = what each emitted most)`
    : `(${fmt(graph.total_nodes)} agents, ${fmt(graph.total_edges)} edges; colour = what each emitted most)`;
}

function renderList(id, items, render) {
  const list = document.getElementById(id);
  clear(list);
  for (const item of items) {
    const li = document.createElement("li");
    render(li, item);
    list.appendChild(li);
  }
}

function renderSteering(steering) {
  // shown only by the view of ``run --view``, which runs the run it shows
  const box = document.getElementById("steer");
  box.hidden = !steering;
  if (!steering) return;
  const over = steering.over;
  for (const id of ["steer-pause", "steer-step", "steer-resume", "steer-inject", "steer-text"]) {
    document.getElementById(id).disabled = over;
  }
  document.getElementById("steer-pause").disabled = over || steering.paused;
  document.getElementById("steer-resume").disabled = over || !steering.paused;
  let text;
  if (over) text = "the run is over";
  else if (steering.paused && steering.waiting_before) text = `paused before step ${steering.waiting_before}`;
  else if (steering.paused) text = "pausing after the step running now";
  else text = "running";
  if (steering.queued.length) text += ` · ${steering.queued.length} event(s) queued for the next step`;
  const line = document.getElementById("steer-state");
  if (!line.classList.contains("steer-error")) line.textContent = text;
  document.body.dataset.steer = over ? "over" : steering.paused ? "paused" : "running";
  document.body.dataset.waitingBefore = steering.waiting_before || "";
}

async function steer(body) {
  const line = document.getElementById("steer-state");
  try {
    const res = await fetch("/api/steer", { method: "POST", cache: "no-store",
      headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const answer = await res.json();
    line.classList.toggle("steer-error", !res.ok);
    if (!res.ok) { line.textContent = answer.error; return; }
    renderSteering(answer);
  } catch (err) {
    line.classList.add("steer-error"); line.textContent = `not sent (${err})`;
  }
}

function renderStream(state) {
  // the events of the steps the stream covers come before their step's emissions
  const shown = new Set(state.stream.map((e) => e.step));
  const items = [];
  const events = state.events.filter((e) => shown.has(e.step) || e.step > Math.max(0, ...shown));
  for (const e of state.stream) {
    while (events.length && events[events.length - 1].step > e.step) items.push({ event: events.pop() });
    items.push(e);
  }
  while (events.length) items.push({ event: events.pop() });
  renderList("stream", items, (li, e) => {
    if (e.event) {
      li.className = e.event.source === "scenario" ? "event" : "injected";
      li.textContent = `step ${e.event.step} · event${e.event.source === "scenario" ? "" : ` (injected from the ${e.event.source})`}: ${e.event.text}`;
      return;
    }
    const kind = document.createElement("span");
    kind.className = "kind"; kind.style.background = kindColour(e.kind); kind.textContent = e.kind;
    li.appendChild(document.createTextNode(`step ${e.step} · agent ${e.agent_id}` +
      (e.to_agent !== null && e.to_agent !== undefined ? ` → ${e.to_agent}` : "") + " "));
    li.appendChild(kind);
    li.appendChild(document.createTextNode(" " + (e.text.length > 220 ? e.text.slice(0, 220) + "…" : e.text)));
    if (e.is_duplicate) {
      const dup = document.createElement("span"); dup.className = "dup"; dup.textContent = " near-duplicate";
      li.appendChild(dup);
    }
  });
  renderList("events", state.events, (li, e) => {
    if (e.source && e.source !== "scenario") li.className = "injected";
    li.textContent = `step ${e.step} (${e.audience}, ${e.n_recipients} recipients` +
      (e.source && e.source !== "scenario" ? `, injected from the ${e.source}` : "") + `): ${e.text}`;
  });
  if (!state.events.length) {
    renderList("events", [null], (li) => { li.className = "muted"; li.textContent = "no event delivered yet"; });
  }
}

async function tick() {
  const conn = document.getElementById("conn");
  try {
    const state = await api("/api/state");
    conn.textContent = `updated ${new Date().toLocaleTimeString()}`;
    if (state.run_id) {
      renderMetrics(state.run);
      renderValidity(state.validity);
      renderSurveys(state);
      renderActivity(state.steps, state.run.steps_planned);
      renderStream(state);
      renderSteering(state.steering);
      const key = `${state.run_id}/${state.run.steps_done}/${state.run.agents}/${state.run.status}`;
      if (key !== graphKey) {
        const g = await api("/api/graph");
        if (g.graph) { renderGraph(g.graph, state.run.status === "running"); graphKey = key; }
        loadRuns().catch(() => {});
      }
    } else {
      document.getElementById("run-line").textContent = state.error === "no run yet"
        ? "no run in this database yet: the page shows one as soon as it starts " +
          "(personahub run SCENARIO --db … --view follows a run while it runs)"
        : (state.error || "waiting for a run…");
      document.body.dataset.status = "no run";
    }
  } catch (err) {
    conn.textContent = `not connected (${err})`;
  }
  clearTimeout(timer);
  timer = setTimeout(tick, 1000);
}

document.getElementById("run-select").addEventListener("change", (ev) => {
  currentRun = ev.target.value || null;
  graphKey = null;
  tick();
});
document.getElementById("steer-pause").addEventListener("click", () => steer({ action: "pause" }));
document.getElementById("steer-step").addEventListener("click", () => steer({ action: "step" }));
document.getElementById("steer-resume").addEventListener("click", () => steer({ action: "resume" }));
document.getElementById("steer-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("steer-text");
  const text = input.value.trim();
  if (!text) return;
  steer({ action: "inject", text }).then(() => {
    if (!document.getElementById("steer-state").classList.contains("steer-error")) input.value = "";
  });
});
loadRuns().catch(() => {});
tick();
