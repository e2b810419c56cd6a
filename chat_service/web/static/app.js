// The ai-ops chat page: plain JavaScript, no framework, no build step, no CDN.
// It talks to the service's own HTTP API (relative URLs, so a path prefix in front of the service works):
//   GET  api/models, GET api/status, GET api/threads/{id}, POST api/chat/stream (server-sent events).
// All text from the server is inserted as text (textContent / DOM nodes), never as HTML.
"use strict";

(() => {
  const STORAGE = {
    token: "ai-ops.token",
    thread: "ai-ops.thread",
    model: "ai-ops.model",
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    modelSelect: $("model-select"),
    newConversation: $("new-conversation"),
    tokenButton: $("token-button"),
    banner: $("banner"),
    bannerText: $("banner-text"),
    bannerAction: $("banner-action"),
    conversation: $("conversation"),
    emptyHint: $("empty-hint"),
    composer: $("composer"),
    input: $("message-input"),
    send: $("send-button"),
    stop: $("stop-button"),
    statusBody: $("status-body"),
    threadLabel: $("thread-label"),
    tokenDialog: $("token-dialog"),
    tokenForm: $("token-form"),
    tokenReason: $("token-reason"),
    tokenInput: $("token-input"),
    tokenCancel: $("token-cancel"),
    tokenForget: $("token-forget"),
    announcer: $("announcer"),
  };

  const state = {
    models: [],
    streaming: null, // AbortController of the turn in flight
    authRequired: false,
    statusModels: [], // models as GET api/status reports them (with availability)
    bannerKind: null,
  };

  // ---------------------------------------------------------------- storage (private mode may refuse it)

  function load(key) {
    try {
      return window.localStorage.getItem(key);
    } catch {
      return null;
    }
  }

  function save(key, value) {
    try {
      if (value === null || value === undefined || value === "") window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch {
      /* storage unavailable: the page still works, it just forgets on reload */
    }
  }

  // ---------------------------------------------------------------- HTTP

  /** An HTTP failure turned into something a person can read. */
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status; // 0 = the service could not be reached at all
      this.code = code;
    }
  }

  function headers(extra) {
    const h = Object.assign({ Accept: "application/json" }, extra || {});
    const token = load(STORAGE.token);
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }

  async function errorFromResponse(response) {
    let code = "http_" + response.status;
    let message = response.statusText || "";
    try {
      const body = await response.json();
      if (body && body.error) {
        code = body.error.code || code;
        message = body.error.message || message;
      } else if (body && body.detail) {
        message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      }
    } catch {
      /* not JSON (a proxy's error page): keep the status text */
    }
    return new ApiError(response.status, code, message);
  }

  async function request(path, options) {
    let response;
    try {
      response = await fetch(path, Object.assign({}, options, { headers: headers(options && options.headers) }));
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiError(0, "network", String(err && err.message ? err.message : err));
    }
    if (!response.ok) throw await errorFromResponse(response);
    return response;
  }

  async function getJson(path) {
    const response = await request(path, { method: "GET" });
    return response.json();
  }

  /**
   * Reads a text/event-stream body and yields {event, data} for each complete event.
   * Handles \r\n and \n line ends (split across chunks too), multi-line data and comment lines.
   */
  async function* readEvents(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    const parse = (block) => {
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line === "" || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
      }
      if (data.length === 0) return null;
      let payload;
      try {
        payload = JSON.parse(data.join("\n"));
      } catch {
        payload = { text: data.join("\n") };
      }
      // Tolerate servers that put the event name in the payload instead of an `event:` line.
      if (event === "message" && payload && typeof payload === "object" && typeof payload.event === "string") {
        event = payload.event;
      }
      return { event, data: payload };
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      // A lone \r at the end of a chunk may be the first half of \r\n: keep it until more arrives.
      buffer = (buffer + value).replace(/\r\n|\r(?=[\s\S])/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const parsed = parse(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (parsed) yield parsed;
      }
    }
    const rest = parse(buffer.replace(/\r/g, "\n"));
    if (rest) yield rest;
  }

  // ---------------------------------------------------------------- plain-words errors

  /**
   * An error in plain words: `text` says what happened and what to do; `banner` when it concerns the whole
   * service (shown at the top, where it stays until a reply succeeds), and then `short` is what the failed
   * reply itself says, so the advice is not repeated twice on screen.
   */
  function explain(err) {
    if (!(err instanceof ApiError)) {
      return { text: "Something went wrong in this page: " + (err && err.message ? err.message : err), banner: false };
    }
    const detail = err.message ? " (" + err.message + ")" : "";
    switch (err.status) {
      case 0:
        return {
          text:
            "Cannot reach the ai-ops chat service. Check that it is still running and that this computer is " +
            "connected, then try again.",
          short: "the chat service cannot be reached",
          banner: true,
        };
      case 401:
        return {
          text: "This chat service needs a valid access token." + detail,
          short: "an access token is needed",
          banner: true,
          auth: true,
        };
      case 404:
        if (err.code === "model_not_found") {
          return { text: "The selected model no longer exists. Pick another one in the Model list." + detail, banner: false };
        }
        if (err.code === "thread_not_found") {
          return { text: "This conversation no longer exists on the server (it may have expired).", banner: false };
        }
        return { text: "Not found" + detail, banner: false };
      case 413:
      case 422:
        if (err.code === "content_blocked") {
          return { text: "The message was blocked by a safety rule of this service" + detail + ".", banner: false };
        }
        return { text: "The service did not accept the message" + detail + ".", banner: false };
      case 429:
        return { text: "A configured limit stopped this reply" + detail + ".", banner: false };
      case 502:
        if (err.code === "step_limit") {
          return {
            text: "The assistant stopped before finishing: it took too many steps for one reply" + detail +
              ". Try a narrower question.",
            banner: false,
          };
        }
        return {
          text:
            "The language model could not be reached or failed" + detail + ". Check that the LLM provider is " +
            "running and reachable from the chat service (for the local demo: start Ollama and pull the model, " +
            "or set OPENAI_API_KEY and run make run again).",
          short: "the language model could not be reached or failed" + detail,
          banner: true,
        };
      case 503:
        if (err.code === "no_model") {
          return {
            // The service's own message says how to configure one.
            text:
              err.message ||
              "No language model is configured. Create an LLMProvider and an LLMModel in the service's namespace, " +
                "or render a local config with ai-ops render.",
            short: "no language model is configured",
            banner: true,
          };
        }
        if (err.code === "model_unavailable") {
          return {
            text: "The selected model cannot be used right now" + detail + ". See Service status at the bottom.",
            short: "the selected model cannot be used right now",
            banner: true,
            kind: "model", // picking a usable model clears it
          };
        }
        return {
          text: "The chat service is not ready yet" + detail + ". Try again in a moment.",
          short: "the chat service is not ready yet",
          banner: true,
        };
      case 504:
        return {
          text: "The model took too long to answer and the request timed out. Try again, or ask a smaller question.",
          banner: false,
        };
      default:
        return {
          text: "The chat service answered with an error (HTTP " + err.status + ")" + detail + ".",
          banner: err.status >= 500,
        };
    }
  }

  /** What a failed reply says: the short form when the banner at the top has the details. */
  function replyFailure(info) {
    return info.banner && info.short ? "No reply: " + info.short + ". See the notice at the top." : info.text;
  }

  /** `kind` names what the banner is about, so only that can clear it (see checkSelectedModel). */
  function showBanner(text, action, kind) {
    state.bannerKind = kind || null;
    ui.bannerText.textContent = text;
    ui.banner.hidden = false;
    if (action) {
      ui.bannerAction.textContent = action.label;
      ui.bannerAction.onclick = action.run;
      ui.bannerAction.hidden = false;
    } else {
      ui.bannerAction.hidden = true;
      ui.bannerAction.onclick = null;
    }
  }

  function clearBanner() {
    state.bannerKind = null;
    ui.banner.hidden = true;
    ui.bannerText.textContent = "";
    ui.bannerAction.hidden = true;
  }

  function announce(text) {
    ui.announcer.textContent = text;
  }

  // ---------------------------------------------------------------- access token

  function askForToken(reason) {
    state.authRequired = true;
    ui.tokenButton.hidden = false;
    const saved = load(STORAGE.token);
    ui.tokenReason.textContent =
      reason ||
      (saved
        ? "The saved access token was not accepted. Enter a valid token."
        : "This chat service requires an access token. Ask the team that runs it for one.");
    ui.tokenForget.hidden = !saved;
    ui.tokenInput.value = "";
    showBanner("An access token is needed to use this chat.", { label: "Enter token", run: () => askForToken() });
    if (!ui.tokenDialog.open) ui.tokenDialog.showModal();
    ui.tokenInput.focus();
  }

  ui.tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = ui.tokenInput.value.trim();
    if (!token) {
      ui.tokenReason.textContent = "Enter the token first (it must not be empty).";
      ui.tokenInput.focus();
      return;
    }
    save(STORAGE.token, token);
    ui.tokenDialog.close();
    clearBanner();
    start();
  });
  ui.tokenCancel.addEventListener("click", () => ui.tokenDialog.close());
  ui.tokenForget.addEventListener("click", () => {
    save(STORAGE.token, null);
    ui.tokenForget.hidden = true;
    ui.tokenReason.textContent = "The saved token was removed from this browser.";
    ui.tokenInput.focus();
  });
  ui.tokenButton.addEventListener("click", () => askForToken("Enter a new access token, or forget the saved one."));

  /** Handles an error of any call: token prompt for 401, banner for service-wide trouble. */
  function report(err) {
    const info = explain(err);
    if (info.auth) askForToken();
    else if (info.banner) showBanner(info.text, null, info.kind);
    return info;
  }

  // ---------------------------------------------------------------- models and status

  async function loadModels() {
    ui.modelSelect.disabled = true;
    let body;
    try {
      body = await getJson("api/models");
    } catch (err) {
      const needsToken = err instanceof ApiError && err.status === 401;
      ui.modelSelect.replaceChildren(new Option(needsToken ? "Token needed" : "Models unavailable", ""));
      report(err);
      return false;
    }
    const models = Array.isArray(body) ? body : body.models || body.data || [];
    state.models = models;
    ui.modelSelect.replaceChildren();
    if (models.length === 0) {
      ui.modelSelect.append(new Option("No model configured", ""));
      showBanner(
        "No language model is configured, so the assistant cannot answer. Create an LLMProvider and an " +
          "LLMModel in the service's namespace (kubectl apply -f ...), or render a local config with ai-ops render " +
          "and restart the service with --config.",
      );
      return true;
    }
    const stored = load(STORAGE.model);
    let selected = models.find((m) => m.name === stored) || models.find((m) => m.default) || models[0];
    for (const m of models) {
      // Short labels (the provider type is in Service status and the tooltip).
      let label = m.name + (m.model && m.model !== m.name ? " (" + m.model + ")" : "");
      if (m.default) label += " – default";
      const option = new Option(label, m.name);
      option.title = [m.provider, m.model, m.description].filter(Boolean).join(" · ");
      option.selected = m === selected;
      ui.modelSelect.append(option);
    }
    ui.modelSelect.disabled = false;
    return true;
  }

  ui.modelSelect.addEventListener("change", () => {
    const chosen = state.models.find((m) => m.name === ui.modelSelect.value);
    // Remember an explicit choice only when it is not simply the default.
    save(STORAGE.model, chosen && !chosen.default ? chosen.name : null);
    checkSelectedModel();
  });

  function statusList(items) {
    const ul = document.createElement("ul");
    for (const item of items) {
      const li = document.createElement("li");
      li.textContent = item;
      ul.append(li);
    }
    return ul;
  }

  async function loadStatus() {
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
    state.statusModels = models;
    checkSelectedModel();
  }

  /** A selected model the service cannot use (missing API key, missing extra) is worth a banner. */
  function checkSelectedModel() {
    const model = state.statusModels.find((m) => m.name === ui.modelSelect.value);
    if (model && model.available === false) {
      const others = state.statusModels.some((m) => m.available !== false);
      showBanner(
        "The model " + model.name + " cannot be used right now: " + (model.unavailable_reason || "unknown reason") +
          "." + (others ? " Pick another model in the Model list." : ""),
        null,
        "model",
      );
    } else if (state.bannerKind === "model") {
      clearBanner();
    }
  }

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

  // ---------------------------------------------------------------- conversation view

  function setThread(threadId) {
    save(STORAGE.thread, threadId);
    ui.threadLabel.textContent = threadId ? "Conversation " + threadId : "";
  }

  function scrollToEnd() {
    ui.conversation.scrollTop = ui.conversation.scrollHeight;
  }

  function addUserMessage(text) {
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

  function roleLabel(text) {
    const span = document.createElement("span");
    span.className = "role";
    span.textContent = text;
    return span;
  }

  /** One assistant turn: a sequence of text blocks and tool blocks, in the order they happened. */
  class AssistantTurn {
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
    }

    setModel(model) {
      if (model) this.label.textContent = "Assistant · " + model;
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

    finish(reply, usage) {
      if (!this.receivedText && reply) this.appendText(reply);
      // Streamed as plain text; now give code blocks and inline code their own markup.
      for (const div of this.textBlocks) formatText(div, div.textContent);
      this.currentText = null;
      if (usage && (usage.input_tokens || usage.output_tokens)) {
        this.meta.textContent = (usage.input_tokens || 0) + " tokens in · " + (usage.output_tokens || 0) + " tokens out";
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

  function formatJson(value) {
    if (typeof value === "string") {
      try {
        return JSON.stringify(JSON.parse(value), null, 2);
      } catch {
        return value;
      }
    }
    return JSON.stringify(value, null, 2);
  }

  function formatOutput(value) {
    if (value === undefined || value === null) return "(no output)";
    if (typeof value === "string") return value;
    // MCP content blocks: show their text parts as text.
    if (Array.isArray(value) && value.every((b) => b && typeof b.text === "string")) {
      return value.map((b) => b.text).join("\n");
    }
    return JSON.stringify(value, null, 2);
  }

  /** Minimal, safe formatting: ``` fences become <pre>, `code` <code>, **bold** <strong>; the rest stays text. */
  function formatText(container, text) {
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

  function clearConversation() {
    for (const el of [...ui.conversation.children]) {
      if (el !== ui.emptyHint) el.remove();
    }
    ui.emptyHint.hidden = false;
  }

  // ---------------------------------------------------------------- history

  async function loadHistory() {
    const threadId = load(STORAGE.thread);
    if (!threadId) {
      setThread(null);
      return;
    }
    let body;
    try {
      body = await getJson("api/threads/" + encodeURIComponent(threadId));
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        setThread(null);
        announce("The previous conversation has expired; a new one starts with your next message.");
        return;
      }
      report(err);
      return;
    }
    clearConversation();
    setThread(body.thread_id || threadId);
    // Assistant messages and tool results between two user messages form one turn, as when streamed.
    let turn = null;
    for (const message of body.messages || []) {
      const content = typeof message.content === "string" ? message.content : formatOutput(message.content);
      if (message.role === "user") {
        if (turn) turn.finish("", null);
        turn = null;
        addUserMessage(content);
      } else if (message.role === "tool") {
        if (!turn) turn = new AssistantTurn();
        const failed = message.status === "error";
        turn.toolResult({ name: message.name, output: failed ? undefined : content, error: failed ? content : undefined });
      } else {
        if (!turn) turn = new AssistantTurn();
        turn.appendText(content);
        turn.currentText = null; // a later assistant message starts its own text block
        for (const call of message.tool_calls || []) turn.addTool(call.name, call.args, null);
      }
    }
    if (turn) turn.finish("", null);
    scrollToEnd();
  }

  // ---------------------------------------------------------------- sending a message

  function setStreaming(controller) {
    state.streaming = controller;
    const busy = controller !== null;
    ui.send.hidden = busy;
    ui.stop.hidden = !busy;
    ui.input.setAttribute("aria-busy", busy ? "true" : "false");
    ui.newConversation.disabled = busy;
  }

  async function sendMessage(text) {
    const body = { message: text };
    const threadId = load(STORAGE.thread);
    if (threadId) body.thread_id = threadId;
    if (ui.modelSelect.value) body.model = ui.modelSelect.value;

    addUserMessage(text);
    const turn = new AssistantTurn();
    turn.setBusy(true);
    announce("The assistant is replying.");
    const controller = new AbortController();
    setStreaming(controller);
    let finished = false;
    let started = false;
    try {
      const response = await request("api/chat/stream", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      for await (const { event, data } of readEvents(response)) {
        switch (event) {
          case "start":
            started = true;
            if (data.thread_id) setThread(data.thread_id);
            turn.setModel(data.model);
            break;
          case "token":
            turn.appendText(data.text || "");
            break;
          case "tool_call":
            turn.addTool(data.name, data.args, null);
            break;
          case "tool_result":
            turn.toolResult(data);
            break;
          case "done":
            turn.finish(data.reply, data.usage);
            finished = true;
            clearBanner();
            announce("The reply is complete.");
            break;
          case "error": {
            const err = new ApiError(data.status || statusForCode(data.code), data.code || "error", data.message || "");
            const info = report(err);
            turn.abandonTools("interrupted");
            turn.fail(replyFailure(info));
            finished = true;
            announce("The reply failed: " + info.text);
            break;
          }
          default:
            break; // unknown events are ignored, so the server may add new ones
        }
      }
      if (!finished) {
        turn.abandonTools("interrupted");
        turn.finish("", null);
        turn.fail("The connection closed before the reply was complete. Try again.");
      }
    } catch (err) {
      turn.abandonTools("interrupted");
      if (err && err.name === "AbortError") {
        turn.finish("", null);
        turn.fail("Stopped.");
        announce("Stopped.");
      } else {
        const info = report(err instanceof ApiError ? err : new ApiError(0, "network", String(err)));
        if (err instanceof ApiError && err.code === "thread_not_found") setThread(null);
        if (err instanceof ApiError && err.code === "model_not_found") loadModels();
        turn.fail(replyFailure(info));
        announce("The reply failed: " + info.text);
        // Nothing was answered: give the text back so it can be sent again without retyping.
        if (!started && !ui.input.value) ui.input.value = text;
      }
    } finally {
      turn.setBusy(false);
      setStreaming(null);
    }
  }

  /** The HTTP status an `error` event's code stands for (the stream itself was already 200). */
  function statusForCode(code) {
    return (
      {
        invalid_request: 422,
        unauthorized: 401,
        model_not_found: 404,
        thread_not_found: 404,
        content_blocked: 422,
        limit_exceeded: 429,
        provider_error: 502,
        step_limit: 502,
        no_model: 503,
        model_unavailable: 503,
        not_ready: 503,
        timeout: 504,
      }[code] || 500
    );
  }

  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    if (state.streaming) return;
    const text = ui.input.value.trim();
    if (!text) {
      ui.input.focus();
      return;
    }
    ui.input.value = "";
    sendMessage(text);
    ui.input.focus();
  });

  ui.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ui.composer.requestSubmit();
    }
  });

  ui.stop.addEventListener("click", () => {
    if (state.streaming) state.streaming.abort();
  });

  ui.newConversation.addEventListener("click", () => {
    // The old conversation stays on the server until its TTL expires; this page just stops using it.
    setThread(null);
    clearConversation();
    announce("New conversation started.");
    ui.input.focus();
  });

  // ---------------------------------------------------------------- start

  async function start() {
    clearBanner();
    ui.tokenButton.hidden = !load(STORAGE.token);
    // Models first: a 401 here opens the token prompt once instead of three times.
    const ok = await loadModels();
    if (!ok) return;
    await Promise.all([loadStatus(), loadHistory()]);
  }

  start();
})();
