// The Incidents view: the namespace's Investigations (GET api/investigations, newest first, read again every
// few seconds while the view is shown), one of them opened (GET api/investigations/{name}) with its
// diagnosis, evidence, recommendations and runbooks, and "Continue in chat", which opens the investigation's
// conversation (its status.threadId) in the chat view. The fixes it proposed (status.actions, ActionRequests)
// are listed with their phase, each read with GET api/actions/{name}. Alert labels and the model's diagnosis are untrusted:
// everything from the server goes into the page as text (textContent), never as markup.

import { ApiError, getJson } from "./api.js";
import { VIEW_EVENT } from "./elements.js";
import { report } from "./errors.js";
import { openThread } from "./thread.js";

const REFRESH_MS = 5000;
const byId = (id) => document.getElementById(id);

const view = {
  button: byId("incidents-button"),
  section: byId("incidents"),
  chat: [byId("main"), byId("composer")],
};

let shown = false;
let timer = null;
let openName = null; // the investigation shown in the detail pane

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function age(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "";
  if (seconds < 60) return Math.max(0, Math.floor(seconds)) + "s";
  if (seconds < 3600) return Math.floor(seconds / 60) + "m";
  if (seconds < 86400) return Math.floor(seconds / 3600) + "h";
  return Math.floor(seconds / 86400) + "d";
}

// The skeleton of the view, built once: a header (store, refresh), the list and the detail pane.
function build() {
  const title = el("h2", "incidents-title", "Incidents");
  title.id = "incidents-title";
  const store = el("p", "incidents-store");
  store.id = "incidents-store";
  store.hidden = true;
  const refresh = el("button", "secondary", "Refresh");
  refresh.type = "button";
  refresh.id = "incidents-refresh";
  refresh.addEventListener("click", () => loadList());
  const head = el("div", "incidents-head");
  head.append(title, store, refresh);
  const note = el("p", "incidents-note", "Not loaded yet.");
  note.id = "incidents-note";
  const table = el("table", "incidents-table");
  table.id = "incidents-table";
  const headRow = el("tr");
  for (const name of ["Severity", "Alert", "Phase", "Summary", "Age"]) headRow.append(el("th", "", name));
  const thead = el("thead");
  thead.append(headRow);
  const body = el("tbody");
  body.id = "incidents-rows";
  table.append(thead, body);
  const detail = el("article", "incident-detail");
  detail.id = "incident-detail";
  detail.hidden = true;
  detail.setAttribute("aria-live", "polite");
  view.section.setAttribute("aria-labelledby", "incidents-title");
  view.section.replaceChildren(head, note, table, detail);
}

function note(text) {
  const node = byId("incidents-note");
  node.textContent = text;
  node.hidden = !text;
}

async function loadStore() {
  // The status route says where the investigations live (Kubernetes or memory).
  let info;
  try {
    info = await getJson("api/status");
  } catch {
    return; // status unavailable: the page just does not say
  }
  const store = info && info.investigation_store;
  if (typeof store !== "string" || !store) return;
  const node = byId("incidents-store");
  const words = { kubernetes: "stored in Kubernetes", memory: "in memory (lost on restart)" };
  node.textContent = "Investigations " + (words[store.toLowerCase()] || "stored in " + store);
  node.hidden = false;
}

/** Reads the list again (every REFRESH_MS while the view is shown, or on Refresh). */
export async function loadList() {
  let body;
  try {
    body = await getJson("api/investigations");
  } catch (err) {
    byId("incidents-rows").replaceChildren();
    if (err instanceof ApiError && err.status === 401) {
      note("");
      report(err); // the token prompt
    } else {
      note("The investigations cannot be listed right now" + (err.message ? ": " + err.message : "."));
    }
    return;
  }
  const items = Array.isArray(body.investigations) ? body.investigations : [];
  byId("incidents-rows").replaceChildren(...items.map(row));
  note(items.length ? "" : "No investigations yet.");
  if (openName) await loadDetail(openName, { quiet: true });
}

function row(item) {
  const tr = el("tr", "incident-row");
  tr.dataset.name = String(item.name || "");
  if (item.name === openName) tr.setAttribute("aria-current", "true");
  const severity = el("td", "incident-severity", item.severity || "");
  if (item.severity) severity.dataset.severity = String(item.severity).toLowerCase().slice(0, 16);
  const alert = el("td", "incident-alert");
  const open = el("button", "incident-open", item.alert || item.name);
  open.type = "button";
  open.title = String(item.name || "");
  open.addEventListener("click", () => loadDetail(item.name));
  alert.append(open);
  tr.append(
    severity,
    alert,
    el("td", "incident-phase", item.phase || ""),
    el("td", "incident-summary", item.summary || ""),
    el("td", "incident-age", age(item.age_seconds)),
  );
  return tr;
}

function section(title, ...children) {
  const box = el("section", "incident-section");
  box.append(el("h4", "", title), ...children);
  return box;
}

function list(className, values) {
  const ul = el("ul", className);
  ul.append(...values.map((v) => el("li", "", v)));
  return ul;
}

async function loadDetail(name, { quiet = false } = {}) {
  let item;
  try {
    item = await getJson("api/investigations/" + encodeURIComponent(name));
  } catch (err) {
    if (!quiet) report(err);
    return;
  }
  openName = name;
  for (const tr of byId("incidents-rows").children) {
    if (tr.dataset.name === name) tr.setAttribute("aria-current", "true");
    else tr.removeAttribute("aria-current");
  }
  showDetail(item);
}

