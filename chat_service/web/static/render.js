// The conversation view: user messages and assistant turns (text and tool blocks) as DOM nodes.
// Text from the server is inserted as text only (see format.js), except the model's finished replies,
// which are sanitized Markdown (see markdown.js).

import { ui } from "./elements.js";
import { formatJson, formatOutput } from "./format.js";
import { renderMarkdown } from "./markdown.js";

export function scrollToEnd() {
  ui.conversation.scrollTop = ui.conversation.scrollHeight;
}

function roleLabel(text) {
  const span = document.createElement("span");
  span.className = "role";
  span.textContent = text;
  return span;
}

export function addUserMessage(text) {
  ui.emptyHint.hidden = true;
  const article = document.createElement("article");
  article.className = "message user";
  article.setAttribute("aria-label", "You");
  const body = document.createElement("div");
  body.className = "body";
  body.textContent = text;
  article.append(roleLabel("You"), body);
  ui.conversation.append(article);
  scrollToEnd();
  return article;
}

/** Removes every message; the hint for an empty conversation shows again. */
export function clearConversation() {
  for (const el of [...ui.conversation.children]) {
    if (el !== ui.emptyHint) el.remove();
  }
  ui.emptyHint.hidden = false;
}

function section(title, text, className) {
  const div = document.createElement("div");
  div.className = "tool-section " + className;
  const h = document.createElement("h4");
  h.textContent = title;
  const pre = document.createElement("pre");
  pre.textContent = text;
  div.append(h, pre);
  return div;
}

/** One assistant turn: a sequence of text blocks and tool blocks, in the order they happened. */
export class AssistantTurn {
  constructor() {
    ui.emptyHint.hidden = true;
    this.article = document.createElement("article");
    this.article.className = "message assistant";
    this.article.setAttribute("aria-label", "Assistant");
    this.label = roleLabel("Assistant");
    this.blocks = document.createElement("div");
    this.blocks.className = "blocks";
    this.meta = document.createElement("div");
    this.meta.className = "meta";
    this.article.append(this.label, this.blocks, this.meta);
    ui.conversation.append(this.article);
    this.currentText = null; // the text node being streamed into
    this.textBlocks = [];
    this.pendingTools = [];
    this.receivedText = false;
    this.usage = null; // tokens of the turn's model calls, added up (history gives them per message)
  }

  setModel(model) {
    if (model) this.label.textContent = "Assistant · " + model;
  }

  /** Adds one model call's tokens ({input_tokens, output_tokens}) to the turn's. */
  addUsage(usage) {
    if (!usage) return;
    const sum = this.usage || { input_tokens: 0, output_tokens: 0 };
    sum.input_tokens += usage.input_tokens || 0;
    sum.output_tokens += usage.output_tokens || 0;
    this.usage = sum;
  }

  setBusy(busy) {
    if (busy) this.article.setAttribute("aria-busy", "true");
    else this.article.removeAttribute("aria-busy");
    this.article.classList.toggle("streaming", busy);
  }

  appendText(text) {
    if (!text) return;
    if (!this.currentText) {
      const div = document.createElement("div");
      div.className = "text";
      this.currentText = document.createTextNode("");
      div.append(this.currentText);
      this.blocks.append(div);
      this.textBlocks.push(div);
    }
    this.currentText.appendData(text);
    this.receivedText = true;
    scrollToEnd();
  }

  /** Ends the current text block: text appended later starts a block of its own. */
  endTextBlock() {
    this.currentText = null;
  }

  /** Adds an expandable tool block; `result` is given for history entries (already finished). */
  addTool(name, args, result) {
    this.currentText = null;
    const details = document.createElement("details");
    details.className = "tool";
    const summary = document.createElement("summary");
    const title = document.createElement("span");
    title.className = "tool-title";
    title.append("Tool ");
    const code = document.createElement("code");
    code.className = "tool-name";
    code.textContent = name || "(unnamed)";
    title.append(code);
    const stateLabel = document.createElement("span");
    stateLabel.className = "tool-state";
    summary.append(title, stateLabel);
    details.append(summary);
    if (args !== undefined) {
      details.append(section("Arguments", formatJson(args), "tool-args"));
    }
    const entry = { name, details, stateLabel };
    this.blocks.append(details);
    if (result) this.finishTool(entry, result);
    else {
      stateLabel.textContent = "running…";
      details.classList.add("running");
      this.pendingTools.push(entry);
    }
    scrollToEnd();
    return entry;
  }

  /** Matches a tool_result to its tool_call: the oldest pending call of that name (results carry no id). */
  toolResult(data) {
    let index = this.pendingTools.findIndex((t) => t.name === data.name);
    if (index < 0 && this.pendingTools.length === 1) index = 0;
    if (index < 0) this.addTool(data.name, undefined, data);
    else this.finishTool(this.pendingTools.splice(index, 1)[0], data);
  }

  finishTool(entry, data) {
    const failed = data.error !== undefined && data.error !== null && data.error !== "";
    entry.details.classList.remove("running");
    entry.details.classList.toggle("failed", failed);
    entry.stateLabel.textContent = failed ? "failed" : "done";
    if (failed) entry.details.append(section("Error", String(data.error), "tool-error"));
    else entry.details.append(section("Output", formatOutput(data.output), "tool-output"));
  }

  /** Interrupted turn: mark the tools that never answered. */
  abandonTools(text) {
    for (const entry of this.pendingTools) {
      entry.details.classList.remove("running");
      entry.stateLabel.textContent = text;
    }
    this.pendingTools = [];
  }

  /** The turn is over: `usage` is the whole turn's (live), else what addUsage added up (history). */
  finish(reply, usage) {
    if (!this.receivedText && reply) this.appendText(reply);
    // Streamed as plain text; now rendered as Markdown.
    for (const div of this.textBlocks) renderMarkdown(div, div.textContent);
    this.currentText = null;
    const total = usage || this.usage;
    if (total && (total.input_tokens || total.output_tokens)) {
      this.meta.textContent = (total.input_tokens || 0) + " tokens in · " + (total.output_tokens || 0) + " tokens out";
    }
    this.abandonTools("no result");
  }

  fail(text) {
    this.currentText = null;
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = text;
    this.blocks.append(p);
    this.article.classList.add("has-error");
    scrollToEnd();
  }
}
