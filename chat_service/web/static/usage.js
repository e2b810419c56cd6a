// The Usage view: tokens and cost per day as a plain SVG chart (GET api/usage?group_by=day) and a table
// per model, caller and tool (group_by=model|caller|tool). Plain SVG rather than a charting library: one
// bar series and one line are a few dozen lines, and nothing third-party runs beside the access token.
// Model, caller and tool names are untrusted: every name and number goes in as text (textContent).

import { ApiError, getJson } from "./api.js";
import { VIEW_EVENT } from "./elements.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const CHART = { width: 640, height: 240, left: 64, right: 64, top: 16, bottom: 36 };
const DAY_MS = 24 * 60 * 60 * 1000;

const byId = (id) => document.getElementById(id);
const view = {
  button: byId("usage-button"),
  section: byId("usage-view"),
  close: byId("usage-close"),
  note: byId("usage-note"),
  range: byId("usage-range"),
  chart: byId("usage-chart"),
  legend: byId("usage-legend"),
  tables: byId("usage-tables"),
};
// What the Usage view hides while it is open (the chat), and shows again when it closes.
const chatParts = () => [byId("main"), byId("composer")];

function svg(name, attributes) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes || {})) element.setAttribute(key, String(value));
  return element;
}

function svgText(x, y, text, className, anchor) {
  const t = svg("text", { x, y, class: className, "text-anchor": anchor || "middle" });
  t.textContent = text;
  return t;
}

function el(name, text, className) {
  const element = document.createElement(name);
  if (text !== undefined) element.textContent = text;
  if (className) element.className = className;
  return element;
}

/** Every UTC day from `from` to `to` (ISO dates), in order. */
export function daysBetween(from, to) {
  const days = [];
  const last = Date.parse(to + "T00:00:00Z");
  for (let t = Date.parse(from + "T00:00:00Z"); t <= last && days.length < 400; t += DAY_MS) {
    days.push(new Date(t).toISOString().slice(0, 10));
  }
  return days;
}

const tokens = (row) => (row ? row.input_tokens + row.output_tokens : 0);
const amount = (row, currency) => (row && row.cost && currency in row.cost ? Number(row.cost[currency]) : 0);
const number = (n) => Number(n || 0).toLocaleString();

/** A readable upper bound for an axis: 1, 2 or 5 times a power of ten, at least `value`. */
function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function drawChart(byDay, currency) {
  const { width, height, left, right, top, bottom } = CHART;
  const days = byDay.map(([day]) => day);
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  const slot = plotWidth / Math.max(days.length, 1);
  const maxTokens = niceMax(Math.max(...byDay.map(([, row]) => tokens(row)), 0));
  const maxCost = niceMax(Math.max(...byDay.map(([, row]) => amount(row, currency)), 0));
  const yTokens = (v) => top + plotHeight - (v / maxTokens) * plotHeight;
  const yCost = (v) => top + plotHeight - (v / maxCost) * plotHeight;

  const parts = [
    svg("line", { x1: left, y1: top + plotHeight, x2: width - right, y2: top + plotHeight, class: "usage-axis" }),
    svgText(left - 6, top + 4, number(maxTokens), "usage-tick", "end"),
    svgText(left - 6, top + plotHeight, "0", "usage-tick", "end"),
  ];
  const bars = svg("g", { class: "usage-bars" });
  byDay.forEach(([day, row], i) => {
    const value = tokens(row);
    const barHeight = (value / maxTokens) * plotHeight;
    const bar = svg("rect", {
      class: "usage-bar",
      x: left + i * slot + slot * 0.15,
      y: top + plotHeight - barHeight,
      width: slot * 0.7,
      height: barHeight,
      "data-day": day,
      "data-tokens": value,
    });
    const title = svg("title");
    title.textContent = `${day}: ${number(value)} tokens`;
    bar.append(title);
    bars.append(bar);
    // Label every day when they fit, else about seven of them.
    if (days.length <= 10 || i % Math.ceil(days.length / 7) === 0) {
      parts.push(svgText(left + (i + 0.5) * slot, height - bottom + 16, day.slice(5), "usage-tick"));
    }
  });
  parts.push(bars);
  if (currency) {
    parts.push(svgText(width - right + 6, top + 4, `${maxCost} ${currency}`, "usage-tick usage-cost-tick", "start"));
    const points = byDay.map(([, row], i) => [left + (i + 0.5) * slot, yCost(amount(row, currency))]);
    parts.push(svg("polyline", { class: "usage-line", points: points.map((p) => p.join(",")).join(" ") }));
    const dots = svg("g", { class: "usage-points" });
    byDay.forEach(([day, row], i) => {
      const dot = svg("circle", {
        class: "usage-point",
        cx: points[i][0],
        cy: points[i][1],
        r: 3.5,
        "data-day": day,
        "data-cost": row && row.cost && currency in row.cost ? row.cost[currency] : "0",
      });
      const title = svg("title");
      title.textContent = `${day}: ${row && row.cost && row.cost[currency] ? row.cost[currency] : "0"} ${currency}`;
      dot.append(title);
      dots.append(dot);
    });
    parts.push(dots);
  }
  view.chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
  view.chart.replaceChildren(...parts);
  const legend = [el("span", "Bars: tokens (input + output) per day", "usage-legend-tokens")];
  if (currency) legend.push(el("span", `Line: cost per day (${currency})`, "usage-legend-cost"));
  else legend.push(el("span", "No cost: the models have no pricing.", "usage-legend-cost"));
  view.legend.replaceChildren(...legend);
}

