// The "Service status" panel (config, models, MCP servers, warnings from GET api/status); the banner
// for a selected model that the service reports it cannot use; the health banner while MCP servers are
// unavailable (the agent then has fewer tools than configured) or the selected model's provider does not
// answer; and the empty conversation's hint, from the tools there are.

import { getJson } from "./api.js";
import { ui } from "./elements.js";
import { explain } from "./errors.js";
import { showHints } from "./hints.js";
import { clearBannerAbout, showBanner } from "./notices.js";
import { rememberService } from "./service.js";

let statusModels = []; // models as GET api/status reports them (with availability)
let statusServers = []; // MCP servers as GET api/status reports them
// The service connects to MCP servers and builds models in the background after a start or a reload:
// while some are not settled yet, the status is read again, a bounded number of times.
const SETTLE_POLL_MS = 1000;
const SETTLE_POLLS = 60;
let settlePolls = 0;
let settleTimer = null;

function paragraph(text) {
  const p = document.createElement("p");
  p.textContent = text;
  return p;
}

function heading(text) {
  const h = document.createElement("h3");
  h.textContent = text;
  return h;
}

function statusList(items) {
  const ul = document.createElement("ul");
  for (const item of items) {
    const li = document.createElement("li");
    li.textContent = item;
    ul.append(li);
  }
  return ul;
}

/** Fills the status panel from GET api/status. */
export async function loadStatus() {
  let status;
  try {
    status = await getJson("api/status");
  } catch (err) {
    ui.statusBody.replaceChildren(paragraph("Status unavailable: " + explain(err).text));
    return;
  }
  const parts = [];
  const config = status.config || {};
  if (config.checksum) {
    parts.push(
      paragraph(
        "Config " + String(config.checksum).slice(0, 19) + "…" + (config.loaded_at ? ", loaded " + config.loaded_at : ""),
      ),
    );
  }
  if (config.reload_error) {
    const e = config.reload_error;
    parts.push(paragraph("Last reload refused: " + (typeof e === "string" ? e : e.message || JSON.stringify(e))));
  }
  const models = status.models || [];
  const middleware = status.middleware || {};
  parts.push(heading("Models"));
  if (models.length === 0) parts.push(paragraph("None configured."));
  else {
    parts.push(
      statusList(
        models.map((m) => {
          const chain = (middleware[m.name] || []).map((x) => x.name + " (" + x.type + ")");
          return (
            m.name +
            " – " +
            [m.model, m.provider].filter(Boolean).join(" · ") +
            (m.default ? ", default" : "") +
            (m.available === false ? "; unavailable: " + (m.unavailable_reason || "unknown reason") : "") +
            (chain.length ? "; middleware: " + chain.join(", ") : "")
          );
        }),
      ),
    );
  }
  const servers = status.mcp_servers || [];
  parts.push(heading("MCP servers"));
  if (servers.length === 0) parts.push(paragraph("None configured: the assistant has no tools."));
  else {
    parts.push(
      statusList(
        servers.map((s) => {
          const tools = (s.tools || []).map((t) => (typeof t === "string" ? t : t.name));
          const reach = s.connected === false ? "not connected" + (s.error ? " (" + s.error + ")" : "") : "connected";
          return s.name + " – " + reach + (tools.length ? "; tools: " + tools.join(", ") : "; no tools");
        }),
      ),
    );
  }
  const warnings = (status.warnings || []).map((w) => (typeof w === "string" ? w : w.message || JSON.stringify(w)));
  if (warnings.length) {
    parts.push(heading("Warnings"));
    parts.push(statusList(warnings));
  }
  ui.statusBody.replaceChildren(...parts);
  statusModels = models;
  statusServers = servers;
  rememberService(status);
  showHints(status);
  checkSelectedModel();
  pollUntilSettled(servers, models);
}

function pollUntilSettled(servers, models) {
  clearTimeout(settleTimer);
  const unsettled =
    servers.some((s) => s.connected === false && !s.error) || models.some((m) => m.available === null);
  if (unsettled && settlePolls < SETTLE_POLLS) {
    settlePolls += 1;
    settleTimer = setTimeout(loadStatus, SETTLE_POLL_MS);
  } else if (!unsettled) {
    settlePolls = 0;
  }
}

/** A provider the service reports unreachable (`provider_status`, when the service says; else null). */
function providerOutage(model) {
  const health = model && model.provider_status;
  return health && health.reachable === false ? health.reason || "no reason given" : null;
}

/** The MCP servers that failed (the agent runs without their tools) and the selected model's provider. */
function healthProblems(model) {
  const problems = [];
  const down = statusServers.filter((s) => s.connected === false && s.error);
  if (down.length) {
    const total = statusServers.length;
    problems.push(
      down.length + " of " + total + " MCP server" + (total === 1 ? "" : "s") + " unavailable: " +
        down.map((s) => s.name + ": " + s.error).join("; ") +
        (down.length === total ? ". The assistant has no tools until they are back." : ". The assistant answers without their tools."),
    );
  }
  const outage = providerOutage(model);
  if (outage) problems.push("The provider of the model " + model.name + " could not be reached: " + outage);
  return problems;
}

function showHealth(model) {
  const problems = healthProblems(model);
  ui.healthBannerText.textContent = problems.join(" ");
  ui.healthBanner.hidden = problems.length === 0;
}

/** A selected model the service cannot use (missing API key, missing extra) is worth a banner. */
export function checkSelectedModel() {
  const model = statusModels.find((m) => m.name === ui.modelSelect.value);
  showHealth(model);
  // A provider outage is the health banner's; this one is for a model that cannot be used at all.
  if (model && model.available === false && !providerOutage(model)) {
    const others = statusModels.some((m) => m.available !== false);
    showBanner(
      "The model " + model.name + " cannot be used right now: " + (model.unavailable_reason || "unknown reason") +
        "." + (others ? " Pick another model in the Model list." : ""),
      null,
      "model",
    );
  } else {
    clearBannerAbout("model");
  }
}