function showDetail(item) {
  const status = item.status || {};
  const spec = item.spec || {};
  const alert = spec.alert || {};
  const detail = byId("incident-detail");
  const parts = [el("h3", "incident-name", item.name)];
  const facts = el("p", "incident-facts");
  facts.textContent = [alert.name || (spec.question ? "Question" : ""), item.phase, status.alertStatus]
    .filter(Boolean)
    .join(" · ");
  parts.push(facts);
  if (spec.question) parts.push(section("Question", el("p", "incident-question", spec.question)));
  const labels = alert.labels || {};
  if (Object.keys(labels).length) {
    const dl = el("dl", "incident-labels");
    for (const [key, value] of Object.entries(labels)) dl.append(el("dt", "", key), el("dd", "", value));
    parts.push(section("Labels", dl));
  }
  const diagnosis = [];
  if (status.summary) diagnosis.push(el("p", "incident-summary-text", status.summary));
  if (status.rootCause) {
    const p = el("p", "incident-root-cause");
    p.append(el("strong", "", "Root cause: "), document.createTextNode(status.rootCause));
    diagnosis.push(p);
  }
  if (status.confidence) diagnosis.push(el("p", "incident-confidence", "Confidence: " + status.confidence));
  if (status.reason) diagnosis.push(el("p", "incident-reason", status.reason));
  if (!diagnosis.length) diagnosis.push(el("p", "incident-pending", "No diagnosis yet."));
  parts.push(section("Diagnosis", ...diagnosis));
  const evidence = Array.isArray(status.evidence) ? status.evidence : [];
  if (evidence.length) {
    const ol = el("ol", "incident-evidence");
    for (const e of evidence) {
      const li = el("li");
      li.append(el("code", "evidence-tool", e.tool), el("pre", "evidence-arguments", e.arguments || ""));
      li.append(el("pre", "evidence-excerpt", e.excerpt || ""));
      ol.append(li);
    }
    parts.push(section("Evidence", ol));
  }
  const recommendations = Array.isArray(status.recommendations) ? status.recommendations : [];
  if (recommendations.length) parts.push(section("Recommendations", list("incident-recommendations", recommendations)));
  const runbooks = Array.isArray(status.runbooksUsed) ? status.runbooksUsed : [];
  if (runbooks.length) parts.push(section("Runbooks used", list("incident-runbooks", runbooks)));
  const actions = Array.isArray(status.actions) ? status.actions.map(String) : [];
  if (actions.length) {
    const ul = el("ul", "incident-actions");
    ul.append(...actions.map(actionItem));
    parts.push(section("Proposed fixes", ul));
  }
  const thread = item.thread && item.thread.id;
  if (thread) {
    const go = el("button", "incident-continue", "Continue in chat");
    go.type = "button";
    go.id = "incident-continue";
    go.addEventListener("click", () => continueInChat(thread));
    parts.push(go);
  }
  detail.replaceChildren(...parts);
  detail.hidden = false;
}

// One proposed fix: its name at once, its tool, target and phase once its ActionRequest has been read.
function actionItem(name) {
  const li = el("li", "incident-action");
  li.dataset.name = name;
  const phase = el("span", "incident-action-phase", "…");
  const what = el("span", "incident-action-what");
  li.append(el("code", "incident-action-name", name), document.createTextNode(" "), what, phase);
  getJson("api/actions/" + encodeURIComponent(name)).then(
    (action) => {
      const target = action.target || {};
      const where = [target.namespace, target.name].filter(Boolean).join("/");
      what.textContent = [action.tool, target.kind, where].filter(Boolean).join(" ");
      phase.textContent = String(action.phase || "");
    },
    (err) => {
      phase.textContent = err instanceof ApiError && err.status === 404 ? "gone" : "not readable now";
    },
  );
  return li;
}

async function continueInChat(threadId) {
  showChat();
  await openThread(threadId);
  const input = byId("message-input");
  if (input) input.focus();
}

function schedule() {
  clearTimeout(timer);
  timer = shown ? setTimeout(async () => {
    await loadList();
    schedule();
  }, REFRESH_MS) : null;
}

function showIncidents() {
  // The other views that take the chat's place close first (usage.js listens too).
  document.dispatchEvent(new CustomEvent(VIEW_EVENT, { detail: "incidents" }));
  shown = true;
  for (const part of view.chat) if (part) part.hidden = true;
  view.section.hidden = false;
  view.button.setAttribute("aria-pressed", "true");
  loadStore();
  loadList().then(schedule);
}

/** Back to the chat view (the Incidents view stops refreshing). */
export function showChat() {
  shown = false;
  schedule();
  view.section.hidden = true;
  for (const part of view.chat) if (part) part.hidden = false;
  view.button.setAttribute("aria-pressed", "false");
}

export function setUpIncidents() {
  if (!view.button || !view.section) return;
  build();
  view.button.addEventListener("click", () => (shown ? showChat() : showIncidents()));
  byId("new-conversation").addEventListener("click", () => shown && showChat());
  document.addEventListener(VIEW_EVENT, (event) => event.detail !== "incidents" && shown && showChat());
  // A notification's link (?investigation=<name>) opens the view on that investigation.
  const linked = new URLSearchParams(window.location.search).get("investigation");
  if (linked) {
    showIncidents();
    loadDetail(linked);
  }
}
