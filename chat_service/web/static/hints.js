// The empty conversation's hint: what the assistant can do here, from the tools the service reports in
// GET api/status, so the page never promises answers (Kubernetes, say) that no configured tool can give.
// Example questions are buttons that put the question in the message box.

import { ui } from "./elements.js";

// Example questions for the tools of the bundled MCP servers (kubernetes, netops), most useful first.
const EXAMPLES = [
  { tools: ["list_resources", "describe_workload", "get_resource"], text: "Which pods in namespace default are not running?" },
  { tools: ["list_events"], text: "What warning events were there in namespace default recently?" },
  { tools: ["get_pod_logs"], text: "Why does a pod keep restarting? Look at its logs." },
  { tools: ["http_check", "tcp_check"], text: "Does http://my-service.my-namespace:8080/healthz answer?" },
  { tools: ["tls_certificate"], text: "When does the TLS certificate of my-service.my-namespace:443 expire?" },
  { tools: ["dns_lookup"], text: "What does my-service.my-namespace.svc.cluster.local resolve to?" },
];
const MAX_EXAMPLES = 3;

function paragraph(text) {
  const p = document.createElement("p");
  p.textContent = text;
  return p;
}

function example(text) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "example secondary";
  button.textContent = text;
  button.addEventListener("click", () => {
    ui.input.value = text;
    ui.input.focus();
  });
  return button;
}

/** The tools each connected MCP server offers, as {server, tools}. */
function availableTools(servers) {
  return servers
    .filter((s) => s.connected !== false)
    .map((s) => ({ server: s.name, tools: (s.tools || []).map((t) => (typeof t === "string" ? t : t.name)) }))
    .filter((s) => s.tools.length > 0);
}

/** Fills the empty conversation's hint from the service status. */
export function showHints(status) {
  const servers = status.mcp_servers || [];
  const offered = availableTools(servers);
  const parts = [];
  if (servers.length === 0) {
    parts.push(
      paragraph(
        "Ask a question. No MCP servers are configured here, so the assistant answers from the model alone: " +
          "it cannot look at your systems.",
      ),
    );
  } else if (offered.length === 0) {
    parts.push(
      paragraph(
        "Ask a question. None of the configured MCP servers is available right now, so the assistant answers " +
          "from the model alone.",
      ),
    );
  } else {
    const names = new Set(offered.flatMap((s) => s.tools));
    const examples = EXAMPLES.filter((e) => e.tools.some((t) => names.has(t))).slice(0, MAX_EXAMPLES);
    parts.push(
      paragraph(
        "Ask about your infrastructure. The assistant can use these tools: " +
          offered.map((s) => s.tools.join(", ") + " (" + s.server + ")").join("; ") +
          ". Tool calls show up inline.",
      ),
    );
    if (examples.length) {
      parts.push(paragraph("For example:"));
      const list = document.createElement("div");
      list.className = "examples";
      list.append(...examples.map((e) => example(e.text)));
      parts.push(list);
    }
  }
  ui.emptyHint.replaceChildren(...parts);
}
