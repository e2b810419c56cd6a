// The conversation the page is in: its thread id (kept in the browser, so a reload continues it), its
// history read back from GET api/threads/{id}, and starting a new one.

import { ApiError, getJson } from "./api.js";
import { ui } from "./elements.js";
import { report } from "./errors.js";
import { formatOutput } from "./format.js";
import { announce } from "./notices.js";
import { AssistantTurn, addUserMessage, clearConversation, scrollToEnd } from "./render.js";
import { load, save } from "./storage.js";

const THREAD_KEY = "ai-ops.thread";

export function currentThread() {
  return load(THREAD_KEY);
}

/** Switches to `threadId`; null forgets the conversation (the next message starts a new one). */
export function setThread(threadId) {
  save(THREAD_KEY, threadId);
  ui.threadLabel.textContent = threadId ? "Conversation " + threadId : "";
}

export async function loadHistory() {
  const threadId = currentThread();
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
      turn.endTextBlock(); // a later assistant message starts its own text block
      for (const call of message.tool_calls || []) turn.addTool(call.name, call.args, null);
    }
  }
  if (turn) turn.finish("", null);
  scrollToEnd();
}

export function setUpNewConversationButton() {
  ui.newConversation.addEventListener("click", () => {
    // The old conversation stays on the server until its TTL expires; this page just stops using it.
    setThread(null);
    clearConversation();
    announce("New conversation started.");
    ui.input.focus();
  });
}
