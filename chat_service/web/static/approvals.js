// ActionRequests in the page: an approval card under every proposal in the conversation, and the
// Approvals view (pending first, then the history with who decided and the outcome).
//
// A proposal is a tool result "proposed as ActionRequest <name>; awaiting approval". The card is added by
// watching the conversation for such results (live or from history), so the modules that draw the
// conversation need no change. Approve and Reject POST api/actions/{name}/approve|reject; the card then
// follows the request (GET api/actions/{name}) until it is over, and once the service has continued the
// conversation with the outcome, the conversation is read again to show the answer. Everything from the
// server is inserted as text.

import { ApiError, getJson, request } from "./api.js";
import { ui } from "./elements.js";
import { formatJson } from "./format.js";
import { announce } from "./notices.js";
import { currentThread, loadHistory } from "./thread.js";

const PROPOSED = /proposed as ActionRequest ([a-z0-9][-a-z0-9]{0,61}[a-z0-9]?); awaiting approval/;
const OUTCOME_PREFIX = "[ai-ops-actions] ActionRequest ";
const FINAL = new Set(["Succeeded", "Failed", "Rejected", "Expired"]);
const POLL_MS = 1500;
const following = new Map(); // action name -> timer of the card that follows it

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function field(list, label, value) {
  if (value === undefined || value === null || value === "") return;
  list.append(el("dt", "", label), el("dd", "", value));
}

function targetText(target) {
  if (!target) return "";
  const where = [target.namespace, target.name].filter(Boolean).join("/");
  return [target.kind, where].filter(Boolean).join(" ");
}

function outcomeText(action) {
  if (action.result && action.result.excerpt) return action.result.excerpt;
  return action.status_reason || "";
}

/** The card's content for `action` (as GET api/actions/{name} answers). */
function drawCard(card, action) {
  card.dataset.phase = action.phase;
  const head = el("div", "approval-head");
  head.append(
    el("strong", "approval-title", "Action proposed: " + action.tool),
    el("span", "approval-phase phase-" + action.phase.toLowerCase(), action.phase),
    el("span", "approval-risk risk-" + action.risk, "risk " + action.risk),
  );
  const details = el("dl", "approval-fields");
  field(details, "Target", targetText(action.target));
  field(details, "Server", action.server);
  field(details, "Reason", action.reason);
  field(details, "Requested by", action.requested_by && action.requested_by.caller);
  field(details, "Expires", action.expires_at);
  const args = el("pre", "approval-args", formatJson(action.arguments || {}));
  card.replaceChildren(head, details, el("h4", "", "Arguments"), args);
  if (action.dry_run) {
    card.append(el("h4", "", "Dry run " + (action.dry_run.ok ? "(ok)" : "(failed)")));
    card.append(el("pre", "approval-dry-run", action.dry_run.excerpt || ""));
  }
  if (action.decision) {
    const verb = action.decision.approved ? "Approved" : "Rejected";
    const comment = action.decision.comment ? ": " + action.decision.comment : "";
    card.append(el("p", "approval-decision", verb + " by " + action.decision.by + comment));
  }
  if (FINAL.has(action.phase) && outcomeText(action)) {
    card.append(el("h4", "", action.result && action.result.is_error ? "Error" : "Result"));
    card.append(el("pre", "approval-result", outcomeText(action)));
  }
  if (!action.executes) {
    card.append(el("p", "approval-note", "No operator executes actions of this service (memory mode): an approval is recorded and never runs."));
  }
  if (action.phase === "Pending") card.append(decisionForm(card, action));
}

function decisionForm(card, action) {
  const form = el("div", "approval-form");
  const label = el("label", "", "Comment (optional)");
  const comment = el("textarea", "approval-comment");
  comment.rows = 2;
  comment.maxLength = 1024;
  const id = "comment-" + action.name + "-" + Math.random().toString(36).slice(2, 8);
  comment.id = id;
  label.htmlFor = id;
  const approve = el("button", "approval-approve", "Approve");
  approve.type = "button";
  const reject = el("button", "approval-reject secondary", "Reject");
  reject.type = "button";
  const error = el("p", "approval-error");
  error.hidden = true;
  error.setAttribute("role", "alert");
  const decide = async (verb) => {
    approve.disabled = reject.disabled = true;
    error.hidden = true;
    try {
      const response = await request("api/actions/" + encodeURIComponent(action.name) + "/" + verb, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ comment: comment.value.trim() || null }),
      });
      const decided = await response.json();
      announce("Action " + action.name + " " + (verb === "approve" ? "approved" : "rejected") + ".");
      drawCard(card, decided);
      follow(card, decided.name);
    } catch (err) {
      error.textContent = err instanceof ApiError ? err.message || "The decision was refused." : String(err);
      error.hidden = false;
      approve.disabled = reject.disabled = false;
    }
  };
  approve.addEventListener("click", () => decide("approve"));
  reject.addEventListener("click", () => decide("reject"));
  const buttons = el("div", "approval-buttons");
  buttons.append(approve, reject);
  form.append(label, comment, buttons, error);
  return form;
}

