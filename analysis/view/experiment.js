// personahub experiment view: polls /api/experiment every two seconds and draws each outcome per
// arm over the steps, side by side, with plain SVG (no network, no library).
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"];
const wanted = new URLSearchParams(location.search).get("id") || "";

function el(tag, attrs, parent, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}
function html(tag, parent, text) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function drawArms(state) {
  const body = document.querySelector("#arms tbody");
  body.textContent = "";
  const planned = state.replicates_planned;
  state.arms.forEach((arm, i) => {
    const row = html("tr", body);
    const name = html("td", row, arm.name + (arm.control ? " (control)" : ""));
    name.style.color = COLOURS[i % COLOURS.length];
    html("td", row, planned ? `${arm.replicates_done} of ${planned}` : String(arm.replicates_done));
    html("td", row, arm.runs.join(", "));
  });
}

function drawOutcome(outcome, arms, parent) {
  const box = html("div", parent);
  html("h3", box, `${outcome.name} (${outcome.unit})`);
  const W = 520, H = 220, L = 44, R = 12, T = 10, B = 28;
  const svg = el("svg", {width: W, height: H, viewBox: `0 0 ${W} ${H}`}, box);
  const points = Object.values(outcome.series).flat();
  const steps = outcome.steps.length ? outcome.steps : [...new Set(points.map((p) => p.step))];
  const lo = Math.min(0, ...points.map((p) => p.ci_low));
  const hi = Math.max(outcome.unit.startsWith("%") ? 100 : 1, ...points.map((p) => p.ci_high));
  const x0 = Math.min(...steps), x1 = Math.max(...steps);
  const x = (s) => L + (x1 === x0 ? (W - L - R) / 2 : (s - x0) / (x1 - x0) * (W - L - R));
  const y = (v) => T + (1 - (v - lo) / ((hi - lo) || 1)) * (H - T - B);
  el("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999"}, svg);
  el("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#999"}, svg);
  for (const s of steps) el("text", {x: x(s), y: H - 8, "text-anchor": "middle", "font-size": 11}, svg, `step ${s}`);
  el("text", {x: 2, y: y(hi) + 10, "font-size": 11}, svg, hi.toFixed(0));
  el("text", {x: 2, y: y(lo), "font-size": 11}, svg, lo.toFixed(0));
  arms.forEach((arm, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const shift = (i - (arms.length - 1) / 2) * 5;
    const series = outcome.series[arm.name] || [];
    if (series.length > 1) {
      el("polyline", {points: series.map((p) => `${x(p.step) + shift},${y(p.value)}`).join(" "),
                      fill: "none", stroke: colour, "stroke-width": 2}, svg);
    }
    for (const p of series) {
      el("line", {x1: x(p.step) + shift, x2: x(p.step) + shift, y1: y(p.ci_low), y2: y(p.ci_high),
                  stroke: colour}, svg);
      const dot = el("circle", {cx: x(p.step) + shift, cy: y(p.value), r: 4, fill: colour}, svg);
      el("title", {}, dot, `${arm.name}, step ${p.step}: ${p.value.toFixed(1)} ` +
                           `(${p.ci_low.toFixed(1)} to ${p.ci_high.toFixed(1)}), n=${p.n}`);
    }
  });
}

function draw(state) {
  const done = state.arms.map((a) => a.replicates_done);
  document.getElementById("exp-line").textContent = state.waiting
    ? `experiment ${state.experiment_id}: waiting for its first run to finish`
    : `experiment ${state.experiment_id} (${state.design} worlds): ${Math.min(...done)}` +
      (state.replicates_planned ? ` of ${state.replicates_planned}` : "") + " replicates in every arm";
  drawArms(state);
  const parent = document.getElementById("outcomes");
  parent.textContent = "";
  for (const outcome of state.outcomes) drawOutcome(outcome, state.arms, parent);
  if (state.not_over_steps && state.not_over_steps.length) {
    html("p", parent, "Not over steps (one number per run): " + state.not_over_steps.join(", "));
  }
}

async function poll() {
  const conn = document.getElementById("conn");
  try {
    const res = await fetch("/api/experiment" + (wanted ? "?id=" + encodeURIComponent(wanted) : ""));
    const state = await res.json();
    if (!res.ok) { conn.textContent = state.error || `HTTP ${res.status}`; return; }
    conn.textContent = "live";
    draw(state);
  } catch (err) {
    conn.textContent = "disconnected (the view has stopped)";
  }
}
poll();
setInterval(poll, 2000);
