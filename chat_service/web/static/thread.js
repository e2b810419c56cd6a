// The conversation the page is in: its thread id (kept in the browser, so a reload continues it), its
// history read back from GET api/threads/{id}, switching to another one, and starting a new one.

import { ApiError, getJson } from "./api.js";
import { ui } from "./elements.js";
import { report } from "./errors.js";
import { formatOutput } from "./format.js";
import { announce } from "./notices.js";
import { AssistantTurn, addUserMessage, clearConversation, scrollToEnd } from "./render.js";
import { load, save } from "./storage.js";

const THREAD_KEY = "ai-ops.thread";
const listeners = []; // called with the new thread id (or null) whenever it changes

/** Calls `listener(threadId)` whenever the page switches conversation. */
export function onThreadChange(listener) {
  listeners.push(listener);
}

export function currentThread() {
  return load(THREAD_KEY);
}

/** Switches to `threadId`; null forgets the conversation (the next message starts a new one). */
export function setThread(threadId) {
  save(THREAD_KEY, threadId);
  ui.threadLabel.textContent = threadId ? "Conversation " + threadId : "";
  for (const listener of listeners) listener(threadId || null);
}

/** Shows the current conversation's history; false when there is none (or it expired). */
export async function loadHistory() {
  const threadId = currentThread();
  if (!threadId) {
    setThread(null);
    return false;
  }
  let body;
  try {
    body = await getJson("api/threads/" + encodeURIComponent(threadId));
  } catch (err) {
    if (currentThread() !== threadId) return false; // another conversation was opened meanwhile
    if (err instanceof ApiError && err.status === 404) {
      setThread(null);
      clearConversation();
      announce("The conversation has expired; a new one starts with your next message.");
      return false;
    }
    report(err);
    return false;
  }
  if (currentThread() !== threadId) return false;
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
      turn.setModel(message.name); // the LLMModel that answered, as the live reply shows it
      turn.addUsage(message.usage);
      turn.appendText(content);
      turn.endTextBlock(); // a later assistant message starts its own text block
      for (const call of message.tool_calls || []) turn.addTool(call.name, call.args, null);
    }
  }
  if (turn) turn.finish("", null);
  scrollToEnd();
  return true;
}

/** Switches to the conversation `threadId` and shows its history. */
export async function openThread(threadId) {
  setThread(threadId);
  clearConversation();
  return loadHistory();
}

/** Leaves the conversation: the next message starts a new one. */
export function leaveThread() {
  setThread(null);
  clearConversation();
}

export function setUpNewConversationButton() {
  ui.newConversation.addEventListener("click", () => {
    // The old conversation stays on the server (and in the list) until its TTL expires.
    leaveThread();
    announce("New conversation started.");
    ui.input.focus();
  });
}
