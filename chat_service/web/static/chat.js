// Sending a message: POST api/chat/stream, its events drawn into an assistant turn as they arrive.

import { ApiError, request, statusForCode } from "./api.js";
import { giveBack, showReplying } from "./composer.js";
import { replyFailure, report } from "./errors.js";
import { loadModels, selectedModelName } from "./models.js";
import { showCitation } from "./citations.js";
import { announce, clearBanner } from "./notices.js";
import { showPlan } from "./plan.js";
import { AssistantTurn, addUserMessage } from "./render.js";
import { loadThreadList } from "./sidebar.js";
import { loadStatus } from "./status.js";
import { readEvents } from "./stream.js";
import { currentThread, setThread } from "./thread.js";

let inFlight = null; // AbortController of the reply in progress

function setInFlight(controller) {
  inFlight = controller;
  showReplying(controller !== null);
}

/** Ends the reply in progress, if any (the turn then says "Stopped."). */
export function stopReply() {
  if (inFlight) inFlight.abort();
}

export async function sendMessage(text) {
  const body = { message: text };
  const threadId = currentThread();
  if (threadId) body.thread_id = threadId;
  const model = selectedModelName();
  if (model) body.model = model;

  addUserMessage(text);
  const turn = new AssistantTurn();
  turn.setBusy(true);
  announce("The assistant is replying.");
  const controller = new AbortController();
  setInFlight(controller);
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
        case "plan":
          showPlan(turn, data.todos);
          break;
        case "citation":
          showCitation(turn, data);
          break;
        case "done":
          turn.finish(data.reply, data.usage);
          finished = true;
          clearBanner();
          announce("The reply is complete.");
          // The conversation is listed now, and the service may know more (a tool failed, a provider answered).
          loadThreadList();
          loadStatus();
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
      if (!started) giveBack(text);
    }
  } finally {
    turn.setBusy(false);
    setInFlight(null);
  }
}