/** Reads the request until it is over, then waits for the assistant's answer to the outcome. */
function follow(card, name) {
  if (following.has(name)) return;
  const thread = currentThread();
  const tick = async () => {
    let action;
    try {
      action = await getJson("api/actions/" + encodeURIComponent(name));
    } catch {
      following.set(name, setTimeout(tick, POLL_MS * 2));
      return;
    }
    if (card.isConnected) drawCard(card, action);
    if (!FINAL.has(action.phase)) {
      following.set(name, setTimeout(tick, POLL_MS));
      return;
    }
    following.delete(name);
    if (thread && action.requested_by && action.requested_by.threadId === thread) waitForAnswer(thread, name);
  };
  following.set(name, setTimeout(tick, POLL_MS));
}

/** The service adds the outcome to the conversation and the assistant answers it: show both. */
function waitForAnswer(thread, name, tries = 0) {
  setTimeout(async () => {
    if (currentThread() !== thread) return;
    try {
      const body = await getJson("api/threads/" + encodeURIComponent(thread));
      const messages = body.messages || [];
      const at = messages.findIndex((m) => m.role === "user" && String(m.content).startsWith(OUTCOME_PREFIX + name + " "));
      const answered = at >= 0 && messages.slice(at + 1).some((m) => m.role === "assistant" && m.content);
      if (answered) {
        await loadHistory();
        announce("The assistant answered the outcome of " + name + ".");
        return;
      }
    } catch {
      /* try again */
    }
    if (tries < 120) waitForAnswer(thread, name, tries + 1);
  }, POLL_MS);
}

async function addCard(after, name) {
  const card = el("section", "approval-card");
  card.dataset.action = name;
  card.setAttribute("aria-label", "Proposed action " + name);
  card.append(el("p", "approval-loading", "Loading ActionRequest " + name + "…"));
  after.after(card);
  try {
    const action = await getJson("api/actions/" + encodeURIComponent(name));
    drawCard(card, action);
    if (!FINAL.has(action.phase) && action.phase !== "Pending") follow(card, name);
  } catch (err) {
    card.replaceChildren(el("p", "approval-error", "ActionRequest " + name + ": " + (err.message || err)));
  }
}

/** Cards for proposals, and outcome messages marked as such, wherever they appear in `root`. */
function scan(root) {
  for (const pre of root.querySelectorAll(".tool-output pre")) {
    const found = PROPOSED.exec(pre.textContent || "");
    const tool = pre.closest("details.tool");
    if (!found || !tool || tool.dataset.approvalCard) continue;
    tool.dataset.approvalCard = found[1];
    addCard(tool, found[1]);
  }
  for (const message of root.querySelectorAll(".message.user:not(.action-outcome)")) {
    const body = message.querySelector(".body");
    if (!body || !(body.textContent || "").startsWith("[ai-ops-actions] ")) continue;
    message.classList.add("action-outcome");
    message.setAttribute("aria-label", "Action outcome");
    const role = message.querySelector(".role");
    if (role) role.textContent = "Action outcome";
  }
}

// --- the Approvals view -------------------------------------------------------------------------------

async function loadApprovals() {
  const list = document.getElementById("approvals-list");
  const note = document.getElementById("approvals-note");
  let body;
  try {
    body = await getJson("api/actions");
  } catch (err) {
    note.textContent = "The actions cannot be listed: " + (err.message || err);
    list.replaceChildren();
    return;
  }
  const actions = body.actions || [];
  note.textContent = [
    actions.length ? "" : "No actions proposed yet.",
    body.note || "",
    body.can_decide ? "" : "You may look, but not approve or reject (not in AI_OPS_ACTION_APPROVERS).",
  ]
    .filter(Boolean)
    .join(" ");
  const pending = actions.filter((a) => a.phase === "Pending");
  const history = actions.filter((a) => a.phase !== "Pending");
  const items = [];
  if (pending.length) items.push(el("h3", "approvals-group", "Pending"));
  for (const action of pending) {
    const card = el("section", "approval-card");
    card.dataset.action = action.name;
    drawCard(card, action);
    items.push(card);
  }
  if (history.length) items.push(el("h3", "approvals-group", "History"));
  for (const action of history) {
    const row = el("div", "approval-history");
    row.dataset.action = action.name;
    const decided = action.decision
      ? (action.decision.approved ? "approved by " : "rejected by ") + action.decision.by
      : "no decision";
    row.append(
      el("strong", "", action.tool + " · " + targetText(action.target)),
      el("span", "approval-phase phase-" + action.phase.toLowerCase(), action.phase),
      el("span", "approval-by", decided),
    );
    const outcome = outcomeText(action);
    if (outcome) row.append(el("pre", "approval-result", outcome));
    items.push(row);
  }
  list.replaceChildren(...items);
}

export function setUpApprovals() {
  new MutationObserver(() => scan(ui.conversation)).observe(ui.conversation, {
    childList: true,
    subtree: true,
    characterData: true,
  });
  scan(ui.conversation);
  const dialog = document.getElementById("approvals-dialog");
  document.getElementById("approvals-button").addEventListener("click", () => {
    loadApprovals();
    dialog.showModal();
  });
  document.getElementById("approvals-refresh").addEventListener("click", () => loadApprovals());
  document.getElementById("approvals-close").addEventListener("click", () => dialog.close());
}
