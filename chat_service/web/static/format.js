// Turns text from the server into DOM nodes. Everything stays text (textContent, text nodes); the only
// markup is the few elements made here, never HTML parsed from the server's text.

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

/** Minimal, safe formatting: ``` fences become <pre>, `code` <code>, **bold** <strong>; the rest stays text. */
export function formatText(container, text) {
  const nodes = [];
  const fence = /```[^\n`]*\n?([\s\S]*?)```/g;
  let last = 0;
  let match;
  while ((match = fence.exec(text)) !== null) {
    // The line breaks around a fence belong to the fence, not to the text beside it.
    if (match.index > last) nodes.push(...inline(text.slice(last, match.index).replace(/\n$/, "")));
    const pre = document.createElement("pre");
    const code = document.createElement("code");
    code.textContent = match[1].replace(/\n$/, "");
    pre.append(code);
    nodes.push(pre);
    last = fence.lastIndex;
  }
  if (last < text.length) nodes.push(...inline(last > 0 ? text.slice(last).replace(/^\n/, "") : text));
  container.replaceChildren(...nodes);
}

function inline(text) {
  const out = [];
  const pattern = /`([^`\n]+)`|\*\*([^*\n]+)\*\*/g;
  let last = 0;
  let match;
  while ((match = pattern.exec(text)) !== null) {
    if (match.index > last) out.push(document.createTextNode(text.slice(last, match.index)));
    const element = document.createElement(match[1] !== undefined ? "code" : "strong");
    element.textContent = match[1] !== undefined ? match[1] : match[2];
    out.push(element);
    last = pattern.lastIndex;
  }
  if (last < text.length) out.push(document.createTextNode(text.slice(last)));
  return out;
}