const COST = (row) => (row.cost ? Object.entries(row.cost).map(([c, v]) => `${v} ${c}`).join(", ") : "—");
const MODEL_COLUMNS = [
  ["Input tokens", (r) => number(r.input_tokens)],
  ["Output tokens", (r) => number(r.output_tokens)],
  ["Cached tokens", (r) => number(r.cached_tokens)],
  ["Model calls", (r) => number(r.model_calls) + (r.estimated_calls ? ` (${r.estimated_calls} estimated)` : "")],
  ["Cost", COST],
];
const TOOL_COLUMNS = [
  ["Calls", (r) => number(r.tool_calls)],
  ["Errors", (r) => number(r.tool_errors)],
  ["Seconds", (r) => Number(r.tool_seconds || 0).toFixed(2)],
];
const TABLES = [
  ["model", "Per model", "Model", MODEL_COLUMNS],
  ["caller", "Per caller", "Caller", [...MODEL_COLUMNS, ["Tool calls", (r) => number(r.tool_calls)]]],
  ["tool", "Per tool", "Server/tool", TOOL_COLUMNS],
];

function table(group, heading, keyName, columns, rows) {
  const section = el("section", undefined, "usage-table");
  section.dataset.groupBy = group;
  section.append(el("h3", heading));
  if (!rows.length) {
    section.append(el("p", "Nothing counted in this range.", "usage-empty"));
    return section;
  }
  const t = el("table");
  const head = el("tr");
  for (const name of [keyName, ...columns.map(([title]) => title)]) {
    const th = el("th", name);
    th.scope = "col";
    head.append(th);
  }
  t.append(el("thead"));
  t.tHead.append(head);
  const body = el("tbody");
  for (const row of rows) {
    const tr = el("tr");
    const th = el("th", row.key);
    th.scope = "row";
    tr.append(th, ...columns.map(([, cell]) => el("td", cell(row))));
    body.append(tr);
  }
  t.append(body);
  section.append(t);
  return section;
}

function note(text) {
  view.note.textContent = text;
  view.note.hidden = !text;
}

/** Reads the usage again and draws it. */
export async function loadUsage() {
  note("Loading…");
  let answers;
  try {
    answers = await Promise.all(
      ["day", ...TABLES.map(([group]) => group)].map((group) => getJson("api/usage?group_by=" + group)),
    );
  } catch (err) {
    view.chart.replaceChildren();
    view.tables.replaceChildren();
    note(
      err instanceof ApiError && err.status === 401
        ? "An access token is needed to see the usage."
        : "The usage cannot be read right now" + (err && err.message ? ": " + err.message : "."),
    );
    return;
  }
  const [daily, ...grouped] = answers;
  const rows = new Map(daily.rows.map((row) => [row.key, row]));
  const byDay = daysBetween(daily.from, daily.to).map((day) => [day, rows.get(day)]);
  const currencies = Object.keys((daily.total && daily.total.cost) || {});
  view.range.textContent =
    `${daily.from} to ${daily.to} (UTC)` + (daily.scope === "all" ? ", all callers" : `, your calls (${daily.scope})`);
  drawChart(byDay, currencies[0] || "");
  view.tables.replaceChildren(
    ...TABLES.map(([group, heading, keyName, columns], i) => table(group, heading, keyName, columns, grouped[i].rows)),
  );
  note(daily.accounting ? "" : "Usage accounting is off on this service: nothing is counted.");
}

function show(open, { focus = true } = {}) {
  if (open) document.dispatchEvent(new CustomEvent(VIEW_EVENT, { detail: "usage" }));
  view.section.hidden = !open;
  for (const part of chatParts()) if (part) part.hidden = open;
  view.button.setAttribute("aria-pressed", String(open));
  if (open) {
    loadUsage();
    view.close.focus();
  } else if (focus) {
    view.button.focus();
  }
}

export function setUpUsageView() {
  view.button.addEventListener("click", () => show(view.section.hidden));
  view.close.addEventListener("click", () => show(false));
  document.addEventListener(VIEW_EVENT, (event) => {
    if (event.detail !== "usage" && !view.section.hidden) show(false, { focus: false });
  });
}
