// The list of the caller's conversations (GET api/threads), the most recent first, each titled by its
// first message: open one (its history comes back), or delete it (DELETE api/threads/{id}, after a
// confirmation in place).

import { ApiError, getJson, request } from "./api.js";
import { ui } from "./elements.js";
import { report } from "./errors.js";
import { announce } from "./notices.js";
import { currentThread, leaveThread, onThreadChange, openThread } from "./thread.js";

let threads = []; // as GET api/threads lists them: {id, title, updatedAt}

function note(text) {
  ui.threadListNote.textContent = text;
  ui.threadListNote.hidden = !text;
}

/** Reads the list again (after a reply, a deletion, a token). */
export async function loadThreadList() {
  let body;
  try {
    body = await getJson("api/threads");
  } catch (err) {
    threads = [];
    ui.threadList.replaceChildren();
    // A 401 is the token prompt's business (the models call asks); anything else is said here.
    note(err instanceof ApiError && err.status === 401 ? "" : "The conversations cannot be listed right now.");
    return;
  }
  threads = Array.isArray(body.threads) ? body.threads : [];
  draw();
}

function when(updatedAt) {
  const date = new Date(updatedAt);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

function button(text, className, label) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = text;
  if (label) b.setAttribute("aria-label", label);
  return b;
}

function draw() {
  const current = currentThread();
  ui.threadList.replaceChildren(...threads.map((t) => item(t, t.id === current)));
  note(threads.length ? "" : "No conversations yet.");
}

function item(thread, isCurrent) {
  const title = thread.title || thread.id;
  const li = document.createElement("li");
  li.className = "thread-item";
  li.dataset.threadId = thread.id;
  const open = button("", "thread-open");
  const name = document.createElement("span");
  name.className = "thread-title";
  name.textContent = title;
  const time = document.createElement("time");
  time.className = "thread-time";
  time.dateTime = String(thread.updatedAt || "");
  time.textContent = when(thread.updatedAt);
  open.append(name, time);
  open.title = title;
  if (isCurrent) open.setAttribute("aria-current", "true");
  open.addEventListener("click", () => show(thread.id));
  const remove = button("Delete", "thread-delete secondary", "Delete conversation: " + title);
  remove.addEventListener("click", () => confirmDelete(li, thread, title));
  li.append(open, remove);
  return li;
}

async function show(threadId) {
  const found = await openThread(threadId);
  if (!found) await loadThreadList(); // it expired meanwhile: the list forgets it too
  ui.input.focus();
}

function confirmDelete(li, thread, title) {
  const question = document.createElement("span");
  question.className = "thread-question";
  question.textContent = "Delete “" + title + "”?";
  const yes = button("Delete", "thread-confirm", "Yes, delete conversation: " + title);
  const no = button("Cancel", "secondary thread-cancel");
  yes.addEventListener("click", () => deleteThread(thread.id));
  no.addEventListener("click", draw);
  li.replaceChildren(question, yes, no);
  no.focus();
}

async function deleteThread(threadId) {
  try {
    await request("api/threads/" + encodeURIComponent(threadId), { method: "DELETE" });
  } catch (err) {
    // Already gone (expired) is what was asked for; anything else is reported.
    if (!(err instanceof ApiError && err.status === 404)) {
      report(err);
      draw();
      return;
    }
  }
  if (currentThread() === threadId) leaveThread();
  announce("Conversation deleted.");
  await loadThreadList();
}

export function setUpSidebar() {
  onThreadChange(draw); // the open conversation is marked in the list
}
