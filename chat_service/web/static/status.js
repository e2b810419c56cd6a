// The "Service status" panel (config, models, MCP servers, warnings from GET api/status), and the banner
// for a selected model that the service reports it cannot use.

import { getJson } from "./api.js";
import { ui } from "./elements.js";
import { explain } from "./errors.js";
import { clearBannerAbout, showBanner } from "./notices.js";

let statusModels = []; // models as GET api/status reports them (with availability)

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
  checkSelectedModel();
}

/** A selected model the service cannot use (missing API key, missing extra) is worth a banner. */
export function checkSelectedModel() {
  const model = statusModels.find((m) => m.name === ui.modelSelect.value);
  if (model && model.available === false) {
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
