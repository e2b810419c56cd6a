// Tool arguments and outputs as text to show in a <pre> (inserted with textContent). The model's own text
// is Markdown: see markdown.js.

export function formatJson(value) {
  if (typeof value === "string") {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      return value;
    }
  }
  return JSON.stringify(value, null, 2);
}

export function formatOutput(value) {
  if (value === undefined || value === null) return "(no output)";
  if (typeof value === "string") return value;
  // MCP content blocks: show their text parts as text.
  if (Array.isArray(value) && value.every((b) => b && typeof b.text === "string")) {
    return value.map((b) => b.text).join("\n");
  }
  return JSON.stringify(value, null, 2);
}
